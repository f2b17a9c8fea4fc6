"""Importance-sampling refinement against targets with closed-form moments.

Target: φ₁ = log X with X ~ Gamma(a, 1) (left-skewed on the log scale: mean ψ(a), variance
ψ'(a)), and φ₂ | φ₁ ~ N(ρ φ₁, 1): mean ρ ψ(a), variance ρ² ψ'(a) + 1, covariance ρ ψ'(a).
The draws handed to the refinement are a Gaussian moved 0.3 sd off the mean, as a biased
consensus would be. With 4,000 proposals the importance ESS is > 2,000, so the Monte Carlo
error of a mean is < 0.025 sd and of an sd < 2%: tolerances 0.05 sd and 4% are two sigma
of that noise and far below the 0.3 sd bias being removed.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from phasemake.posterior.consensus import summarise_draws
from phasemake.posterior.refine import MAX_PARETO_K, importance_refine, resample

A, RHO = 8.0, 0.6
MEAN = np.array([scipy.special.digamma(A), RHO * scipy.special.digamma(A)])
V1 = scipy.special.polygamma(1, A)
COV = np.array([[V1, RHO * V1], [RHO * V1, RHO**2 * V1 + 1.0]])


def log_target(phi):
    x1, x2 = phi[:, 0], phi[:, 1]
    return A * x1 - np.exp(x1) - 0.5 * (x2 - RHO * x1) ** 2


def biased_draws(seed=0, n=2000):
    sd = np.sqrt(np.diag(COV))
    return np.random.default_rng(seed).multivariate_normal(MEAN + 0.3 * sd, COV, size=(2, n // 2))


def test_refinement_removes_the_bias_and_keeps_the_correlation():
    draws = biased_draws()
    r = importance_refine(log_target, draws, proposals=4000, seed=3)
    assert r.reliable and r.pareto_k <= MAX_PARETO_K and r.ess > 2000 and r.failed == 0
    w = r.weights
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    mean = w @ r.phi
    cov = np.cov(r.phi, rowvar=False, aweights=w)
    sd = np.sqrt(np.diag(COV))
    np.testing.assert_array_less(np.abs(mean - MEAN), 0.05 * sd)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), sd, rtol=0.04)
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert corr == pytest.approx(COV[0, 1] / np.prod(sd), abs=0.03)
    before = draws.reshape(-1, 2).mean(axis=0)
    assert np.all(np.abs(before - MEAN) > 0.25 * sd)  # the draws were off by 0.3 sd


def test_weighted_summary_agrees_with_the_resampled_draws():
    r = importance_refine(log_target, biased_draws(), proposals=4000, seed=3)
    weighted = summarise_draws(r.phi, ["a", "b"], weights=r.weights)["parameters"]
    drawn = resample(r, (4, 5000), seed=1)
    assert drawn.shape == (4, 5000, 2)
    plain = summarise_draws(drawn, ["a", "b"])["parameters"]
    for n in ("a", "b"):
        assert plain[n]["log_mean"] == pytest.approx(weighted[n]["log_mean"], abs=0.03)
        assert plain[n]["log_sd"] == pytest.approx(weighted[n]["log_sd"], rel=0.04)
        for q in ("0.05", "0.5", "0.95"):  # θ quantiles, weighted vs resampled
            assert plain[n]["quantiles"][q] == pytest.approx(weighted[n]["quantiles"][q], rel=0.05)
    np.testing.assert_array_equal(drawn, resample(r, (4, 5000), seed=1))


def test_equal_weights_give_the_unweighted_summary():
    phi = np.random.default_rng(2).normal(0.0, 0.3, (2, 300, 2))
    plain = summarise_draws(phi, ["a", "b"])
    weighted = summarise_draws(phi, ["a", "b"], weights=np.ones(600))
    for n in ("a", "b"):
        for key in ("mean", "sd", "log_mean", "log_sd"):
            assert weighted["parameters"][n][key] == pytest.approx(plain["parameters"][n][key])
    np.testing.assert_allclose(weighted["correlation"], plain["correlation"])


def test_same_seed_same_points():
    a = importance_refine(log_target, biased_draws(), proposals=500, seed=9)
    b = importance_refine(log_target, biased_draws(), proposals=500, seed=9)
    c = importance_refine(log_target, biased_draws(), proposals=500, seed=10)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.log_weights, b.log_weights)
    assert not np.array_equal(a.phi, c.phi)


def test_a_proposal_far_narrower_than_the_target_is_flagged():
    """Draws of N(0, 1) for a target N(0, 10²): the weights' tail is heavy, k̂ > 0.7."""
    draws = np.random.default_rng(0).normal(0.0, 1.0, (2000, 1))
    r = importance_refine(lambda x: -0.5 * (x[:, 0] / 10.0) ** 2, draws, proposals=4000)
    assert not r.reliable and r.pareto_k > MAX_PARETO_K


def test_points_without_a_finite_density_get_no_weight():
    def partly(phi):
        out = log_target(phi)
        out[phi[:, 0] > MEAN[0] + 2.0 * np.sqrt(V1)] = np.nan
        return out

    r = importance_refine(partly, biased_draws(), proposals=2000, seed=3)
    assert r.failed > 0
    assert np.all(r.weights[~np.isfinite(partly(r.phi))] == 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"proposals": 10}, "at least 100"), ({"df": 2.0}, "df=2.0")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        importance_refine(log_target, biased_draws(), **kwargs)


def test_no_finite_point_is_an_error():
    with pytest.raises(ValueError, match="not finite at any proposal"):
        importance_refine(lambda x: np.full(len(x), -np.inf), biased_draws(), proposals=200)
