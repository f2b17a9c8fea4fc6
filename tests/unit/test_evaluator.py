"""The trace evaluator against dense linear algebra, scipy.linalg.expm and closed forms.

Tolerances: expectations, moments and covariances are direct solves either way, so they
agree to rounding (relative 1e-10 leaves room for the condition numbers of these small
systems); the density is a truncated series (tail mass 1e-15), so absolute 1e-9 is ample;
finite differences of step 1e-6 are accurate to about 1e-7 relative.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import phasemake
from phasemake import build_graph
from phasemake.dense import sub_intensity
from phasemake.models import block_counting, kingman, rabbits, two_deme

CASES = {
    "kingman": (kingman, {"n": 6}),
    "block_counting": (block_counting, {"n": 7}),
    "two_deme": (two_deme, {"n1": 3, "n2": 2}),
    "two_deme_sized": (two_deme, {"n1": 2, "n2": 2, "relative_size": 0.5}),
    "rabbits": (rabbits, {"nr_rabbits": 3}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, params = CASES[request.param]
    graph = build_graph(model, **params)
    return graph, phasemake.compile_trace(graph)


def thetas(graph, count=3, seed=11):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.3, 3.0, size=len(graph.parameters)) for _ in range(count)]


def dense(graph, theta, rewards=None):
    """U = (-S)^{-1}, alpha and rewards restricted to transient states."""
    alpha, s, transient = sub_intensity(graph, theta)
    r = np.ones(graph.n_vertices) if rewards is None else np.asarray(rewards, dtype=float)
    return alpha, s, np.linalg.inv(-s), r[transient]


def test_expectations(case):
    graph, trace = case
    rng = np.random.default_rng(3)
    for theta in thetas(graph):
        alpha, _, u, _ = dense(graph, theta)
        vec = rng.uniform(size=graph.n_vertices)
        mat = rng.uniform(size=(graph.n_vertices, 3))
        transient = np.flatnonzero(~graph.absorbing)
        assert float(trace.expectation(theta)) == pytest.approx(alpha @ u.sum(1), rel=1e-10)
        ref_vec = alpha @ u @ vec[transient]
        assert float(trace.expectation(theta, vec)) == pytest.approx(ref_vec, rel=1e-10)
        np.testing.assert_allclose(
            trace.expectation(theta, mat), alpha @ u @ mat[transient], rtol=1e-10
        )
        occupation = np.zeros(graph.n_vertices)
        occupation[transient] = alpha @ u
        np.testing.assert_allclose(trace.occupation(theta), occupation, rtol=1e-10, atol=1e-14)


def test_moments_and_covariance(case):
    graph, trace = case
    rng = np.random.default_rng(5)
    for theta in thetas(graph):
        rewards = rng.uniform(0.5, 2.0, size=(graph.n_vertices, 2))
        alpha, _, u, r = dense(graph, theta, rewards)
        ur = u @ np.diag(r[:, 0])
        ref = [
            math.factorial(k) * alpha @ np.linalg.matrix_power(ur, k) @ np.ones(len(alpha))
            for k in (1, 2, 3)
        ]
        np.testing.assert_allclose(trace.moments(theta, 3, rewards[:, 0]), ref, rtol=1e-10)
        mean = alpha @ u @ r
        second = np.array(
            [
                [
                    alpha @ (u @ (r[:, a] * (u @ r[:, b])) + u @ (r[:, b] * (u @ r[:, a])))
                    for b in range(2)
                ]
                for a in range(2)
            ]
        )
        np.testing.assert_allclose(
            trace.covariance(theta, rewards), second - np.outer(mean, mean), rtol=1e-10
        )


def test_distribution_against_expm(case):
    graph, trace = case
    for theta in thetas(graph, count=2):
        alpha, s, _, _ = dense(graph, theta)
        exit_rate = -s.sum(axis=1)
        grid = np.linspace(0.05, 3 * float(trace.expectation(theta)), 20)
        exps = [scipy.linalg.expm(s * t) for t in grid]
        pdf = np.array([alpha @ e @ exit_rate for e in exps])
        surv = np.array([alpha @ e @ np.ones(len(alpha)) for e in exps])
        np.testing.assert_allclose(trace.pdf(theta, grid), pdf, atol=1e-9)
        np.testing.assert_allclose(trace.survival(theta, grid), surv, atol=1e-9)
        np.testing.assert_allclose(trace.cdf(theta, grid), 1 - surv, atol=1e-9)
        big = pdf > 1e-6
        np.testing.assert_allclose(
            np.asarray(trace.logpdf(theta, grid))[big], np.log(pdf[big]), atol=1e-6
        )


def test_closed_forms():
    n = 9
    tr = phasemake.compile_trace(build_graph(kingman, n=n))
    assert float(tr.expectation([1.0])) == pytest.approx(2 * (1 - 1 / n), rel=1e-13)
    g = build_graph(block_counting, n=n)
    sfs = phasemake.compile_trace(g).expectation([1.0], g.states[:, : n - 1])
    np.testing.assert_allclose(sfs, 2 / np.arange(1, n), rtol=1e-12)
    exp1 = phasemake.compile_trace(build_graph(kingman, n=2))  # T ~ Exp(1)
    grid = np.linspace(0.0, 6.0, 13)
    np.testing.assert_allclose(exp1.pdf([1.0], grid), np.exp(-grid), atol=1e-12)
    np.testing.assert_allclose(exp1.moments([1.0], 3), [1.0, 2.0, 6.0], rtol=1e-13)


@pytest.mark.parametrize("name", ["two_deme", "rabbits"])
def test_gradients_against_finite_differences(name):
    model, params = CASES[name]
    graph = build_graph(model, **params)
    trace = phasemake.compile_trace(graph)
    theta = thetas(graph, count=1)[0]
    rewards = np.random.default_rng(2).uniform(size=graph.n_vertices)
    grid = np.linspace(0.1, 2.0, 7)
    n_terms = trace.n_terms(theta * 1.01, grid)
    functions = {
        "E[T]": lambda th: trace.expectation(th),
        "E[reward]": lambda th: trace.expectation(th, rewards),
        "pdf": lambda th: trace.pdf(th, grid, n_terms=n_terms).sum(),
        "second moment": lambda th: trace.moments(th, 2)[1],
    }
    h = 1e-6
    for label, fn in functions.items():
        grad = np.asarray(jax.grad(fn)(jnp.asarray(theta)))
        fd = np.array(
            [
                (float(fn(theta + h * e)) - float(fn(theta - h * e))) / (2 * h)
                for e in np.eye(len(theta))
            ]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9, err_msg=label)


def test_vmap_and_jit_equal_single_evaluations():
    graph = build_graph(two_deme, n1=3, n2=3)
    trace = phasemake.compile_trace(graph)
    batch = np.random.default_rng(4).uniform(0.3, 3.0, size=(5, 2))
    batched = jax.vmap(lambda th: trace.expectation(th))(jnp.asarray(batch))
    single = [float(trace.expectation(th)) for th in batch]
    np.testing.assert_allclose(batched, single, rtol=1e-13)
    jitted = jax.jit(lambda th: trace.expectation(th))
    assert float(jitted(batch[0])) == pytest.approx(single[0], rel=1e-14)
    grads = jax.vmap(jax.grad(lambda th: trace.expectation(th)))(jnp.asarray(batch))
    assert grads.shape == (5, 2)


def test_density_inside_jit_needs_fixed_terms():
    trace = phasemake.compile_trace(build_graph(kingman, n=4))
    with pytest.raises(ValueError, match="n_terms"):
        jax.jit(lambda th: trace.pdf(th, jnp.array([1.0])))(jnp.array([1.0]))


def test_bad_inputs_are_explained():
    trace = phasemake.compile_trace(build_graph(two_deme, n1=2, n2=1))
    with pytest.raises(ValueError, match=r"expected \(2,\) for parameters \['coal', 'mig'\]"):
        trace.expectation([1.0])
    with pytest.raises(ValueError, match="one row per graph vertex"):
        trace.expectation([1.0, 1.0], np.ones(3))
