"""Fit-vs-data figures from small synthetic inputs, written to real PNG files.

Numbers the figures compute are checked against closed forms: the life-table survival of
exponential data against e^{-t} (binning error < 0.02 at 60 bins and 20,000 rows, sampling
sd ~0.004); the model curves of :func:`predict` against Kingman n = 2 (T ~ Exp(coal),
relative 1e-9: uniformisation is exact to ~1e-14) and against the block-counting SFS
E[ξ_i] = 2/(i·coal) (relative 1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.data.observations import Observations
from phasemake.data.obsmodel import ObservationModel
from phasemake.models import block_counting, kingman
from phasemake.report.fitfigures import (
    TimeHistogram,
    _life_table,
    absorption_fit_figure,
    predict,
    sfs_fit_figure,
    time_histogram,
)
from tests.unit.report.test_figures import png


def _blocks(t, censored, rows=7000):
    w = np.ones_like(t)
    return [
        Observations(
            "absorption_times", {"time": t[a:b], "censored": censored[a:b], "weight": w[a:b]}
        )
        for a, b in zip(range(0, len(t), rows), [*range(rows, len(t), rows), len(t)], strict=True)
    ]


def test_time_histogram_streams_blocks_and_finds_the_censoring_time():
    rng = np.random.default_rng(3)
    t = rng.exponential(1.0, 20_000)
    censored = (t > 3.0).astype(float)
    t = np.minimum(t, 3.0)
    hist = time_histogram(_blocks(t, censored), t_max=3.0, bins=60)
    assert hist.censor_at == 3.0
    assert hist.events.sum() + hist.censored.sum() == 20_000
    assert hist.censored.sum() == censored.sum()
    surv = _life_table(hist)
    np.testing.assert_allclose(surv, np.exp(-hist.edges), atol=0.02)


def test_absorption_fit_figure(tmp_path):
    rng = np.random.default_rng(4)
    t = rng.exponential(1.0, 5_000)
    censored = (t > 4.0).astype(float)
    hist = time_histogram(_blocks(np.minimum(t, 4.0), censored), t_max=4.0)
    grid = np.linspace(0, 4, 100)
    curve = (np.exp(-grid), np.exp(-grid))
    band = (np.exp(-np.outer([0.9, 1.0, 1.1], grid)),) * 2
    fig = absorption_fit_figure(hist, grid=grid, nlsq=curve, posterior=band)
    title = fig.axes[1].get_title()
    assert "censored" in title and "1.83% predicted" in title  # e^-4
    png(fig, tmp_path, "times")
    hist2 = TimeHistogram(hist.edges, hist.events, hist.censored, None)
    assert (
        "several times" in absorption_fit_figure(hist2, grid=grid, nlsq=curve).axes[1].get_title()
    )


def test_sfs_fit_figure(tmp_path):
    expected = 0.001 * 2 / np.arange(1, 12)
    observed = np.random.default_rng(5).poisson(expected * 2e6).astype(float)
    band = expected[None, :] * np.array([[0.95], [1.0], [1.05]])
    fig = sfs_fit_figure(observed, sites=2e6, windows=200, nlsq=expected, posterior=band)
    assert "11 classes" in fig.axes[1].get_title()
    png(fig, tmp_path, "sfs")


@pytest.fixture(scope="module")
def kingman2():
    return phasemake.compile_trace(build_graph(kingman, n=2))


def test_predict_absorption_times_against_the_exponential(kingman2):
    model = ObservationModel("absorption_times", kingman2)
    grid = np.linspace(0.0, 5.0, 11)
    phi = np.log([[1.0], [2.0]])
    pdf, surv = predict(model, phi, grid=grid)
    rates = np.exp(phi)
    np.testing.assert_allclose(pdf, rates * np.exp(-rates * grid), rtol=1e-9)
    np.testing.assert_allclose(surv, np.exp(-rates * grid), rtol=1e-9)
    with pytest.raises(ValueError, match="time grid"):
        predict(model, phi)


def test_predict_sfs_against_the_closed_form():
    graph = build_graph(block_counting, n=6)
    model = ObservationModel(
        "sfs", phasemake.compile_trace(graph), states=graph.states, fixed={"coal": 2.0}
    )
    out = predict(model, np.log([[0.001], [0.002]]))
    i = np.arange(1, 6)
    np.testing.assert_allclose(out, np.array([[0.001], [0.002]]) * 2 / (i * 2.0), rtol=1e-9)
