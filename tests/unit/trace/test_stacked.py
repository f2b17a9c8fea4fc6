"""The stacked walk (``Trace(..., walk="stacked")``, :mod:`phasemake.trace.stacked`)
against dense linear algebra and against the unrolled walk.

References: ``U = (-S)^{-1}`` from :func:`phasemake.trace.dense.sub_intensity` with numpy
(expectations, occupation, moments, covariances: exact solves on both sides, relative
1e-10); gradients against central differences of the dense expectation (step 1e-6:
truncation ~1e-12, rounding ~1e-10; relative 1e-6); vmap against a loop and the stacked
walk against the unrolled one to relative 1e-12 (the same solves in another order).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.graph.model import model
from phasemake.models import block_counting, kingman, two_deme
from phasemake.trace import stacked
from phasemake.trace.dense import sub_intensity

jax.config.update("jax_enable_x64", True)


@model(parameters=["mig", "die", "fall"], initial=lambda n: [0, n, 0])
def mixed(state, n):
    """Three families below one start state, so that levels hold single vertices and
    cyclic components of several sizes side by side: (1, x, y) lineages jumping between
    two islands and dying (components of size x + y + 1), (2, x, s) a count with a
    two-state switch (components of size 2), (3, x, 0) a pure death chain (singles)."""
    kind, x, y = state.tolist()
    if kind == 0:
        return [
            ([1, x, 0], (1.0, 0.0, 0.0)),
            ([2, x, 0], (0.0, 1.0, 0.0)),
            ([3, x, 0], (0.0, 0.0, 1.0)),
        ]
    if kind == 1:
        out = []
        if x:
            out += [
                ([1, x - 1, y + 1], (float(x), 0.0, 0.0)),
                ([1, x - 1, y], (0.0, float(x), 0.0)),
            ]
        if y:
            out += [([1, x + 1, y - 1], (float(y), 0.0, 0.0)), ([1, x, y - 1], (0.0, 2.0 * y, 0.0))]
        return out
    if kind == 2:
        if x == 0:
            return []
        return [([2, x, 1 - y], (1.0 + y, 0.0, 0.0)), ([2, x - 1, y], (0.0, float(x), 0.0))]
    return [([3, x - 1, 0], (0.0, 0.0, float(x)))] if x else []


CASES = {
    "mixed-4": (mixed, {"n": 4}),
    "two_deme-4-3": (two_deme, {"n1": 4, "n2": 3}),
    "block_counting-6": (block_counting, {"n": 6}),
}
REL = 1e-10
# rabbits and kingman run the unrolled walk's reference tests (test_trace_reference.py);
# these three cover a level of mixed pieces, one component per level and singles only


def _traces(model_fn, **params):
    graph = build_graph(model_fn, **params)
    unrolled = phasemake.compile_trace(graph)
    walk = phasemake.Trace(unrolled.arrays, parameters=graph.parameters, walk="stacked")
    return graph, unrolled, walk


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model_fn, params = CASES[request.param]
    return _traces(model_fn, **params)


def _dense(graph, theta):
    """``U = (-S)^{-1}`` and ``α`` over all vertices (zero at absorbing ones)."""
    alpha_t, s, transient = sub_intensity(graph, theta)
    u = np.zeros((graph.n_vertices, graph.n_vertices))
    u[np.ix_(transient, transient)] = np.linalg.inv(-s)
    alpha = np.zeros(graph.n_vertices)
    alpha[transient] = alpha_t
    return u, alpha


def _thetas(graph, count=2, seed=20261201):
    return np.random.default_rng(seed).uniform(0.3, 3.0, size=(count, len(graph.parameters)))


def test_the_mixed_model_has_levels_of_singles_and_several_component_sizes():
    _, _, trace = _traces(mixed, n=4)
    assert trace.walk == "stacked"
    mixed_levels = [
        lv for lv in trace._levels if lv.singles and len({g[0] for g in lv.groups}) >= 2
    ]
    assert mixed_levels, "no level mixes singles with components of two sizes"


def test_expectations_occupation_moments_and_covariance_against_dense(case):
    graph, _, trace = case
    rng = np.random.default_rng(7)
    rewards = rng.uniform(0.0, 2.0, size=(graph.n_vertices, 3))
    for theta in _thetas(graph):
        u, alpha = _dense(graph, theta)
        occ = alpha @ u
        np.testing.assert_allclose(trace.occupation(theta), occ, rtol=REL, atol=1e-14)
        np.testing.assert_allclose(trace.expectation(theta), occ.sum(), rtol=REL)
        np.testing.assert_allclose(trace.expectation(theta, rewards), occ @ rewards, rtol=REL)
        r = rewards[:, 0]
        ur, want = np.ones(graph.n_vertices), []
        for k in range(1, 4):
            ur = u @ (r * ur)
            want.append(math.factorial(k) * alpha @ ur)
        np.testing.assert_allclose(trace.moments(theta, 3, r), want, rtol=REL)
        ua = u @ rewards
        second = (occ[:, None] * rewards).T @ ua
        cov = second + second.T - np.outer(occ @ rewards, occ @ rewards)
        np.testing.assert_allclose(trace.covariance(theta, rewards), cov, rtol=REL, atol=1e-12)


def test_gradients_against_differences_of_the_dense_solve(case):
    graph, _, trace = case
    theta = _thetas(graph, 1)[0]
    r = np.linspace(0.5, 1.5, graph.n_vertices)

    def dense(th, power):
        u, alpha = _dense(graph, th)
        return alpha @ u @ r if power == 1 else 2.0 * alpha @ u @ (r * (u @ r))

    for power, fn in (
        (1, lambda th: trace.expectation(th, r)),
        (2, lambda th: trace.moments(th, 2, r)[1]),
    ):
        grad = np.asarray(jax.grad(fn)(jnp.asarray(theta)))
        step = 1e-6
        diff = [
            (dense(theta + step * e, power) - dense(theta - step * e, power)) / (2 * step)
            for e in np.eye(theta.size)
        ]
        np.testing.assert_allclose(grad, diff, rtol=1e-6, atol=1e-9)


def test_stacked_equals_unrolled_batched_and_reversed(case):
    graph, unrolled, trace = case
    thetas = jnp.asarray(_thetas(graph, 3))
    r = jnp.linspace(0.5, 1.5, graph.n_vertices)
    loop = jnp.stack([unrolled.expectation(th, r) for th in thetas])
    np.testing.assert_allclose(
        jax.vmap(lambda th: trace.expectation(th, r))(thetas), loop, rtol=1e-12
    )
    g_loop = jnp.stack([jax.grad(lambda th: unrolled.moments(th, 2, r)[1])(th) for th in thetas])
    g_vmap = jax.vmap(jax.grad(lambda th: trace.moments(th, 2, r)[1]))(thetas)
    np.testing.assert_allclose(g_vmap, g_loop, rtol=1e-12)


def test_a_singular_component_does_not_leak_through_the_padding():
    """With ``die = 0`` the island and switch families never leave their components: their
    occupation is infinite (or NaN), but the death chain's is finite and unchanged."""
    graph, unrolled, trace = _traces(mixed, n=4)
    theta = np.array([1.0, 0.0, 1.3])
    occ = np.asarray(trace.occupation(theta))
    ref = np.asarray(unrolled.occupation(theta))
    states = np.asarray(graph.states)
    chain = states[:, 0] == 3
    assert not np.all(np.isfinite(occ)), "the singular families should not be finite"
    assert np.all(np.isfinite(occ[chain]))
    np.testing.assert_allclose(occ[chain], ref[chain], rtol=1e-13)
    # closed form: the start sends fall / (mig + die + fall) of its mass into the chain,
    # which spends 1 / (fall x) in state x
    x = states[chain, 1]
    mig, die, fall = theta
    want = np.where(x > 0, fall / (mig + die + fall) / (fall * np.maximum(x, 1)), 0.0)
    np.testing.assert_allclose(occ[chain], want, rtol=1e-13)


@pytest.mark.parametrize("n", [10, 20, 40, 80])
def test_programs_grow_with_the_logarithm_of_the_cyclic_levels(n):
    graph = build_graph(two_deme, n1=n // 2, n2=n // 2)
    trace = phasemake.compile_trace(graph)
    cyclic = sum(1 for lv in trace._levels if lv.groups)
    assert cyclic == n - 1
    assert trace.walk == (
        "stacked" if cyclic > phasemake.trace.evaluator.STACK_FROM else "unrolled"
    )
    shapes, plan = stacked.build_plan(trace._levels, trace.arrays, _in_perm(trace))
    least, most = stacked.size_classes(cyclic)
    assert (least, most) == (math.ceil(1.5 * math.log2(n)), math.ceil(2 * math.log2(n)))
    assert len(shapes) <= most
    # every piece is in exactly one row of one bucket, in level order
    assert plan.step_bucket.size == cyclic
    rows = {(int(b), int(r)) for b, r in zip(plan.step_bucket, plan.step_row, strict=True)}
    assert len(rows) == cyclic
    assert sum(b.vid.shape[0] for b in plan.buckets) == cyclic


def test_blocks_built_inside_the_walk_agree(monkeypatch):
    """Buckets above ``PREBUILD`` entries a row build their blocks inside the walk."""
    monkeypatch.setattr(stacked, "PREBUILD", 0)
    graph, unrolled, trace = _traces(mixed, n=4)
    theta = jnp.asarray(_thetas(graph, 1)[0])
    r = jnp.linspace(0.5, 1.5, graph.n_vertices)
    np.testing.assert_allclose(trace.occupation(theta), unrolled.occupation(theta), rtol=1e-12)
    np.testing.assert_allclose(
        jax.grad(lambda th: trace.moments(th, 2, r)[1])(theta),
        jax.grad(lambda th: unrolled.moments(th, 2, r)[1])(theta),
        rtol=1e-12,
    )


def _in_perm(trace):
    from phasemake.trace.levels import in_edges

    return in_edges(trace.arrays)[0]


def test_auto_walk_and_bad_walk():
    graph = build_graph(kingman, n=6)
    trace = phasemake.compile_trace(graph)
    assert trace.walk == "unrolled"
    assert phasemake.compile_trace(graph, walk="stacked").walk == "stacked"
    with pytest.raises(ValueError, match="walk='fast'; expected 'auto', 'unrolled' or 'stacked'"):
        phasemake.Trace(trace.arrays, parameters=graph.parameters, walk="fast")
