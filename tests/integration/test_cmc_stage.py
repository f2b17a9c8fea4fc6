"""Stage 5 through real snakemake: shard jobs, their retries, the consensus, full-data NUTS.

Shown here: the shard files are the same bytes with --cores 1 and --cores 2; a run killed
(SIGKILL, whole process group) while a shard is sampling recomputes that shard on rerun
and nothing else, and ends with the same bytes as an uninterrupted run; so does a shard
job killed once on its own (Snakemake's retry makes the same attempt, same seed); changing only the
consensus rule re-runs no shard; a shard that keeps failing its gates is retried with a new
seed and a higher target acceptance, then the workflow stops naming it; full-data NUTS
(S = 1) runs on request and the consensus agrees with it.

The consensus-vs-full-data tolerances are those of the issue (means within 0.15 full-data
sd, sds within 15%, correlations within 0.1); with 2 chains × 400 draws the Monte Carlo
error of a mean is ~0.05 sd, so they test the consensus, not the sampler's noise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import phasemake
from phasemake.core.artefact import read_json_artefact
from phasemake.data.observations import read_header
from phasemake.posterior.sampling import read_shard
from tests.integration.conftest import Workflow

pytestmark = pytest.mark.integration

ANALYSIS = {
    "model": "two_deme",
    "observations": "absorption_times",
    "data": {
        "simulate": {
            "theta": {"coal": 1.0, "mig": 0.1},
            "size": 6000,
            "censor_at": 12.0,
            "seed": 4,
        }
    },
    "chunks": 2,
    "nlsq": {"initial": {"mig": 0.05}},
    "cmc": {"shards": 3, "warmup": 300, "samples": 400, "seed": 7},
}
CONFIG = {
    "cache": "cache",
    "models": {"two_deme": {"callback": "phasemake.models:two_deme", "params": {"n1": 4, "n2": 4}}},
    "analyses": {"times": ANALYSIS},
}
CMC = "results/times/cmc"


def _copy(root):
    from tests.integration.conftest import copy_workflow

    return copy_workflow(root)


def _config(**cmc):
    return {**CONFIG, "analyses": {"times": {**ANALYSIS, "cmc": {**ANALYSIS["cmc"], **cmc}}}}


def _summary(root):
    return read_json_artefact(
        root / CMC / "consensus.json", kind="phasemake.consensus_summary", versions=(1,)
    )


def _cmc_files(root):
    return sorted(p.relative_to(root) for p in (root / CMC).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One --cores 2 run of the tiny config (shared by the tests that only read it)."""
    wf = _copy(tmp_path_factory.mktemp("cmc"))
    wf.write_config(CONFIG)
    wf.snakemake("--cores", "2")
    return wf


def test_shards_and_consensus(finished):
    root = finished.root
    plan = read_json_artefact(root / CMC / "plan.json", kind="phasemake.shard_plan", versions=(1,))
    assert plan["shards"] == 3 and plan["how"].startswith("set in the config")
    assert plan["choice"]["rule"]  # the auto rule's answer is reported alongside
    data = read_header(root / "results/times/data/observations.h5")["checksum"]
    posts = [read_shard(root / CMC / f"S3/shard{s}.h5") for s in range(3)]
    assert sum(p.meta["rows"] for p in posts) == 6000
    assert {p.meta["data"] for p in posts} == {data}
    for s, p in enumerate(posts):
        assert p.phi.shape == (2, 400, 2)
        assert p.meta["seed"] == [7, s, 1] and p.meta["attempt"] == 1
        assert np.max(p.r_hat) <= 1.05
    summary = _summary(root)
    assert summary["rule"] == "scott" and summary["shards"] == 3
    assert [row["shard"] for row in summary["shard_diagnostics"]] == [0, 1, 2]
    for name, row in summary["truth"].items():  # the truth is inside the posterior
        assert abs(row["z"]) < 4, (name, row)
    assert np.allclose(np.diag(summary["correlation"]), 1.0)
    idata = phasemake.to_arviz(root / CMC / "consensus.h5")
    assert idata.posterior["coal"].shape == (2, 400)
    shard = phasemake.to_arviz(root / CMC / "S3/shard0.h5")
    assert int(shard.sample_stats["diverging"].sum()) == posts[0].meta["divergences"]
    assert finished.planned("sample_shard") == 0  # no-op rerun


def test_one_core_writes_the_same_bytes(finished, tmp_path):
    """The stage again from the same fit with --cores 1: chains in one thread, not two."""
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    shutil.rmtree(root / CMC)
    out = Workflow(root).snakemake("--cores", "1").stderr
    assert out.count("rule sample_shard:") == 3 and "accumulate_chunk" not in out
    files = _cmc_files(finished.root)
    assert files == _cmc_files(root) and len(files) == 6
    for rel in files:
        assert (finished.root / rel).read_bytes() == (root / rel).read_bytes(), rel


def test_killed_shard_is_recomputed_and_nothing_else(finished, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    wf = Workflow(root)
    reference = {rel: (finished.root / rel).read_bytes() for rel in _cmc_files(finished.root)}
    for rel in ("S3/shard1.h5", "S3/shard2.h5", "consensus.h5", "consensus.json"):
        (root / CMC / rel).unlink()
    shutil.rmtree(root / "logs/sample_shard")
    # one job at a time: the first of shards 1 and 2 finishes, the other is killed as soon
    # as its script starts (Snakemake picks the order)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    shard = {s: root / CMC / f"S3/shard{s}.h5" for s in (1, 2)}
    started = {s: root / f"logs/sample_shard/times/S3/shard{s}.log" for s in (1, 2)}

    def second_started():
        return any(shard[a].exists() and started[b].exists() for a, b in ((1, 2), (2, 1)))

    deadline = time.monotonic() + 300
    while not second_started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [s for s in (1, 2) if shard[s].exists()]
    assert len(done) == 1, f"expected one of shards 1, 2 finished before the kill, got {done}"
    kept = {p: p.stat().st_mtime_ns for p in (root / CMC / "S3").glob("shard*.h5")}
    assert len(kept) == 2
    wf.snakemake("--unlock")  # a killed Snakemake leaves its lock, as for any user
    out = wf.snakemake("--cores", "2").stderr
    assert "plan_shards" not in out and "accumulate_chunk" not in out
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert out.count("rule sample_shard:") == 1
    for rel, content in reference.items():
        assert (root / rel).read_bytes() == content, rel


def test_killed_shard_job_is_retried_with_its_seed(finished, tmp_path):
    """Only the shard job's process is killed (SIGKILL), once, while it samples: Snakemake
    retries the job (its attempt 2), but that attempt recorded no gate failure, so the
    retry makes attempt 1 again with the same seed and target acceptance, and every file
    is the same bytes as an uninterrupted run's."""
    import psutil

    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    reference = {rel: (finished.root / rel).read_bytes() for rel in _cmc_files(finished.root)}
    for rel in ("S3/shard1.h5", "consensus.h5", "consensus.json"):
        (root / CMC / rel).unlink()
    shutil.rmtree(root / "logs/sample_shard")
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = root / "logs/sample_shard/times/S3/shard1.log"  # written by the script
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        if started.exists():
            jobs = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if any("sample_shard" in part for part in p.cmdline())
            ]
            for job in jobs:
                job.send_signal(signal.SIGKILL)
                killed = job.pid
        time.sleep(0.05)
    _, err = proc.communicate(timeout=600)
    assert killed is not None, "the shard job was not seen running"
    assert proc.returncode == 0, err[-3000:]
    assert "attempt 2" in err or "Trying to restart" in err  # Snakemake did retry it
    history = root / "logs/sample_shard/times/S3/shard1.attempts.jsonl"
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [(r["attempt"], r["seed"], r["problem"]) for r in records] == [(1, [7, 1, 1], None)]
    for rel, content in reference.items():
        assert (root / rel).read_bytes() == content, rel


def test_corrupt_results_are_reported_by_a_dry_run_and_recomputed_by_the_next_run(
    finished, tmp_path
):
    """Issue 13 (7): a corrupt fit, profile, shard plan, shard or consensus file is not
    left for a job to fail on: -n reports it and changes nothing; the next run removes it at
    parse time and recomputes it, to the same bytes as the uninterrupted run's."""
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    files = [f"{CMC}/{rel}" for rel in ("plan.json", "S3/shard1.h5", "consensus.json")]
    files += ["results/times/nlsq/fit.json", "results/times/nlsq/profile.json"]
    reference = {rel: (finished.root / rel).read_bytes() for rel in _cmc_files(finished.root)}
    reference.update({rel: (finished.root / rel).read_bytes() for rel in files})
    for rel in files:  # bit rot that keeps the size; a truncated HDF5 file
        content = bytearray((root / rel).read_bytes())
        if rel.endswith(".json"):
            content[content.index(b'"payload"') + 20] ^= 1
        else:
            content = content[: len(content) // 2]
        (root / rel).write_bytes(bytes(content))
    dry = Workflow(root).snakemake("-n")
    for rel in files:
        assert f"{rel}" in dry.stderr and "dry run: not removed" in dry.stderr, rel
        assert (root / rel).read_bytes() != reference[rel], rel
    proc = Workflow(root).snakemake("--cores", "2")
    for rel in files:
        assert f"{rel}" in proc.stderr and "removed it so it is recomputed" in proc.stderr, rel
    for rel, content in reference.items():
        assert (root / rel).read_bytes() == content, rel


def test_consensus_rule_change_reruns_no_shard(finished, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    wf = Workflow(root)
    kept = {p: p.stat().st_mtime_ns for p in (root / CMC / "S3").glob("*.h5")}
    wf.write_config(_config(rule="gaussian"))
    out = wf.snakemake("--cores", "2").stderr
    assert "rule sample_shard:" not in out and "rule combine_shards:" in out
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert _summary(root)["rule"] == "gaussian"


def test_failing_shard_is_retried_then_named(finished, tmp_path):
    """max_rhat 0.5 fails every shard (split R-hat >= sqrt(1 - 1/n)): each attempt is
    recorded, the retry uses the next seed and target acceptance, the last names them all."""
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    wf = Workflow(root)
    wf.write_config(_config(max_rhat=0.5, retries=1, warmup=50, samples=50))
    proc = wf.snakemake("--cores", "1", check=False)
    assert proc.returncode != 0
    assert "Error in rule sample_shard" in proc.stderr
    failed = [
        p
        for p in (root / "logs/sample_shard/times/S3").glob("shard*.log")
        if "no retries left" in p.read_text()
    ]
    assert len(failed) == 1  # one job at a time: the workflow stops at the first failure
    text, shard = failed[0].read_text(), int(failed[0].stem[5:])
    assert "attempt 2 of 2 (target acceptance 0.9)" in text
    assert (
        f"analysis times, shard {shard} of 3 failed its quality gates on attempt 2 of 2: "
        "R-hat" in text
    )
    assert "; attempt 1: R-hat" in text  # the earlier attempt, whose log Snakemake deleted
    history = failed[0].with_name(f"shard{shard}.attempts.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in history]
    assert [(r["attempt"], r["seed"], r["target_accept"]) for r in records] == [
        (1, [7, shard, 1], 0.8),
        (2, [7, shard, 2], pytest.approx(0.9)),
    ]
    assert not (root / CMC / f"S3/shard{shard}.h5").exists()


def test_full_data_nuts_on_request_agrees_with_the_consensus(finished, tmp_path):
    """Full-data NUTS (S = 1) against the refined consensus at S = 3, then 2 and 4 (only
    the plan, the shards and the combination re-run; the S = 1 file is reused)."""
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    from tests.integration.conftest import Workflow

    wf = Workflow(root)
    for shards in (3, 2, 4):
        wf.write_config(_config(shards=shards))
        out = wf.snakemake("--cores", "2", f"{CMC}/compare_full.json").stderr
        assert out.count("rule sample_shard:") == (1 if shards == 3 else shards), shards
        full = read_shard(root / CMC / "S1/shard0.h5")
        assert full.meta["shards"] == 1 and full.meta["rows"] == 6000
        result = read_json_artefact(
            root / CMC / "compare_full.json", kind="phasemake.posterior_comparison", versions=(1,)
        )
        assert result["shards"] == shards
        assert result["agreement"] == {
            "thresholds": result["agreement"]["thresholds"],
            "means": True,
            "sds": True,
            "correlations": True,
        }, (shards, result["parameters"])
        refinement = _summary(root)["refinement"]
        assert refinement["applied"] and refinement["pareto_k"] <= 0.7, refinement
