"""Issue 19 (0): an analysis whose data fit in one small chunk runs its whole NLSQ fit in
one job (fit_sole_nlsq), bit-identical to the per-pass file DAG (which a hand-set
`chunks: 1` over more than chunk_rows rows still takes), and resumable."""

from __future__ import annotations

import re
import shutil

import pytest

from phasemake.core.artefact import read_json_artefact
from phasemake.fit.state import read_passes
from tests.integration.test_nlsq_stage import ANALYSIS, CONFIG

pytestmark = pytest.mark.integration

SOLE = {**ANALYSIS, "chunks": "auto"}  # 1,500 rows <= 25e6: one small chunk, one job
SPLIT = {**ANALYSIS, "chunks": 1, "chunk_rows": 1000}  # the per-pass jobs, one chunk
TWO = {**CONFIG, "analyses": {"sole": SOLE, "split": SPLIT}}


def pass_files(root, analysis):
    folder = root / f"results/{analysis}/nlsq"
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.glob("pass*/*"))}


def fit(root, analysis):
    path = root / f"results/{analysis}/nlsq/fit.json"
    return read_json_artefact(path, kind="phasemake.fit", versions=(1,))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One run of both analyses: the same data, one small chunk and one chunk job a pass."""
    from tests.integration.conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("sole"))
    wf.write_config(TWO)
    plan = wf.snakemake("-n").stdout
    wf.snakemake("--cores", "2")
    return wf, plan


def test_one_job_fit_equals_the_per_pass_jobs(finished):
    wf, plan = finished
    root = wf.root
    assert re.search(r"^fit_sole_nlsq\s+1\s*$", plan, re.M), plan
    # exactly one NLSQ job for the one-chunk analysis, per-pass jobs for the other
    logs = root / "logs"
    assert (logs / "fit_sole_nlsq/sole.log").exists()
    assert (logs / "fit_sole_nlsq/sole.benchmark.tsv").exists()
    assert not (logs / "step_nlsq/sole").exists() and not (logs / "accumulate_chunk/sole").exists()
    assert not (logs / "fit_sole_nlsq/split.log").exists()
    one, jobs = pass_files(root, "sole"), pass_files(root, "split")
    passes = read_passes(root / "results/sole/nlsq/passes.json")["passes"]
    assert len(list((logs / "step_nlsq/split").glob("pass*.log"))) == passes >= 4
    assert one == jobs and len(one) == 2 * passes  # chunk0.h5 and state.json, bit for bit
    a, b = fit(root, "sole"), fit(root, "split")
    assert a.pop("analysis") == "sole" and b.pop("analysis") == "split"
    assert a == b
    log = (logs / "fit_sole_nlsq/sole.log").read_text()
    assert log.count(" pass ") >= passes and "resuming" not in log
    # the report's timing table names the one job; the other analysis's, the chunk jobs
    timings = (root / "results/sole/report/timings.html").read_text()
    assert re.search(r"<td>fit_sole_nlsq</td><td>1</td><td>0</td>", timings), timings
    assert "accumulate_chunk" not in timings
    assert "fit_sole_nlsq" not in (root / "results/split/report/timings.html").read_text()
    assert wf.planned("fit_sole_nlsq") == 0  # a complete run: nothing to do
    assert "Nothing to be done" in wf.snakemake("-n").stdout


def test_a_killed_fit_resumes_and_another_setting_restarts(finished, tmp_path):
    from tests.integration.conftest import Workflow

    root = tmp_path / "copy"
    shutil.copytree(finished[0].root, root, symlinks=True)
    wf = Workflow(root)
    folder = root / "results/sole/nlsq"
    before, fit_before = pass_files(root, "sole"), fit(root, "sole")
    n = read_passes(folder / "passes.json")["passes"]
    # as if the job was killed during pass n - 2: no manifest, passes n - 2 and n - 1 gone
    (folder / "passes.json").unlink()
    for k in (n - 2, n - 1):
        shutil.rmtree(folder / f"pass{k}")
    kept = (folder / "pass0/chunk0.h5").stat().st_mtime_ns
    log = root / "logs/fit_sole_nlsq/sole.log"
    log.unlink()
    wf.snakemake("--cores", "2")
    assert f"resuming after pass {n - 3}" in log.read_text()
    assert pass_files(root, "sole") == before and fit(root, "sole") == fit_before
    assert (folder / "pass0/chunk0.h5").stat().st_mtime_ns == kept
    # a corrupt pass file: the parse-time check removes the manifest; the job redoes it
    (folder / f"pass{n - 1}/state.json").write_text("{")
    log.unlink()
    proc = wf.snakemake("--cores", "2")
    assert f"NLSQ pass {n - 1}" in proc.stderr
    assert f"resuming after pass {n - 2}" in log.read_text()
    assert pass_files(root, "sole") == before and fit(root, "sole") == fit_before
    # another NLSQ setting: the job runs again from pass 0
    changed = {**SOLE, "nlsq": {**SOLE["nlsq"], "ftol": 1e-6}}
    wf.write_config({**TWO, "analyses": {"sole": changed, "split": SPLIT}})
    log.unlink()
    wf.snakemake("--cores", "2")
    text = log.read_text()
    assert "resuming" not in text and "pass 0: chi2" in text
    assert (folder / "pass0/chunk0.h5").stat().st_mtime_ns != kept
