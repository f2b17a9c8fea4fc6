"""Issue 15's first hour on the smoke config, through real snakemake: the shipped
``config/smoke.yaml`` runs alone (not merged with the shipped ``config/config.yaml``),
prints progress and one closing line per analysis on the terminal, and ``phasemake
summary`` and ``phasemake export`` read its results."""

from __future__ import annotations

import csv
import re

import arviz as az
import pytest

from phasemake.cli import main
from tests.integration.conftest import copy_workflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("smoke"))
    proc = wf.snakemake("--cores", "2", "--configfile", "config/smoke.yaml")
    return wf.root, proc.stderr


def test_the_smoke_config_runs_alone_with_progress_and_closing_lines(smoke):
    root, err = smoke
    assert sorted(p.name for p in (root / "results").iterdir()) == [
        "kingman_times",
        "sfs_windows",
    ]  # the shipped config's analyses (two_deme_times) did not run
    assert len(list((root / "cache/graphs").glob("*.h5"))) == 2
    # running jobs' progress reaches the terminal, prefixed by the job
    assert "[fit_sole_nlsq/kingman_times] pass 0: chi2" in err
    # a shard's chains run side by side and the first progress line wins: either chain
    shard_progress = r"\[sample_shard/kingman_times/S2/shard\d\] chain \d: iteration 100 of 400"
    assert re.search(shard_progress, err)
    assert "phasemake: the job total grows as trace plans and NLSQ passes" in err
    closing = [
        line
        for line in err.splitlines()
        if line.startswith("phasemake: ") and "job total" not in line
    ]
    assert [line.split(":")[1].strip() for line in closing] == ["kingman_times", "sfs_windows"]
    assert "posterior: scott consensus of 2 shard(s)" in closing[0]
    assert "sfs_windows: mutation" in closing[1] and "no posterior" in closing[1]


def test_summary_and_export_read_the_smoke_results(smoke, capsys):
    root, _ = smoke
    assert main(["summary", "--results", str(root / "results")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("kingman_times: NLSQ converged") and "R-hat ≤" in text
    assert "\nsfs_windows: NLSQ converged" in text and "\nθ=4Neμ/site" in text
    out = root / "export"
    assert (
        main(["export", "kingman_times", "--results", str(root / "results"), "--out", str(out)])
        == 0
    )
    rows = {r["parameter"]: r for r in csv.DictReader((out / "estimates.csv").open())}
    coal = rows["coal"]
    # the simulation's truth is 1; 3 standard errors, and the posterior's 95% covers it
    assert abs(float(coal["estimate"]) - 1.0) < 3 * float(coal["se"])
    assert float(coal["q0.025"]) < 1.0 < float(coal["q0.975"])
    # draws.csv: the refined (importance-weighted) sample; posterior.nc: the consensus
    # draws as chains, for ArviZ
    draws = list(csv.DictReader((out / "draws.csv").open()))
    weights = [float(d["weight"]) for d in draws]
    assert len(draws) > 0 and sum(weights) == pytest.approx(1.0)
    posterior = az.from_netcdf(out / "posterior.nc").posterior
    assert posterior["coal"].shape == (2, 200)  # 2 chains x cmc.samples
