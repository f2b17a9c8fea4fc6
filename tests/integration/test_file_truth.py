"""`data.truth` for data from a file: the report compares the estimates with it as it does for
simulated data, and adding it re-runs neither the data nor the fit."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_truth_of_file_data_reaches_the_report_without_refitting(workflow):
    rng = np.random.default_rng(5)
    # Kingman n = 4 at coal = 1: T = sum of Exp(k(k-1)/2), k = 4, 3, 2
    times = sum(rng.exponential(2.0 / (k * (k - 1)), size=800) for k in (4, 3, 2))
    (workflow.root / "times.csv").write_text("time\n" + "\n".join(f"{t:.9g}" for t in times))
    analysis = {
        "model": "k",
        "observations": "absorption_times",
        "data": {"file": "times.csv"},
        "cmc": {"enabled": False},
    }
    config = {
        "cache": "cache",
        "models": {"k": {"callback": "phasemake.models:kingman", "params": {"n": 4}}},
        "analyses": {"t": analysis},
    }
    workflow.write_config(config)
    target = "results/t/report/estimates.html"
    workflow.snakemake("--cores", "2", target)
    assert "true value" not in (workflow.root / target).read_text()
    analysis["data"]["truth"] = {"coal": 1.0}
    workflow.write_config(config)
    proc = workflow.snakemake("-n", target)
    planned = proc.stdout + proc.stderr
    for rule in ("prepare_observations", "fit_sole_nlsq", "summarise_nlsq"):
        assert rule not in planned, planned
    observations = workflow.root / "results/t/data/observations.h5"
    made = observations.stat().st_mtime_ns
    workflow.snakemake("--cores", "2", target)
    assert observations.stat().st_mtime_ns == made  # not removed and made again
    page = (workflow.root / target).read_text()
    assert "true value" in page
    assert '<td class="good">1</td>' in page  # the truth, covered by NLSQ ± 1.96 se
