"""Stage 6 through real snakemake: the report's figures and tables, and `--report`.

A tiny workflow with two analyses: absorption times under the two-deme model with the
posterior (2 shards), and an SFS with NLSQ only (cmc.enabled false) stopped after two
passes, so both fit-vs-data figures, both branches of the tables and the flag of an
unconverged fit are drawn. Then `snakemake --report` renders the
HTML report, which embeds every figure and table with its caption under its analysis.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration

CONFIG = {
    "cache": "cache",
    "models": {
        "two_deme": {"callback": "phasemake.models:two_deme", "params": {"n1": 4, "n2": 4}},
        "sfs": {"callback": "phasemake.models:block_counting", "params": {"n": 6}},
    },
    "analyses": {
        "times": {
            "model": "two_deme",
            "observations": "absorption_times",
            "data": {
                "simulate": {
                    "theta": {"coal": 1.0, "mig": 0.1},
                    "size": 4000,
                    "censor_at": 12.0,
                    "seed": 4,
                }
            },
            "chunks": 1,
            "nlsq": {"initial": {"mig": 0.1}},  # start at the truth: few passes
            "cmc": {
                "shards": 2,
                "warmup": 200,
                "samples": 200,
                "seed": 7,
                "min_ess_bulk": 50,  # gates scaled to these short chains
                "min_ess_tail": 50,
            },
        },
        "spectrum": {
            "model": "sfs",
            "observations": "sfs",
            "data": {
                "simulate": {
                    "theta": {"coal": 1.0, "mutation": 0.001},
                    "windows": 50,
                    "sites": 10000,
                    "seed": 2,
                }
            },
            "chunks": 1,
            # stopped after 2 passes: the report must flag an unconverged fit (a start far
            # from the data's scale, given, since the default start is Watterson's estimate)
            "nlsq": {"fixed": {"coal": 1.0}, "initial": {"mutation": 1.0}, "max_iterations": 2},
            "cmc": {"enabled": False},
        },
    },
}
FIGURES = ("nlsq.png", "fit.png")
TABLES = ("estimates.html", "model.html", "diagnostics.html", "timings.html")
POSTERIOR = ("posterior_traces.png", "posterior_marginals.png", "posterior_pairs.png")


def test_report_renders_every_analysis(workflow):
    workflow.write_config(CONFIG)
    workflow.snakemake("--cores", "2")
    out = workflow.root / "results"
    for name in FIGURES + POSTERIOR:
        assert (out / "times/report" / name).read_bytes()[:4] == b"\x89PNG"
    for name in FIGURES + TABLES:
        assert (out / "spectrum/report" / name).stat().st_size > 1000
    assert not (out / "spectrum/report/posterior_traces.png").exists()  # NLSQ only

    # the tables say what a reader needs, without opening a log
    estimates = (out / "times/report/estimates.html").read_text()
    assert all(s in estimates for s in ("coal", "mig", "posterior mean", "true value"))
    diagnostics = (out / "times/report/diagnostics.html").read_text()
    assert "R-hat mig" in diagnostics and "between-shard heterogeneity" in diagnostics
    spectrum = (out / "spectrum/report/diagnostics.html").read_text()
    assert "cmc.enabled false" in spectrum
    assert '<td class="bad">stopped</td>' in spectrum
    assert "NOT converged (stopped)" in (out / "spectrum/report/estimates.html").read_text()
    model = (out / "times/report/model.html").read_text()
    assert re.search(r"<td>vertices</td><td>\d+</td>", model)
    timings = (out / "times/report/timings.html").read_text()
    for rule in ("build_graph", "fit_sole_nlsq", "sample_shard", "combine_shards"):
        assert re.search(rf"<td>{rule}</td><td>[1-9]\d*</td><td>0</td>", timings), rule
    assert "sample_shard" not in (out / "spectrum/report/timings.html").read_text()
    assert workflow.planned("plot_fit") == 0  # no-op rerun: nothing to redo

    workflow.snakemake("--report", "report.html")
    page = (workflow.root / "report.html").read_text()
    for analysis, names in (
        ("times", FIGURES + TABLES + POSTERIOR),
        ("spectrum", FIGURES + TABLES),
    ):
        for name in names:
            assert f"results/{analysis}/report/{name}" in page, (analysis, name)
    assert "results/spectrum/report/posterior_pairs.png" not in page
    for subcategory in ("1 Estimates", "3 NLSQ", "4 Posterior", "5 Fit vs data", "7 Timings"):
        assert subcategory in page
    assert "Streaming Levenberg" in page  # a caption, rendered
    assert "consensus Monte Carlo" in page  # the workflow description
    assert page.count('"data_uri": "data:image/png;') == 2 * len(FIGURES) + len(POSTERIOR)
    assert page.count('"data_uri": "data:text/html;') == 2 * len(TABLES)
