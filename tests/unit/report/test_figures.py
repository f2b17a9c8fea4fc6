"""Report figures (NLSQ, posteriors) from small synthetic inputs, written to real PNG files."""

from __future__ import annotations

import numpy as np

from phasemake.report.figures import (
    marginals_figure,
    nlsq_figure,
    pair_figure,
    pass_points,
    save_figure,
    trace_figure,
)

NAMES = ["coal", "mig"]
TRUTH = {"coal": 1.0, "mig": 0.25}


def png(fig, tmp_path, name):
    """Save ``fig`` to a real file and check it is a non-trivial PNG written atomically."""
    path = tmp_path / f"{name}.png"
    save_figure(fig, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000  # something was drawn
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    return path


def _shards(rng, s=3, chains=2, draws=150, p=2):
    centre = np.log([1.0, 0.25])[:p]
    return [rng.normal(centre, 0.1 * np.sqrt(s), (chains, draws, p)) for _ in range(s)]


def _fit(passes=4):
    history = [
        {"iteration": k, "chi2": 100.0 / (k + 1), "accepted": k != 2, "damping": 1e-3}
        for k in range(passes)
    ]
    return {
        "free": NAMES,
        "parameters": {
            "coal": {"estimate": 1.02, "se": 0.03, "fixed": False},
            "mig": {"estimate": 0.24, "se": 0.02, "fixed": False},
        },
        "history": history,
        "chi2": 100.0 / passes,
        "status": "converged",
        "passes": passes,
        "reason": "ftol: χ² decreased by 1e-12",
    }


def test_pass_points_are_the_evaluated_points():
    states = [
        {"best": {"phi": [0.0, -3.0]}, "next": [0.1, -2.0]},
        {"best": {"phi": [0.1, -2.0]}, "next": [0.05, -1.5]},
        {"best": {"phi": [0.05, -1.5]}, "next": None},
    ]
    np.testing.assert_array_equal(pass_points(states), [[0.0, -3.0], [0.1, -2.0], [0.05, -1.5]])


def test_nlsq_figure(tmp_path):
    points = np.log([[1.0, 0.05], [1.1, 0.15], [1.1, 0.15], [1.02, 0.24]])
    fig = nlsq_figure(_fit(), points=points, truth=TRUTH)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4  # objective, one path per free parameter, estimates
    assert visible[1].get_title() == "coal per pass"
    labels = [t.get_text() for t in visible[3].texts]
    assert labels == [
        "coal = 1.02 ± 0.03\ntrue 1 (-0.7 se)",
        "mig = 0.24 ± 0.02\ntrue 0.25 (+0.5 se)",
    ]
    png(fig, tmp_path, "nlsq")
    assert len(nlsq_figure(_fit(), points=None).axes) == 2  # objective, estimates


def test_posterior_figures(tmp_path):
    rng = np.random.default_rng(1)
    shards = _shards(rng)
    consensus = np.mean(shards, axis=0)
    traces = trace_figure(shards, consensus, NAMES)
    assert len(traces.axes) == 2 * 4  # parameters x (shards + consensus)
    png(traces, tmp_path, "traces")
    assert len(trace_figure(_shards(rng, s=9), consensus, NAMES, max_shards=3).axes) == 2 * 4
    marginals = marginals_figure(shards, consensus, NAMES, truth=TRUTH, fit=_fit())
    assert "90%" in marginals.axes[0].get_title()
    png(marginals, tmp_path, "marginals")
    pairs = pair_figure(consensus, NAMES, shards=shards, truth=TRUTH)
    assert "corr(log)" in pairs.axes[2].get_title()  # lower-left panel
    png(pairs, tmp_path, "pairs")


def test_one_free_parameter(tmp_path):
    rng = np.random.default_rng(2)
    shards = _shards(rng, p=1)
    consensus = np.mean(shards, axis=0)
    png(pair_figure(consensus, ["coal"], shards=shards), tmp_path, "pairs1")
    png(trace_figure(shards, consensus, ["coal"]), tmp_path, "traces1")
