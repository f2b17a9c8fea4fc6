"""Adaptive, level-truncated uniformisation (``phasemake.trace.uniformisation``).

The accuracy of pdf/cdf/survival for every built-in model is in test_trace_reference.py;
here: the Poisson span constant against SciPy, a case where many levels are truncated over
a long time range (against ``scipy.linalg.expm``, absolute 1e-9: the truncated mass is at
most ~30 x 1e-14 and each interval's Poisson tail 1e-15), that truncation really saves
work, and the NaN guard for times a fixed budget does not reach.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import poisson

import phasemake
from phasemake import build_graph
from phasemake.models import block_counting, two_deme
from phasemake.trace import uniformisation
from phasemake.trace.dense import sub_intensity


def test_span_is_the_largest_mean_with_a_small_tail():
    k, mu = uniformisation.BLOCK, uniformisation.SPAN
    assert poisson.sf(k - 1, mu) <= uniformisation.TAIL * (1 + 1e-6)
    assert poisson.sf(k - 1, mu * 1.001) > uniformisation.TAIL


def _dense(graph, theta, times):
    alpha, s, _ = sub_intensity(graph, theta)
    exits = -s.sum(axis=1)
    states = [alpha @ scipy.linalg.expm(s * t) for t in times]
    return np.array([a @ exits for a in states]), np.array([a.sum() for a in states])


@pytest.mark.parametrize(
    ("model", "params", "theta"),
    [
        (block_counting, {"n": 12}, [1.7]),
        (two_deme, {"n1": 3, "n2": 3}, [1.3, 0.05]),  # slow migration: mass lingers high
    ],
)
def test_truncated_levels_against_expm(model, params, theta):
    graph = build_graph(model, **params)
    trace = phasemake.compile_trace(graph)
    times = np.geomspace(1e-3, 40.0, 60)
    pdf_ref, surv_ref = _dense(graph, np.asarray(theta), times)
    np.testing.assert_allclose(trace.pdf(theta, times), pdf_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(trace.survival(theta, times), surv_ref, rtol=0, atol=1e-9)


def test_one_pass_gives_density_and_survival():
    """``pdf_and_survival`` shares one series between the two: the same values as the
    separate passes (eager and under a budget), and the same gradient of a censored
    log-likelihood (rtol 1e-12: the sums are the same, only fused)."""
    trace = phasemake.compile_trace(build_graph(two_deme, n1=3, n2=2))
    theta = jnp.array([1.1, 0.4])
    times = jnp.linspace(0.05, 6.0, 40)
    pdf, surv = trace.pdf_and_survival(theta, times)
    np.testing.assert_allclose(pdf, trace.pdf(theta, times), rtol=1e-13)
    np.testing.assert_allclose(surv, trace.survival(theta, times), rtol=1e-13)
    budget = trace.n_terms(theta * 2, times)
    censored = jnp.arange(40) % 3 == 0

    def fused(th):
        p, s = trace.pdf_and_survival(th, times, n_terms=budget)
        return jnp.sum(jnp.where(censored, jnp.log(s), jnp.log(p)))

    def separate(th):
        p = trace.pdf(th, times, n_terms=budget)
        s = trace.survival(th, times, n_terms=budget)
        return jnp.sum(jnp.where(censored, jnp.log(s), jnp.log(p)))

    np.testing.assert_allclose(jax.grad(fused)(theta), jax.grad(separate)(theta), rtol=1e-12)


def test_truncation_saves_steps():
    """Block counting n=30 to t=5: one series at λ_max = 435 would take > 2,175 steps."""
    trace = phasemake.compile_trace(build_graph(block_counting, n=30))
    steps = trace.n_terms([1.0], [5.0])
    assert steps % uniformisation.BLOCK == 0
    assert steps < 435 * 5.0 / 2


def test_fixed_budget_returns_nan_beyond_its_reach():
    graph = build_graph(block_counting, n=6)
    trace = phasemake.compile_trace(graph)
    times = jnp.array([0.5, 2.0, 400.0])
    budget = trace.n_terms([1.0], [2.0])
    pdf = jax.jit(lambda th: trace.pdf(th, times, n_terms=budget))(jnp.array([1.0]))
    eager = trace.pdf([1.0], times[:2])
    np.testing.assert_allclose(pdf[:2], eager, rtol=1e-13)
    assert np.isnan(pdf[2])


def test_vmap_over_theta_with_a_budget():
    trace = phasemake.compile_trace(build_graph(two_deme, n1=2, n2=2))
    thetas = jnp.array([[1.0, 0.5], [2.0, 0.1], [0.7, 1.5]])
    times = jnp.linspace(0.1, 4.0, 7)
    budget = max(trace.n_terms(th, times) for th in np.asarray(thetas))
    batched = jax.vmap(lambda th: trace.cdf(th, times, n_terms=budget))(thetas)
    for row, th in zip(np.asarray(batched), np.asarray(thetas), strict=True):
        np.testing.assert_allclose(row, trace.cdf(th, times), rtol=0, atol=1e-14)


def test_bad_times_and_budgets_are_explained():
    trace = phasemake.compile_trace(build_graph(block_counting, n=4))
    with pytest.raises(ValueError, match="finite times >= 0"):
        trace.pdf([1.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="finite times >= 0"):
        trace.survival([1.0], [np.nan])
    with pytest.raises(ValueError, match="n_terms=0; expected a positive integer"):
        trace.pdf([1.0], [1.0], n_terms=0)
    with pytest.raises(ValueError, match=r"beyond .* uniformisation steps"):  # not an OOM
        trace.n_terms([1e300], [5.0])


def test_a_generous_budget_changes_nothing():
    """Intervals past ``max(t)`` are skipped (``lax.cond``): a budget 64 times what θ needs
    gives the same density and gradient (rtol 1e-13: the same sums, in differently
    compiled programs). What the skip saves is measured in benchmarks/trace.py."""
    trace = phasemake.compile_trace(build_graph(two_deme, n1=3, n2=3))
    theta = jnp.array([1.3, 0.4])
    times = jnp.linspace(0.05, 3.0, 200)
    need = trace.n_terms(theta, times)

    def program(budget):
        f = lambda th: jnp.sum(jnp.log(trace.pdf(th, times, n_terms=budget)))  # noqa: E731
        return jax.jit(jax.value_and_grad(f))

    (v1, g1), (v2, g2) = program(need)(theta), program(64 * need)(theta)
    np.testing.assert_allclose(v2, v1, rtol=1e-13)
    np.testing.assert_allclose(g2, g1, rtol=1e-13)


def test_reverse_mode_kept_or_recomputed_and_forward_mode_agree(monkeypatch):
    """The budget's steps are kept for reverse mode up to ``RESIDUAL_BYTES`` and
    recomputed past it; the two give the same gradient (rtol 1e-13: the same sums in
    differently compiled programs) and so does forward mode (``jacfwd``, which NLSQ uses;
    rtol 1e-12), on a cyclic model with both parameters free. The gradient against finite
    differences is in test_trace_reference.py."""
    trace = phasemake.compile_trace(build_graph(two_deme, n1=3, n2=2))
    theta = jnp.array([1.2, 0.3])
    times = jnp.linspace(0.05, 4.0, 50)
    intervals = 3 * trace.n_terms(theta, times) // uniformisation.BLOCK
    data, levels = trace._series_data, trace.n_levels

    def loglik(th):  # traced anew on each call: RESIDUAL_BYTES is read at trace time
        pdf, surv = uniformisation.series(
            data, th, times, kind="both", n_levels=levels, n_intervals=intervals
        )
        return jnp.sum(jnp.log(pdf)) + jnp.sum(jnp.log(surv))

    kept = jax.grad(loglik)(theta)
    monkeypatch.setattr(uniformisation, "RESIDUAL_BYTES", 0)
    recomputed = jax.grad(loglik)(theta)
    np.testing.assert_allclose(recomputed, kept, rtol=1e-13)
    np.testing.assert_allclose(jax.jacfwd(loglik)(theta), kept, rtol=1e-12)
