"""Streaming NLSQ against SciPy on the same data in memory, chunk invariance, recovery.

References are independent of the trace: phase-type log densities by an eigendecomposition
of the dense sub-intensity matrix (numpy), the SFS from its closed form E[ξ_i] = 2/(i·coal).

Tolerances: optima relative 1e-6 in θ (LM runs to xtol = gtol = 1e-11 with the ftol test
off, since in a flat direction a χ² change below rounding still moves θ by 1e-6; SciPy's
BFGS runs on the dense NLL to a gradient of 1e-8 by fourth-order differences, error
~1e-9); covariances within 1% (the reference outer-product matrix uses central differences
of step 1e-5, error ~1e-9 relative); the statistics of 1 vs 8 chunks at one point relative
1e-12 (sums regrouped), their fits 1e-6 (they may stop a pass apart); recovery within 3
standard errors.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

import phasemake
from phasemake import build_graph
from phasemake.data.observations import Observations
from phasemake.data.obsmodel import Accumulator, ObservationModel
from phasemake.data.simulation import simulate_absorption_times, simulate_sfs
from phasemake.fit.nlsq import LMSettings, fit_in_memory, lm_update
from phasemake.models import block_counting, kingman, rabbits, two_deme
from phasemake.trace.dense import sub_intensity

TIGHT = LMSettings(ftol=0.0, xtol=1e-11, gtol=1e-11, max_iterations=200)


def _dense_loglik(graph, theta, obs):
    """Per-row log-likelihood by eigendecomposition of S (numpy only)."""
    alpha, s, _ = sub_intensity(graph, theta)
    exits = -s.sum(axis=1)
    w, v = np.linalg.eig(s)
    left = alpha @ v
    pdf_c = left * np.linalg.solve(v, exits)
    surv_c = left * np.linalg.solve(v, np.ones_like(exits))
    t, cens = obs.columns["time"], obs.columns["censored"]
    e = np.exp(np.outer(t, w))
    pdf, surv = np.real(e @ pdf_c), np.real(e @ surv_c)
    return np.where(cens > 0, np.log(surv), np.log(pdf))


def _parts(model, obs, n_parts, t_max):
    edges = np.linspace(0, obs.n_rows, n_parts + 1).astype(int)
    blocks = [obs.rows(a, b) for a, b in itertools.pairwise(edges)]
    return [
        lambda phi, b=b: model.accumulate(phi, b, budget=model.budget(phi, t_max)) for b in blocks
    ]


@pytest.fixture(scope="module")
def times_problem():
    graph = build_graph(two_deme, n1=3, n2=1)  # unequal samples: migration is identified
    trace = phasemake.compile_trace(graph)
    truth = np.array([1.2, 0.6])
    obs = simulate_absorption_times(graph, truth, size=3000, seed=11, censor_at=4.0)
    weights = np.random.default_rng(2).integers(1, 4, size=obs.n_rows).astype(float)
    obs = Observations("absorption_times", {**obs.columns, "weight": weights})
    model = ObservationModel("absorption_times", trace, initial={"coal": 1.2, "mig": 0.6})
    fit = fit_in_memory(model, _parts(model, obs, 1, 4.0), settings=TIGHT)
    return graph, obs, model, fit


def test_absorption_times_equal_scipy_mle(times_problem):
    graph, obs, _, fit = times_problem
    w = obs.columns["weight"]

    def nll(log_theta):
        return -w @ _dense_loglik(graph, np.exp(log_theta), obs)

    def score(log_theta, h=1e-3):
        # Richardson-extrapolated central differences: truncation O(h^4) and rounding
        # ~eps*nll/h ~ 2e-9, so the root is fixed to ~1e-10 in log θ
        out = []
        for e in np.eye(2):
            diff = [(nll(log_theta + s * e) - nll(log_theta - s * e)) / (2 * s) for s in (h, h / 2)]
            out.append((4 * diff[1] - diff[0]) / 3)
        return np.array(out)

    # Nelder-Mead finds the basin; its function-value tolerance leaves the flat direction
    # undetermined at ~1e-6 (the likelihood changes by ~1e-14 relative there), so the
    # reference optimum is the root of the dense score polished from that start.
    start = scipy.optimize.minimize(
        nll,
        np.log([1.2, 0.6]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000},
    )
    ref = scipy.optimize.root(score, start.x, method="hybr", tol=1e-12)
    assert np.max(np.abs(score(ref.x))) < 1e-6
    est = np.array([fit["parameters"][n]["estimate"] for n in ("coal", "mig")])
    assert fit["converged"], fit["reason"]
    np.testing.assert_allclose(est, np.exp(ref.x), rtol=1e-6)
    # covariance: inverse outer product of per-row scores (log scale), at SciPy's optimum
    h = 1e-5
    scores = np.stack(
        [
            (
                _dense_loglik(graph, np.exp(ref.x + h * e), obs)
                - _dense_loglik(graph, np.exp(ref.x - h * e), obs)
            )
            / (2 * h)
            for e in np.eye(2)
        ],
        axis=1,
    )
    opg = scores.T @ (w[:, None] * scores)
    cov_ref = np.linalg.inv(opg) * np.outer(np.exp(ref.x), np.exp(ref.x))
    np.testing.assert_allclose(fit["covariance"], cov_ref, rtol=0.01)


def test_sfs_equals_scipy_least_squares():
    n = 8
    graph = build_graph(block_counting, n=n)
    trace = phasemake.compile_trace(graph)
    closed = 2.0 / np.arange(1, n)  # E[ξ_i] at coal = 1
    sites = np.random.default_rng(1).integers(500, 1500, size=150).astype(float)
    obs = simulate_sfs(0.004 * closed, sites=sites, seed=5)
    y = obs.columns["counts"]

    def residuals(log_mut):
        mu = np.exp(log_mut[0]) * sites[:, None] * closed[None, :]
        d = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
        return (np.sign(y - mu) * np.sqrt(np.maximum(d, 0))).ravel()

    ref = scipy.optimize.least_squares(
        residuals, [np.log(0.01)], method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15
    )
    model = ObservationModel(
        "sfs", trace, states=graph.states, fixed={"coal": 1.0}, initial={"mutation": 0.01}
    )
    fit = fit_in_memory(model, [lambda phi: model.accumulate(phi, obs, budget=0)], settings=TIGHT)
    est = fit["parameters"]["mutation"]["estimate"]
    assert fit["parameters"]["coal"] == {"estimate": 1.0, "se": 0.0, "fixed": True}
    assert est == pytest.approx(np.exp(ref.x[0]), rel=1e-6)
    jac = ref.jac
    s2 = 2 * ref.cost / (y.size - 1)
    var_ref = s2 * np.linalg.inv(jac.T @ jac)[0, 0] * np.exp(2 * ref.x[0])
    assert fit["covariance"][0][0] == pytest.approx(var_ref, rel=0.01)


def test_eight_chunks_equal_one(times_problem):
    _, obs, model, fit = times_problem
    phi = np.log([1.1, 0.7])
    one = Accumulator.total([part(phi) for part in _parts(model, obs, 1, 4.0)])
    eight = Accumulator.total([part(phi) for part in _parts(model, obs, 8, 4.0)])
    for a, b in zip(one[:5], eight[:5], strict=True):  # the same sums, regrouped
        np.testing.assert_allclose(a, b, rtol=1e-12)
    meats = [acc.blocks.closed_all().meat for acc in (one, eight)]  # the sandwich's meat too
    np.testing.assert_allclose(meats[0], meats[1], rtol=1e-12)
    fit8 = fit_in_memory(model, _parts(model, obs, 8, 4.0), settings=TIGHT)
    for name in ("coal", "mig"):  # the LM paths may stop a pass apart: the fit's precision
        assert fit8["parameters"][name]["estimate"] == pytest.approx(
            fit["parameters"][name]["estimate"], rel=1e-6
        )
    again = fit_in_memory(model, _parts(model, obs, 8, 4.0), settings=TIGHT)
    assert again == fit8  # same chunks, same order: bit-identical


RECOVERY = [
    (kingman, {"n": 5}, {"coal": 0.7}),
    (block_counting, {"n": 5}, {"coal": 1.6}),
    (two_deme, {"n1": 2, "n2": 2}, {"coal": 1.0, "mig": 1.0}),
    # rabbits' rates are weakly identified by absorption times alone (a curved ridge: at
    # n=2, jump=1.5 the MLE sits 5 Wald SEs from the truth but only 0.34 log-likelihood
    # units below it); three rabbits and a slower jump identify them
    (rabbits, {"nr_rabbits": 3}, {"jump": 1.0, "flood_left": 0.5, "flood_right": 2.0}),
]


@pytest.mark.parametrize(("model_fn", "params", "truth"), RECOVERY)
def test_simulated_times_recover_the_truth(model_fn, params, truth):
    graph = build_graph(model_fn, **params)
    trace = phasemake.compile_trace(graph)
    theta = [truth[n] for n in graph.parameters]
    obs = simulate_absorption_times(graph, theta, size=4000, seed=7)
    model = ObservationModel("absorption_times", trace)
    fit = fit_in_memory(model, _parts(model, obs, 2, float(obs.columns["time"].max())))
    assert fit["converged"], fit["reason"]
    for name, value in truth.items():
        p = fit["parameters"][name]
        assert abs(p["estimate"] - value) < 3 * p["se"], (name, p, value)


def test_simulated_sfs_recovers_the_mutation_scaling():
    graph = build_graph(block_counting, n=10)
    trace = phasemake.compile_trace(graph)
    expected = np.asarray(trace.expectation([1.0], graph.states[:, :9].astype(float)))
    obs = simulate_sfs(0.002 * expected, sites=np.full(300, 2000.0), seed=9)
    model = ObservationModel("sfs", trace, states=graph.states, fixed={"coal": 1.0})
    fit = fit_in_memory(model, [lambda phi: model.accumulate(phi, obs, budget=0)])
    p = fit["parameters"]["mutation"]
    assert fit["converged"] and abs(p["estimate"] - 0.002) < 3 * p["se"]


def test_stopping_reasons():
    acc = Accumulator(np.eye(1), np.array([-1.0]), 2.0, 2.0, 10.0)
    state = lm_update(None, np.zeros(1), acc, LMSettings(max_iterations=1))
    assert state["status"] == "stopped" and "max_iterations (1)" in state["reason"]
    flat = Accumulator(np.eye(1), np.array([0.0]), 2.0, 2.0, 10.0)
    state = lm_update(None, np.zeros(1), flat, LMSettings())
    assert state["status"] == "converged" and state["reason"].startswith("gtol")
    # a worse point is rejected: the best point stays, the damping grows
    state = lm_update(None, np.zeros(1), acc, LMSettings())
    worse = Accumulator(np.eye(1), np.array([-1.0]), 3.0, 3.0, 10.0)
    after = lm_update(state, np.asarray(state["next"]), worse, LMSettings())
    assert not after["accepted"] and after["best"]["phi"] == [0.0]
    assert after["damping"] == pytest.approx(state["damping"] * 10)
    # a point where the likelihood is NaN (e.g. outside a fixed budget) is rejected
    nan = Accumulator(np.eye(1), np.array([np.nan]), np.nan, np.nan, 10.0)
    after = lm_update(state, np.asarray(state["next"]), nan, LMSettings())
    assert not after["accepted"] and after["history"][-1]["chi2"] is None
    json.dumps(after, allow_nan=False)  # the state file stays valid JSON
    # a nearly flat direction: the Gauss–Newton step (1e8) is shortened to max_step
    flat_dir = Accumulator(np.diag([1.0, 1e-8]), np.array([-1.0, -1.0]), 2.0, 2.0, 10.0)
    state = lm_update(None, np.zeros(2), flat_dir, LMSettings(max_step=1.5))
    assert np.max(np.abs(state["next"])) == pytest.approx(1.5)


def test_bad_parameter_settings():
    trace = phasemake.compile_trace(build_graph(kingman, n=3))
    with pytest.raises(ValueError, match=r"nlsq.initial.theta: unknown parameter"):
        ObservationModel("absorption_times", trace, initial={"theta": 1.0})
    with pytest.raises(ValueError, match=r"nlsq.fixed.coal=-1.0: expected a rate > 0"):
        ObservationModel("absorption_times", trace, fixed={"coal": -1.0})
    with pytest.raises(ValueError, match="nothing to fit"):
        ObservationModel("absorption_times", trace, fixed={"coal": 1.0})


def test_config_defaults_are_the_library_defaults():
    """One definition of each tolerance: the schema's defaults equal LMSettings'."""
    import dataclasses

    import yaml

    from tests.conftest import REPO

    schema = yaml.safe_load((REPO / "config/config.schema.yaml").read_text())
    nlsq = schema["properties"]["analyses"]["additionalProperties"]["properties"]["nlsq"]
    for field in dataclasses.fields(LMSettings):
        assert nlsq["properties"][field.name]["default"] == field.default, field.name


def test_wald_interval_is_the_log_scale_normal_interval(times_problem):
    # 95% Wald interval on log θ, mapped back: exp(log θ̂ ± z se(log θ̂)), z from SciPy
    _, _, _, fit = times_problem
    z = scipy.stats.norm.ppf(0.975)
    for i, name in enumerate(("coal", "mig")):
        p = fit["parameters"][name]
        half = z * np.sqrt(fit["log_covariance"][i][i])
        expected = np.log(p["estimate"]) + np.array([-half, half])
        np.testing.assert_allclose(np.log(p["wald95"]), expected, rtol=1e-12)
        assert p["wald95"][0] < p["estimate"] < p["wald95"][1]
