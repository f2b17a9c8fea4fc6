"""Exact simulation (phasemake.data.simulation) against the trace's moments and the Poisson
means. Statistical checks use fixed seeds and 5 standard errors."""

from __future__ import annotations

import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.data.simulation import simulate_absorption_times, simulate_sfs
from phasemake.models import rabbits, two_deme


@pytest.mark.parametrize(
    ("model", "params", "theta"),
    [
        (two_deme, {"n1": 2, "n2": 2}, [1.3, 0.4]),
        (rabbits, {"nr_rabbits": 2}, [0.7, 1.1, 2.0]),
    ],
)
def test_simulated_times_match_the_trace_moments(model, params, theta):
    graph = build_graph(model, **params)
    trace = phasemake.compile_trace(graph)
    obs = simulate_absorption_times(graph, theta, size=100_000, seed=4)
    t = obs.columns["time"]
    m1, m2 = np.asarray(trace.moments(theta, 2))
    se = np.sqrt((m2 - m1**2) / t.size)
    assert abs(t.mean() - m1) < 5 * se
    again = simulate_absorption_times(graph, theta, size=100_000, seed=4)
    np.testing.assert_array_equal(again.columns["time"], t)  # same seed, same draws


def test_censoring_and_sfs_simulation():
    graph = build_graph(two_deme, n1=2, n2=1)
    obs = simulate_absorption_times(graph, [1.0, 1.0], size=2000, seed=1, censor_at=2.0)
    t, c = obs.columns["time"], obs.columns["censored"]
    assert t.max() == 2.0 and np.all(t[c == 1] == 2.0) and 0 < c.mean() < 1
    sfs = simulate_sfs(np.array([0.02, 0.01]), sites=np.full(500, 1000.0), seed=3)
    means = sfs.columns["counts"].mean(axis=0)
    np.testing.assert_allclose(means, [20.0, 10.0], rtol=5 * np.sqrt(1 / 10.0 / 500))
