"""Scale-free NLSQ starts, against closed forms of the Kingman coalescent."""

from __future__ import annotations

import numpy as np
import pytest

from phasemake import build_graph, compile_trace
from phasemake.data.observations import Observations, observation_moments, validate
from phasemake.fit.analysis import model_for
from phasemake.fit.start import start_values
from phasemake.models import block_counting, kingman


def test_times_start_matches_the_mean_time():
    # E[T] = 2 (1 - 1/n) / coal for Kingman: the start solves E[T] = mean(t) exactly
    n = 10
    graph = build_graph(kingman, n=n)
    trace = compile_trace(graph)
    obs = Observations("absorption_times", {"time": np.array([2e4, 4e4, 3e4])})
    moments = observation_moments(obs)
    start = start_values("absorption_times", trace, graph.states, moments, initial={}, fixed={})
    assert start["coal"] == pytest.approx(2 * (1 - 1 / n) / 3e4, rel=1e-12)
    # an initial value given in the config wins, and a fixed parameter is left alone
    assert (
        start_values(
            "absorption_times", trace, graph.states, moments, initial={"coal": 2.0}, fixed={}
        )
        == {}
    )
    model = model_for({"observations": "absorption_times"}, trace, graph.states, moments=moments)
    assert np.exp(model.par.phi0())[0] == pytest.approx(start["coal"], rel=1e-12)


def test_weights_count_in_the_mean():
    obs = Observations(
        "absorption_times", {"time": np.array([1.0, 4.0]), "weight": np.array([3.0, 1.0])}
    )
    assert observation_moments(obs)["mean_time"] == pytest.approx(7.0 / 4.0)


def test_sfs_start_is_wattersons_estimator():
    # E[total branch length] = 2 a_n with a_n = sum_{i<n} 1/i at coal = 1
    n = 8
    graph = build_graph(block_counting, n=n)
    trace = compile_trace(graph)
    xi = np.array([[40, 20, 13, 10, 8, 7, 5], [38, 22, 12, 9, 9, 6, 6]], dtype=float)
    obs = validate("sfs", {"sites": np.array([1e4, 2e4]), "counts": xi}, source="test")
    moments = observation_moments(obs)
    assert moments == {"segregating": xi.sum(), "sites": 3e4}
    start = start_values("sfs", trace, graph.states, moments, initial={}, fixed={"coal": 1.0})
    a_n = sum(1 / i for i in range(1, n))
    assert start == {"mutation": pytest.approx(xi.sum() / (3e4 * 2 * a_n), rel=1e-12)}
    no_data = {"segregating": 0.0, "sites": 3e4}
    assert start_values("sfs", trace, graph.states, no_data, initial={}, fixed={}) == {}
