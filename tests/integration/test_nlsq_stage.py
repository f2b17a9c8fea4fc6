"""Stage 4 through real snakemake: simulated data, NLSQ passes as chunk and reducer jobs.

Shown here: the file-based fit equals the in-process passes bit for bit; --cores 1 and
--cores 2 write identical bytes; a run killed after pass k resumes at pass k and recomputes
nothing before it; bad data fails with the documented message.
"""

from __future__ import annotations

import re
import shutil

import pytest

import phasemake
from phasemake.core.artefact import read_json_artefact
from phasemake.data.observations import block_ranges, iter_blocks, read_header
from phasemake.data.obsmodel import Accumulator
from phasemake.fit.analysis import model_for, read_state
from phasemake.fit.nlsq import LMSettings, fit_in_memory

pytestmark = pytest.mark.integration

ANALYSIS = {
    "model": "two_deme",
    "observations": "absorption_times",
    "data": {
        "simulate": {"theta": {"coal": 1.2, "mig": 0.6}, "size": 1500, "censor_at": 6.0, "seed": 4}
    },
    "chunks": 2,
    "nlsq": {"initial": {"coal": 1.1, "mig": 0.7}, "ftol": 1e-8},
    # NLSQ only: 3 + 1 lineages identify mig too weakly for NUTS on these 1,500 times
    # (its gates fail, as they should; test_cmc_stage covers the posterior stage)
    "cmc": {"enabled": False},
}
CONFIG = {
    "cache": "cache",
    "models": {"two_deme": {"callback": "phasemake.models:two_deme", "params": {"n1": 3, "n2": 1}}},
    "analyses": {"times": ANALYSIS},
}


def fit(root):
    return read_json_artefact(
        root / "results/times/nlsq/fit.json", kind="phasemake.fit", versions=(1,)
    )


def passes(root):
    return sorted((root / "results/times/nlsq").glob("pass*/"), key=lambda p: int(p.name[4:]))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One --cores 2 run of the tiny config (shared by the tests that only read it)."""
    from tests.integration.conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("nlsq"))
    wf.write_config(CONFIG)
    wf.snakemake("--cores", "2")
    return wf


def test_file_passes_equal_in_process_passes(finished):
    root = finished.root
    result = fit(root)
    assert result["converged"], result["reason"]
    spec = next((root / "cache/graphs").glob("*.h5"))
    graph = phasemake.read_graph(spec)
    trace = phasemake.load_trace(root / "cache/traces" / spec.name)
    model = model_for(ANALYSIS | {"nlsq": ANALYSIS["nlsq"]}, trace, graph.states)
    obs = root / "results/times/data/observations.h5"
    meta = read_header(obs)
    blocks = list(iter_blocks(obs))
    chunks = block_ranges(len(blocks), 2)

    def part(c):
        def run(phi):
            budget = model.budget(phi, meta["t_max"])
            return Accumulator.total(
                [
                    model.accumulate(phi, blocks[b], budget=budget, rows=meta["block_rows"])
                    for b in chunks[c]
                ]
            )

        return run

    memory = fit_in_memory(
        model,
        [part(c) for c in range(2)],
        settings=LMSettings.from_config(ANALYSIS["nlsq"]),
        profile=True,
    )
    for name in ("coal", "mig"):  # estimates, Wald and profile intervals: bit for bit
        assert result["parameters"][name] == memory["parameters"][name]
    assert None not in result["parameters"]["coal"]["profile"]
    # 3 + 1 lineages and 1,500 times set no upper limit on mig: open, and said so
    assert result["parameters"]["mig"]["profile"][1] is None
    assert any(
        "mig's 95% profile-likelihood interval is open above" in w for w in result["warnings"]
    )
    assert result["warnings"] == memory["warnings"]
    assert result["history"] == memory["history"]
    assert len(passes(root)) == result["passes"]
    # truth within 3 standard errors
    for name, value in (("coal", 1.2), ("mig", 0.6)):
        p = result["parameters"][name]
        assert abs(p["estimate"] - value) < 3 * p["se"]
    assert finished.planned("accumulate_chunk") == 0  # no-op rerun


def test_one_core_writes_the_same_bytes(finished, workflow):
    workflow.write_config(CONFIG)
    workflow.snakemake("--cores", "1")
    for a in sorted((finished.root / "results").rglob("*")):
        # the report's tables show job times and where each unit was recorded
        if a.is_file() and "report" not in a.relative_to(finished.root).parts:
            b = workflow.root / a.relative_to(finished.root)
            assert a.read_bytes() == b.read_bytes(), a


def test_killed_run_resumes_at_its_pass(finished, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    wf = Workflow(root)
    before = fit(root)
    done = passes(root)
    assert len(done) >= 4
    # as if the run was killed during pass 3: passes 0-2 done, pass 3 half written
    for folder in done[3:]:
        shutil.rmtree(folder)
    (root / "results/times/nlsq/fit.json").unlink()
    (root / "results/times/nlsq/pass3").mkdir()
    kept = {p: p.stat().st_mtime_ns for p in root.glob("results/times/nlsq/pass[0-2]/*")}
    state2 = read_state(root / "results/times/nlsq/pass2/state.json")
    assert state2["status"] == "running"
    proc = wf.snakemake("--cores", "2")
    assert "prepare_observations" not in proc.stderr
    after = fit(root)
    assert after == before
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing before pass 3 redone


def test_bad_data_file_fails_with_the_row_and_column(workflow):
    # a bad row among the first 100 fails at parse time, naming the config key
    (workflow.root / "times.csv").write_text("time,censored\n1.5,0\n-2,0\n")
    bad = {**CONFIG, "analyses": {"times": {**ANALYSIS, "data": {"file": "times.csv"}}}}
    workflow.write_config(bad)
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    expected = "times.csv: row 2, column 'time': -2.0 — expected a time >= 0"
    assert f"analyses.times.data.file: {expected}" in proc.stdout + proc.stderr
    # one further down fails in the data job, which reads every row
    rows = "".join(f"{1 + i / 100},0\n" for i in range(150))
    (workflow.root / "times.csv").write_text(f"time,censored\n{rows}-2,0\n")
    proc = workflow.snakemake("--cores", "1", check=False)
    assert proc.returncode != 0
    log = (workflow.root / "logs/prepare_observations/times.log").read_text()
    assert "times.csv: row 151, column 'time': -2.0 — expected a time >= 0" in log
    # a missing file or an unknown parameter name fails at parse time
    bad["analyses"]["times"]["data"] = {"file": "nope.csv"}
    workflow.write_config(bad)
    proc = workflow.snakemake("-n", check=False)
    assert "analyses.times.data.file = 'nope.csv' does not exist" in proc.stdout + proc.stderr
    bad["analyses"]["times"] = {**ANALYSIS, "nlsq": {"initial": {"theta": 1.0}}}
    workflow.write_config(bad)
    proc = workflow.snakemake("-n", check=False)
    assert "analyses.times.nlsq.initial.theta: unknown parameter" in proc.stdout + proc.stderr


def test_small_one_chunk_passes_run_in_the_main_process(workflow):
    """An analysis with one chunk of at most chunk_rows rows runs all its passes in one
    job, fit_sole_nlsq (a localrule: under SLURM it runs in the main process;
    tests/integration/test_slurm.py runs one); several chunks, or a hand-set chunks: 1 over
    more rows, are accumulate_chunk jobs (submitted). A dry run names the rule of each
    analysis's first NLSQ job."""
    cases = {
        "auto_small": {"chunks": "auto"},  # 1,500 rows <= 25e6: one small chunk
        "one_small": {"chunks": 1},
        "auto_split": {"chunks": "auto", "chunk_rows": 1000},  # 2 chunks
        "one_large": {"chunks": 1, "chunk_rows": 1000},  # 1,500 rows in one chunk job
    }
    workflow.write_config(
        {**CONFIG, "analyses": {name: {**ANALYSIS, **s} for name, s in cases.items()}}
    )
    out = workflow.snakemake("-n").stdout
    assert workflow.planned("fit_sole_nlsq") == 2, out
    assert workflow.planned("accumulate_chunk") == 3, out  # 2 + 1
    for name, rule in (("auto_small", "fit_sole_nlsq"), ("one_large", "accumulate_chunk")):
        job = re.search(
            rf"^(?:rule|checkpoint) (\w+):\n(?:    .*\n)*?    output: results/{name}/nlsq/pass",
            out,
            re.M,
        )
        assert job and job.group(1) == rule, (name, out)
