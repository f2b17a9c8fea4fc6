"""Profile-likelihood intervals against references that share none of our code.

References: the log-likelihood of absorption times from the dense sub-intensity matrix by
eigendecomposition (numpy, ``_dense_loglik`` of test_nlsq), maximised over the other
parameter by SciPy's bounded scalar minimiser, and the crossing of 3.841 found by SciPy's
``brentq``; for the SFS the Poisson deviance written out here. Our root-finder stops at
``|√D − 1.96| ≤ 1e-3``, i.e. ψ within about 1e-3 / (dr/dψ) of the crossing: on these data
``dr/dψ`` is 1.5 or more near the ends, so the tolerance on θ is 2e-3 relative (the
reference's own error is below 1e-8).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import phasemake
from phasemake import build_graph
from phasemake.data.obsmodel import ObservationModel
from phasemake.data.simulation import simulate_absorption_times, simulate_sfs
from phasemake.fit.identifiability import fit_warnings
from phasemake.fit.nlsq import fit_in_memory
from phasemake.fit.profile import CHI2_95, profile_bound, profile_intervals
from phasemake.fit.state import Accumulator
from phasemake.models import block_counting, kingman, two_deme
from tests.unit.fit.test_nlsq import _dense_loglik

REL = 2e-3


def _times_fit(graph, truth, size, seed, censor_at=None, initial=None):
    trace = phasemake.compile_trace(graph)
    obs = simulate_absorption_times(
        graph, np.asarray(truth), size=size, seed=seed, censor_at=censor_at
    )
    model = ObservationModel("absorption_times", trace, initial=initial)
    t_max = float(obs.columns["time"].max())
    block = obs.rows(0, obs.n_rows)
    fit = fit_in_memory(
        model,
        [lambda phi: model.accumulate(phi, block, budget=model.budget(phi, t_max))],
        profile=True,
    )
    return obs, fit, model


def _agree_with_wald(fit, within=0.10):
    for name in fit["free"]:
        p = fit["parameters"][name]
        assert None not in p["profile"], (name, p)
        np.testing.assert_allclose(p["profile"], p["wald95"], rtol=within, err_msg=name)


def test_kingman_profile_equals_the_dense_likelihood_ratio_interval():
    graph = build_graph(kingman, n=10)
    obs, fit, _ = _times_fit(graph, [1.0], 2000, seed=3)

    def minus2ll(log_c):
        return -2.0 * _dense_loglik(graph, [np.exp(log_c)], obs).sum()

    best = scipy.optimize.minimize_scalar(minus2ll, bracket=(-0.5, 0.5), tol=1e-12)
    ref = [
        np.exp(scipy.optimize.brentq(lambda x: minus2ll(x) - best.fun - CHI2_95, *edge))
        for edge in ((best.x - 1.0, best.x), (best.x, best.x + 1.0))
    ]
    np.testing.assert_allclose(fit["parameters"]["coal"]["profile"], ref, rtol=REL)
    _agree_with_wald(fit)
    assert fit["warnings"] == []


def test_four_plus_four_lineages_have_an_open_profile_for_migration():
    """Issue 18's case: the data cannot exclude panmixia, so mig's profile is open above."""
    graph = build_graph(two_deme, n1=4, n2=4)
    obs, fit, _ = _times_fit(graph, [1.0, 0.5], 3000, seed=1)
    mig = fit["parameters"]["mig"]
    assert mig["profile"][1] is None and fit["profile_range"] == 100.0
    assert any(
        w.startswith("mig's 95% profile-likelihood interval is open above") for w in fit["warnings"]
    )

    def profile_of(log_mig):  # −2 log L maximised over coal, by SciPy on the dense matrix
        res = scipy.optimize.minimize_scalar(
            lambda lc: -2.0 * _dense_loglik(graph, np.exp([lc, log_mig]), obs).sum(),
            bounds=(-3.0, 3.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        return res.fun

    floor = profile_of(np.log(mig["estimate"]))
    low = np.exp(
        scipy.optimize.brentq(
            lambda x: profile_of(x) - floor - CHI2_95, np.log(0.2), np.log(mig["estimate"])
        )
    )
    assert mig["profile"][0] == pytest.approx(low, rel=REL)
    # open above: even 100× the estimate is within 1.92 log-likelihood units of the best
    assert profile_of(np.log(100 * mig["estimate"])) - floor < CHI2_95
    # the Wald interval claims an upper limit the data do not set
    assert np.isfinite(mig["wald95"][1])


def test_well_identified_two_demes_profile_equals_wald():
    """The default analysis (config/config.yaml's two_deme_times): 6 + 6 lineages, 20,000
    times censored at 12, mig = 0.25, started at mig = 0.05 as the config does (from
    mig = 1 the fit runs off on the panmictic plateau and has no profile: tested below).
    (At mig = 0.5 without censoring the upper ends differ
    by 12%: the likelihood is skewed there, and the profile equals the dense reference's
    likelihood-ratio end, 0.7923 vs 0.7925, measured with SciPy as above.)"""
    graph = build_graph(two_deme, n1=6, n2=6)
    _, fit, _ = _times_fit(
        graph, [1.0, 0.25], 20_000, seed=1, censor_at=12.0, initial={"mig": 0.05}
    )
    _agree_with_wald(fit)
    assert fit["warnings"] == []


def test_sfs_profile_equals_the_quasi_poisson_deviance_interval():
    n = 10
    graph = build_graph(block_counting, n=n)
    trace = phasemake.compile_trace(graph)
    closed = 2.0 / np.arange(1, n)
    obs = simulate_sfs(0.002 * closed, sites=np.full(300, 2000.0), seed=9)
    model = ObservationModel("sfs", trace, states=graph.states, fixed={"coal": 1.0})
    fit = fit_in_memory(model, [lambda phi: model.accumulate(phi, obs, budget=0)], profile=True)
    y, s = obs.columns["counts"], obs.columns["sites"][:, None] * closed[None, :]

    def deviance(log_mut):
        mu = np.exp(log_mut) * s
        return 2.0 * np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))

    hat = np.log(y.sum() / s.sum())  # the Poisson MLE of a multiplicative rate
    scale = deviance(hat) / (y.size - 1)
    ref = [
        np.exp(
            scipy.optimize.brentq(lambda x: (deviance(x) - deviance(hat)) / scale - CHI2_95, *edge)
        )
        for edge in ((hat - 1.0, hat), (hat, hat + 1.0))
    ]
    np.testing.assert_allclose(fit["parameters"]["mutation"]["profile"], ref, rtol=REL)
    assert "profile" not in fit["parameters"]["coal"]  # fixed
    _agree_with_wald(fit)
    assert fit["warnings"] == []


def _quadratic(center, sd):
    def evaluate(phi):
        r = (phi[0] - center) / sd
        return Accumulator(np.array([[1 / sd**2]]), np.array([r / sd]), r * r, r * r, 1.0)

    return evaluate


def test_a_plateau_side_is_open_and_never_a_number():
    """χ² = 3.5 (1 − e^(−φ)) for φ > 0 tends to 3.5 < 3.841: the upper side never closes."""

    def evaluate(phi):
        x = phi[0]
        value = 3.5 * (1.0 - np.exp(-x)) if x > 0 else x * x
        grad = 3.5 * np.exp(-x) if x > 0 else 2 * x
        return Accumulator(np.array([[grad**2]]), np.array([grad]), value, value, 1.0)

    side = profile_bound(evaluate, [0.0], 0.0, [[1.0]], 0, +1, range_factor=1e3)
    assert side.bound is None
    assert max(p for p, _ in side.points) == pytest.approx(np.log(1e3))
    low = profile_bound(evaluate, [0.0], 0.0, [[1.0]], 0, -1)
    assert np.log(low.bound) == pytest.approx(-np.sqrt(CHI2_95), abs=1e-3)


def test_a_failed_evaluation_counts_as_outside():
    base = _quadratic(0.0, 1.0)

    def evaluate(phi):
        if phi[0] > 1.0:
            raise ValueError("beyond the uniformisation budget")
        return base(phi)

    side = profile_bound(evaluate, [0.0], 0.0, [[1.0]], 0, +1)
    assert 0.9 < np.log(side.bound) <= 1.0  # the edge of what can be evaluated
    assert any(d == np.inf for _, d in side.points)
    out = profile_intervals(evaluate, ["rate"], [0.0], 0.0, [[1.0]])
    assert None in [d for _, d in out["parameters"]["rate"]["points"]]  # JSON-safe


def test_a_better_fit_on_the_profile_is_reported():
    def evaluate(phi):  # χ² = φ₀² + (φ₁ − 0.5)²: the "fit" at (0, 0) is not the optimum
        r = np.array([phi[0], phi[1] - 0.5])
        return Accumulator(np.eye(2), r, float(r @ r), float(r @ r), 2.0)

    out = profile_intervals(evaluate, ["a", "b"], [0.0, 0.0], 0.25, np.eye(2))
    assert out["better"] == pytest.approx(0.25, abs=1e-6)
    warnings = fit_warnings(["a", "b"], [0.0, 0.0], np.eye(2), profile=out)
    assert warnings[0].startswith("A profile found a better fit than the estimate")


def test_a_fit_that_did_not_converge_has_no_profile():
    """Two demes 6 + 6 started at mig = 1 run off on the panmictic plateau (mig → ∞): the
    fit stops as a runaway, and no profile is computed around a point that is no optimum."""
    graph = build_graph(two_deme, n1=6, n2=6)
    _, fit, _ = _times_fit(graph, [1.0, 0.25], 5_000, seed=1, censor_at=12.0)
    assert fit["status"] == "stopped" and fit["reason"].startswith("runaway")
    assert fit["profile_skipped"].startswith("the fit did not converge (runaway")
    assert all("profile" not in p for p in fit["parameters"].values())
    assert fit["parameters"]["mig"]["wald95"][1] is None  # beyond floating point: no ∞ in JSON
