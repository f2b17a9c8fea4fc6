"""Compiled traces (``phasemake.compile_trace``) against dense linear algebra.

References are built here from :func:`phasemake.trace.dense.sub_intensity` with numpy/scipy only:
``U = (-S)^{-1}``, ``E[Y^k] = k! α (U R)^k 1``, ``E[Y_a Y_b] = α (U R_a U r_b + U R_b U r_a)``,
``pdf(t) = α exp(S t) s`` with ``s = -S 1`` and ``cdf(t) = 1 - α exp(S t) 1``.

Tolerances: expectations, moments and covariances are exact solves on both sides, so they
agree to rounding (relative 1e-10); the distribution functions are compared with
``scipy.linalg.expm`` to absolute 1e-9; gradients with central finite differences of step
1e-6 (truncation error ~1e-12, rounding ~1e-10) to relative 1e-6; vmap against a loop to
relative 1e-13; jit against eager to relative 1e-13.
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
from phasemake.models import block_counting, kingman, rabbits, two_deme
from phasemake.trace.dense import sub_intensity

jax.config.update("jax_enable_x64", True)

CASES = {
    "kingman-6": (kingman, {"n": 6}),
    "block_counting-7": (block_counting, {"n": 7}),
    "two_deme-3-2": (two_deme, {"n1": 3, "n2": 2}),
    "two_deme-2-2-half": (two_deme, {"n1": 2, "n2": 2, "relative_size": 0.5}),
    "rabbits-3": (rabbits, {"nr_rabbits": 3}),
}
REL = 1e-10  # expectations, moments, covariances vs dense solves
ABS_DIST = 1e-9  # pdf / cdf / survival vs scipy.linalg.expm


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, params = CASES[request.param]
    graph = build_graph(model, **params)
    return graph, phasemake.compile_trace(graph)


def _trace(model, **params):
    graph = build_graph(model, **params)
    return graph, phasemake.compile_trace(graph)


def random_thetas(graph, count=3, seed=20261123):
    """``count`` parameter vectors with rates uniform in [0.3, 3]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 3.0, size=(count, len(graph.parameters)))


# -- dense references (numpy / scipy only) -----------------------------------------------
def dense_moments(graph, theta, k, rewards=None):
    """``[E[Y], ..., E[Y^k]]``, ``E[Y^i] = i! α (U R)^i 1``."""
    alpha, s, transient = sub_intensity(graph, theta)
    r = np.ones(graph.n_vertices) if rewards is None else np.asarray(rewards, float)
    u = np.linalg.inv(-s)
    ur = u @ np.diag(r[transient])
    y, out = np.ones(len(transient)), []
    for i in range(1, k + 1):
        y = ur @ y
        out.append(math.factorial(i) * alpha @ y)
    return np.array(out)


def dense_expectation(graph, theta, rewards=None):
    """``α U r`` for ``r`` of shape (V,) (scalar) or (V, k) (shape (k,))."""
    alpha, s, transient = sub_intensity(graph, theta)
    r = np.ones(graph.n_vertices) if rewards is None else np.asarray(rewards, float)
    return alpha @ np.linalg.solve(-s, r[transient])


def dense_covariance(graph, theta, rewards):
    """Covariance of ``Y_a = ∫ r_a dt``: ``α (U R_a U r_b + U R_b U r_a) - E[Y_a] E[Y_b]``."""
    alpha, s, transient = sub_intensity(graph, theta)
    r = np.asarray(rewards, float)[transient]
    u = np.linalg.inv(-s)
    x = u @ r  # (T, k): U r_b
    mean = alpha @ x
    k = r.shape[1]
    second = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            second[a, b] = alpha @ (u @ (r[:, a] * x[:, b]) + u @ (r[:, b] * x[:, a]))
    return second - np.outer(mean, mean)


def dense_distribution(graph, theta, times):
    """``(pdf, survival)`` at ``times`` by matrix exponentials."""
    alpha, s, _ = sub_intensity(graph, theta)
    exit_rates = -s.sum(axis=1)
    pdf, surv = [], []
    for t in times:
        a = alpha @ scipy.linalg.expm(s * t)
        pdf.append(a @ exit_rates)
        surv.append(a.sum())
    return np.array(pdf), np.array(surv)


def close(got, expected, rel):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=rel, atol=0)


# -- 1. against dense linear algebra -------------------------------------------------------
def test_expectations(case):
    graph, trace = case
    rng = np.random.default_rng(7)
    for theta in random_thetas(graph):
        r = rng.uniform(0.1, 2.0, graph.n_vertices)
        rmat = rng.uniform(0.1, 2.0, (graph.n_vertices, 3))
        e_t = trace.expectation(theta)
        assert np.shape(e_t) == ()
        close(e_t, dense_expectation(graph, theta), REL)
        e_r = trace.expectation(theta, r)
        assert np.shape(e_r) == ()
        close(e_r, dense_expectation(graph, theta, r), REL)
        e_m = trace.expectation(theta, rmat)
        assert np.shape(e_m) == (3,)
        close(e_m, dense_expectation(graph, theta, rmat), REL)


def test_moments(case):
    graph, trace = case
    rng = np.random.default_rng(8)
    for theta in random_thetas(graph):
        r = rng.uniform(0.1, 2.0, graph.n_vertices)
        close(trace.moments(theta, 3), dense_moments(graph, theta, 3), REL)
        close(trace.moments(theta, 3, r), dense_moments(graph, theta, 3, r), REL)


def test_covariance(case):
    graph, trace = case
    rng = np.random.default_rng(9)
    for theta in random_thetas(graph):
        rmat = rng.uniform(0.1, 2.0, (graph.n_vertices, 3))
        cov = np.asarray(trace.covariance(theta, rmat))
        assert cov.shape == (3, 3)
        close(cov, dense_covariance(graph, theta, rmat), REL)
        # the diagonal is the variance from the moments of each reward separately
        m = dense_moments(graph, theta, 2, rmat[:, 0])
        close(cov[0, 0], m[1] - m[0] ** 2, REL)


def test_distribution(case):
    graph, trace = case
    for theta in random_thetas(graph):
        mean = dense_expectation(graph, theta)
        times = np.linspace(0.0, 3.0 * mean, 21)[1:]  # 20 points in (0, 3 E[T]]
        pdf_ref, surv_ref = dense_distribution(graph, theta, times)
        pdf = np.asarray(trace.pdf(theta, times))
        assert pdf.shape == times.shape
        np.testing.assert_allclose(pdf, pdf_ref, rtol=0, atol=ABS_DIST)
        np.testing.assert_allclose(trace.survival(theta, times), surv_ref, rtol=0, atol=ABS_DIST)
        np.testing.assert_allclose(trace.cdf(theta, times), 1 - surv_ref, rtol=0, atol=ABS_DIST)
        ok = pdf_ref > 1e-6  # log is well conditioned there: abs error 1e-9 / 1e-6 = 1e-3
        np.testing.assert_allclose(
            np.asarray(trace.logpdf(theta, times))[ok], np.log(pdf_ref[ok]), rtol=0, atol=1e-3
        )
        # tighter where the density is not small
        big = pdf_ref > 1e-2
        np.testing.assert_allclose(
            np.asarray(trace.logpdf(theta, times))[big], np.log(pdf_ref[big]), rtol=0, atol=1e-7
        )


# -- 2. closed forms ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 6, 10])
def test_kingman_tmrca(n):
    _, trace = _trace(kingman, n=n)
    assert float(trace.expectation([1.0])) == pytest.approx(2 * (1 - 1 / n), rel=1e-12)


@pytest.mark.parametrize("n", [3, 7])
def test_block_counting_sfs(n):
    graph, trace = _trace(block_counting, n=n)
    sfs = trace.expectation([1.0], graph.states[:, : n - 1].astype(float))
    close(sfs, 2.0 / np.arange(1, n), 1e-12)


def test_kingman_two_is_exponential():
    _, trace = _trace(kingman, n=2)
    t = np.linspace(0.05, 6.0, 25)
    np.testing.assert_allclose(trace.pdf([1.0], t), np.exp(-t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.cdf([1.0], t), 1 - np.exp(-t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.logpdf([1.0], t), -t, rtol=0, atol=1e-10)
    close(trace.moments([1.0], 3), [1.0, 2.0, 6.0], 1e-12)  # E[T^k] = k!


# -- 3. gradients vs central finite differences -----------------------------------------
def central_difference(f, theta, h=1e-6):
    theta = np.asarray(theta, float)
    out = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        out[i] = (float(f(theta + e)) - float(f(theta - e))) / (2 * h)
    return out


GRAD_CASES = ["two_deme-3-2", "rabbits-3"]


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradient_expectation(name):
    model, params = CASES[name]
    graph, trace = _trace(model, **params)
    r = np.random.default_rng(3).uniform(0.1, 2.0, graph.n_vertices)
    for theta in random_thetas(graph, count=2):
        for rewards in (None, r):
            f = lambda th, rewards=rewards: trace.expectation(th, rewards)  # noqa: E731
            grad = jax.grad(f)(jnp.asarray(theta))
            close(grad, central_difference(f, theta), 1e-6)


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradient_pdf(name):
    model, params = CASES[name]
    graph, trace = _trace(model, **params)
    for theta in random_thetas(graph, count=2):
        t = np.linspace(0.1, 2.0 * dense_expectation(graph, theta), 8)
        # under tracing the number of uniformisation terms must be given (fixed size)
        n = trace.n_terms(theta * 1.01, t)
        f = lambda th, t=t, n=n: trace.pdf(th, t, n_terms=n).sum()  # noqa: E731
        grad = jax.grad(f)(jnp.asarray(theta))
        close(grad, central_difference(f, theta), 1e-6)


# -- 4./5. vmap and jit -----------------------------------------------------------------------
def test_vmap_matches_loop(case):
    graph, trace = case
    thetas = random_thetas(graph, count=5, seed=5)
    batched = jax.vmap(lambda th: trace.expectation(th))(jnp.asarray(thetas))
    assert batched.shape == (5,)
    close(batched, [trace.expectation(th) for th in thetas], 1e-13)


def test_jit_matches_eager(case):
    graph, trace = case
    jitted = jax.jit(lambda th: trace.expectation(th))
    for theta in random_thetas(graph):
        close(jitted(jnp.asarray(theta)), trace.expectation(theta), 1e-13)
