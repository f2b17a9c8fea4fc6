"""Exact simulation under epochs against the evaluator's distribution (independent code:
the simulator jumps path by path, the evaluator solves the forward equations): a
Kolmogorov–Smirnov test of 20,000 times against the evaluator's cdf, and the sample mean
within 4 standard errors of E[T], for the split-with-migration and the pulse histories
(events drawn at random) of tests/unit/trace/test_epochs.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import phasemake
from phasemake.data.epochsim import simulate_epoch_times
from tests.unit.trace.test_epochs import admixture_pulse, bottleneck, split_with_migration


@pytest.mark.parametrize("case", [bottleneck, split_with_migration, admixture_pulse])
def test_simulated_times_follow_the_evaluated_distribution(case):
    graph, history, phi, _ = case()
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), history)
    obs = simulate_epoch_times(graph, history, phi, size=20_000, seed=7)
    t = obs.columns["time"]
    mean, m2 = np.asarray(et.moments(phi))
    assert abs(t.mean() - mean) < 4 * np.sqrt((m2 - mean**2) / t.size)
    test = scipy.stats.kstest(t, lambda x: np.asarray(et.cdf(phi, x)))
    assert test.pvalue > 1e-3, test
    again = simulate_epoch_times(graph, history, phi, size=20_000, seed=7)
    np.testing.assert_array_equal(again.columns["time"], t)  # deterministic for a seed
