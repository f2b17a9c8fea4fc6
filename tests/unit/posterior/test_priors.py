"""Priors on φ = log θ against SciPy densities, and bad prior configs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from phasemake.core.errors import DataError
from phasemake.posterior.priors import PRIOR_DROP, log_prior, prior_box
from phasemake.posterior.shards import choose_shards, shard_indices


def test_log_prior_is_the_theta_density_times_the_jacobian():
    config = {
        "a": {"lognormal": {"loc": 0.5, "scale": 2.0}},
        "b": {"gamma": {"concentration": 2.0, "rate": 3.0}},
        "c": {"exponential": {"rate": 0.5}},
    }
    phi = np.array([0.3, -1.2, 0.8])
    theta = np.exp(phi)
    expected = (
        scipy.stats.lognorm.logpdf(theta[0], s=2.0, scale=np.exp(0.5))
        + scipy.stats.gamma.logpdf(theta[1], a=2.0, scale=1 / 3.0)
        + scipy.stats.expon.logpdf(theta[2], scale=2.0)
        + phi.sum()
    )
    assert float(log_prior(["a", "b", "c"], config)(jnp.asarray(phi))) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"zzz": {"exponential": {"rate": 1.0}}}, "not free parameters"),
        ({"a": {"cauchy": {"loc": 0.0}}}, "unknown family 'cauchy'"),
        ({"a": {"gamma": {"concentration": 1.0}}}, "expected exactly the keys"),
        ({"a": {"exponential": {"rate": -1.0}}}, "rate = -1.0: expected a finite number > 0"),
        ({"a": {"exponential": {"rate": 1.0}, "gamma": {}}}, "expected one family"),
    ],
)
def test_bad_priors_are_explained(config, message):
    with pytest.raises(DataError, match=message):
        log_prior(["a"], config)


def test_shards_are_balanced_disjoint_and_seeded():
    parts = shard_indices(1001, 4, seed=3)
    assert sorted(len(p) for p in parts) == [250, 250, 250, 251]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1001))
    again = shard_indices(1001, 4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[0], shard_indices(1001, 4, seed=4)[0])
    with pytest.raises(ValueError, match="shards=0"):
        shard_indices(10, 0, seed=0)


def test_shard_count_rule_and_its_floor():
    common = dict(parameters=2, iterations=16000, min_points=500, min_points_per_parameter=100)
    plan = choose_shards(points=20000, shared=7.7e5, per_point=256, target_work=1e11, **common)
    # 3 I (a + b N/S) <= target: N/S <= 5125 points, so S = 4
    assert plan["shards"] == 4 and plan["work_per_shard"] <= 1e11
    capped = choose_shards(points=1200, shared=1.0, per_point=256, target_work=1e9, **common)
    assert capped["wanted"] == 15 and capped["shards"] == 2  # 500 points per shard at least
    heavy = choose_shards(points=20000, shared=7.7e5, per_point=256, target_work=1e9, **common)
    assert heavy["rule"].startswith("shared work") and heavy["shards"] == 7  # b N / S = a
    tiny = choose_shards(points=300, shared=1.0, per_point=1.0, target_work=1e12, **common)
    assert tiny["shards"] == 1


@pytest.mark.parametrize(
    "spec",
    [
        {"lognormal": {"loc": 0.5, "scale": 1.0}},
        {"gamma": {"concentration": 2.0, "rate": 3.0}},
        {"gamma": {"concentration": 50.0, "rate": 0.1}},
        {"exponential": {"rate": 1.0}},
    ],
)
@pytest.mark.parametrize("shards", [1, 4])
def test_prior_box_ends_where_the_fractionated_prior_has_dropped(spec, shards):
    # reference: SciPy's log density of θ plus the Jacobian φ, on a fine grid of φ
    ((family, args),) = spec.items()
    frozen = {
        "lognormal": lambda: scipy.stats.lognorm(s=args["scale"], scale=np.exp(args["loc"])),
        "gamma": lambda: scipy.stats.gamma(args.get("concentration"), scale=1 / args["rate"]),
        "exponential": lambda: scipy.stats.expon(scale=1 / args["rate"]),
    }[family]()
    phi = np.linspace(-80, 20, 400_001)
    log_p = (frozen.logpdf(np.exp(phi)) + phi) / shards
    kept = phi[log_p >= log_p.max() - PRIOR_DROP]
    (lo,), (hi,) = prior_box(["a"], {"a": spec}, shards=shards)
    step = phi[1] - phi[0]  # the grid's resolution bounds the reference's error
    assert abs(lo - kept[0]) < 2 * step and abs(hi - kept[-1]) < 2 * step, (lo, hi, kept[[0, -1]])


def test_prior_box_checks_the_prior_like_log_prior():
    with pytest.raises(DataError, match=r"prior\.a\.lognormal\.scale"):
        prior_box(["a"], {"a": {"lognormal": {"loc": 0.0, "scale": -1.0}}})
