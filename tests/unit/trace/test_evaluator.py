"""Evaluator behaviour not covered by test_trace_reference.py: occupation times, the
reverse mode of moments, and the errors for misuse.

Tolerances: occupation times are direct solves either way (relative 1e-10); central
differences of step 1e-6 are accurate to about 1e-7 relative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.models import kingman, rabbits, two_deme
from phasemake.trace.dense import sub_intensity


def test_occupation_times_against_dense():
    graph = build_graph(rabbits, nr_rabbits=3)
    trace = phasemake.compile_trace(graph)
    for theta in np.random.default_rng(11).uniform(0.3, 3.0, size=(3, 3)):
        alpha, s, transient = sub_intensity(graph, theta)
        occupation = np.zeros(graph.n_vertices)
        occupation[transient] = alpha @ np.linalg.inv(-s)
        np.testing.assert_allclose(trace.occupation(theta), occupation, rtol=1e-10, atol=1e-14)
        rewards = np.random.default_rng(1).uniform(size=graph.n_vertices)
        assert float(trace.expectation(theta, rewards)) == pytest.approx(
            occupation @ rewards, rel=1e-10
        )


@pytest.mark.parametrize("what", ["second moment", "third moment", "covariance", "occupation"])
def test_gradient_of_moments_and_covariances_against_finite_differences(what):
    """The adjoint reverse modes (a solve of the other orientation plus edge sums) against
    central differences on a cyclic model with both parameters free. rtol 1e-6: the
    difference's truncation error is ~h² = 1e-12 and its rounding ~1e-16/h = 1e-10,
    relative."""
    graph = build_graph(two_deme, n1=3, n2=2)
    trace = phasemake.compile_trace(graph)
    theta = np.array([0.9, 0.4])
    rewards = np.random.default_rng(0).uniform(0.0, 1.0, (graph.n_vertices, 3))
    weights = np.random.default_rng(1).uniform(0.5, 1.5, graph.n_vertices)
    functions = {
        "second moment": lambda th: trace.moments(th, 2)[1],
        "third moment": lambda th: trace.moments(th, 3, rewards[:, 0])[2],
        "covariance": lambda th: jnp.sum(
            trace.covariance(th, rewards) * np.arange(1, 10).reshape(3, 3)
        ),
        "occupation": lambda th: trace.occupation(th) @ weights,
    }
    f = functions[what]
    grad = np.asarray(jax.grad(f)(jnp.asarray(theta)))
    h = 1e-6
    fd = [(float(f(theta + h * e)) - float(f(theta - h * e))) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_density_inside_jit_needs_fixed_terms():
    trace = phasemake.compile_trace(build_graph(kingman, n=4))
    with pytest.raises(ValueError, match="n_terms"):
        jax.jit(lambda th: trace.pdf(th, jnp.array([1.0])))(jnp.array([1.0]))
    n_terms = trace.n_terms([1.0], [1.0])
    value = jax.jit(lambda th: trace.pdf(th, jnp.array([1.0]), n_terms=n_terms))(jnp.array([1.0]))
    assert float(value[0]) == pytest.approx(float(trace.pdf([1.0], [1.0])[0]), rel=1e-14)


def test_bad_inputs_are_explained():
    trace = phasemake.compile_trace(build_graph(two_deme, n1=2, n2=1))
    with pytest.raises(ValueError, match=r"expected \(2,\) for parameters \['coal', 'mig'\]"):
        trace.expectation([1.0])
    with pytest.raises(ValueError, match="one row per graph vertex"):
        trace.expectation([1.0, 1.0], np.ones(3))
    with pytest.raises(ValueError, match="positive integer"):
        trace.moments([1.0, 1.0], 0)
