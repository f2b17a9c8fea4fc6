"""The workflow on a real SLURM cluster: a one-node cluster on this machine, started by
tests/slurm/start_slurm.sh (Debian's slurmctld, slurmd and munge; installed with apt when
missing), runs a tiny config through profiles/slurm.

Shown here: every job that is not a localrule went through SLURM (its job id is in the
plugin's log lines and `scontrol show job` reports it COMPLETED in this workflow's
directory); small jobs shared SLURM jobs (groups); localrules ran in the main process; and
the results are the same bytes as a local `--cores 2` run of the same config.

The cluster has no accounting (no slurmdbd), as many small clusters do not: the run uses
tests/slurm/profile (`--workflow-profile`, on top of `--profile profiles/slurm`), which
polls job states with squeue and submits without an account. Without those options the
plugin's sacct polling would wait forever, so snakemake runs under a hard timeout; on
timeout its process group is killed and its SLURM jobs are cancelled.

The two runs go side by side (the SLURM run mostly waits for its status checks). Needs
root on Debian; skipped elsewhere, or with PHASEMAKE_SKIP_SLURM=1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phasemake import read_graph
from tests.conftest import REPO
from tests.integration.conftest import WORKFLOW_PARTS

pytestmark = pytest.mark.integration

START = REPO / "tests/slurm/start_slurm.sh"
CI_PROFILE = REPO / "tests/slurm/profile"
#: Hard limit on each snakemake run (the whole test takes about 3 minutes on 2 cores).
RUN_TIMEOUT = 480

CONFIG = {
    "cache": "cache",
    "models": {"kingman": {"callback": "phasemake.models:kingman", "params": {"n": 4}}},
    # 3 work units, so that one SLURM job records several
    "traces": {"max_unit_cost": 3},
    "analyses": {
        "times": {
            "model": "kingman",
            "observations": "absorption_times",
            "data": {
                "simulate": {"theta": {"coal": 1.0}, "size": 1000, "censor_at": 8.0, "seed": 3}
            },
            "chunks": 2,
            # started next to the estimate (1.008): converged after 2 passes
            "nlsq": {"initial": {"coal": 1.008}, "ftol": 1.0e-6, "xtol": 1.0e-4},
            "cmc": {
                "shards": 2,
                "chains": 1,
                "warmup": 100,
                # gates scaled to these short chains: one chain of 100 draws gave a bulk
                # ESS below 30 in 4 of 12 seeds (with either starting metric), 200 draws
                # keep a retry rare
                "samples": 200,
                "min_ess_bulk": 30,
                "min_ess_tail": 30,
                "seed": 5,
                "refine": "none",
            },
        },
        # one small chunk a pass: every pass in one job in the main process (fit_sole_nlsq)
        "small": {
            "model": "kingman",
            "observations": "absorption_times",
            "data": {"simulate": {"theta": {"coal": 1.0}, "size": 300, "seed": 4}},
            "chunks": 1,
            "nlsq": {"initial": {"coal": 1.008}, "ftol": 1.0e-6, "xtol": 1.0e-4},
            "cmc": {"enabled": False},
        },
    },
}
TARGETS = (
    "results/times/nlsq/fit.json",
    "results/times/cmc/consensus.json",
    "results/small/nlsq/fit.json",
)
#: Rules that are not localrules, hence SLURM jobs (one or several jobs per SLURM job).
REMOTE_RULES = {
    "build_graph",
    "record_trace_unit",
    "prepare_observations",
    "accumulate_chunk",
    "profile_nlsq",
    "sample_shard",
    "combine_shards",
}
LOCAL_RULES = {
    "plan_trace",
    "stitch_trace",
    "fit_sole_nlsq",
    "profile_sole_nlsq",
    "step_nlsq",
    "summarise_nlsq",
    "plan_shards",
}


def _why_not() -> str | None:
    if os.environ.get("PHASEMAKE_SKIP_SLURM"):
        return "PHASEMAKE_SKIP_SLURM is set"
    if not sys.platform.startswith("linux") or not Path("/etc/debian_version").exists():
        return "the SLURM test starts a cluster from Debian packages: needs Debian"
    if os.geteuid() != 0:
        return "the SLURM test installs packages and starts daemons: needs root"
    if shutil.which("apt-get") is None:
        return "the SLURM test installs slurmctld, slurmd, slurm-client, munge: needs apt-get"
    return None


def _copy(root: Path) -> Path:
    import yaml

    root.mkdir()
    for part in WORKFLOW_PARTS:
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    (root / "config/config.yaml").write_text(yaml.safe_dump(CONFIG))
    return root


class Run:
    """snakemake in its own process group, output to a file, killed as a group."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.log = root / "snakemake.out"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "snakemake", *args, *TARGETS],
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"snakemake in {self.root} ran past {timeout:.0f} s; killed.\n{self.tail()}"
            )
        text = self.log.read_text()
        assert self.proc.returncode == 0, f"snakemake in {self.root} failed:\n{self.tail()}"
        return text

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # snakemake cancels its SLURM jobs
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])


def _scancel_jobs_in(workdir: Path) -> None:
    """Cancel the SLURM jobs still queued or running in this workflow's directory."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30
    ).stdout
    ids = [j for j, d in (line.split(maxsplit=1) for line in out.splitlines()) if d == str(workdir)]
    if ids:
        subprocess.run(["scancel", *ids], timeout=30, check=False)


def _job(jobid: str) -> dict[str, str]:
    """`scontrol show job` as a dict (MinJobAge=600 keeps finished jobs there)."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


@pytest.fixture(scope="module")
def cluster():
    """Start the cluster (returns only once a health-check job has run) and stop it after
    the module when it was not running before."""
    why = _why_not()
    if why:
        pytest.skip(why)
    running = subprocess.run(["bash", str(START), "status"], check=False).returncode == 0

    def start() -> None:
        proc = subprocess.run(
            ["bash", str(START)], capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"start_slurm.sh failed:\n{proc.stdout}\n{proc.stderr}"

    yield start
    if not running:
        subprocess.run(["bash", str(START), "stop"], capture_output=True, timeout=60, check=False)


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def test_slurm_run_equals_local_run(cluster, tmp_path):
    t0 = time.monotonic()
    local_root = _copy(tmp_path.resolve() / "local")
    slurm_root = _copy(tmp_path.resolve() / "slurm")
    local = Run(local_root, "--cores", "2")
    try:
        cluster()  # installs the packages (first time) while the local run computes
        slurm = Run(
            slurm_root, "--profile", "profiles/slurm", "--workflow-profile", str(CI_PROFILE)
        )
        try:
            out = slurm.wait(RUN_TIMEOUT - (time.monotonic() - t0))
        finally:
            slurm.kill()
            _scancel_jobs_in(slurm_root)
        local_out = local.wait(RUN_TIMEOUT - (time.monotonic() - t0))
    finally:
        local.kill()

    # every remote rule's jobs went through SLURM, and only those
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)", out)
    assert submitted, out
    logs = slurm_root / ".snakemake/slurm_logs"
    # .snakemake/slurm_logs/{rule_<rule>/<wildcards>|group_<group>_<rule>[_<rule>...]}/<id>.log
    names = {Path(log).relative_to(logs).parts[0] for _, log in submitted}
    rules_seen = set()
    for name in names:
        rules_seen |= {r for r in REMOTE_RULES | LOCAL_RULES if r in name}
    assert rules_seen == REMOTE_RULES, names
    for jobid, log in submitted:
        job = _job(jobid)
        assert job.get("JobState") == "COMPLETED", (jobid, job)
        assert job.get("WorkDir") == str(slurm_root), (jobid, job)
        assert Path(log).is_file() and Path(log).name == f"{jobid}.log"
    # localrules ran in the main process
    for rule in LOCAL_RULES:
        # (a rule with a message prints it instead: "Job 4: plan_trace: trace units of …")
        assert re.search(rf"^(localrule|localcheckpoint|Job \d+:) {rule}:", out, re.M), rule
    # small jobs shared SLURM jobs: 1 graph + 3 units + 2 observations + 2 passes × 2
    # chunks + 1 profile + 2 shards + 1 combination = 14 jobs in 1 + 1 + 2 + 4 + 1 + 2 + 1
    # = 12 SLURM jobs
    remote_jobs = sum(
        len(list((slurm_root / "logs" / rule).rglob("*.benchmark.tsv"))) for rule in REMOTE_RULES
    )
    assert len(submitted) < remote_jobs, (len(submitted), remote_jobs)
    assert "localrule accumulate_chunk:" in local_out  # the local run ran everything itself

    # the same bytes as the local run
    for folder in ("results", "cache/traces"):
        local_files, slurm_files = _files(local_root, folder), _files(slurm_root, folder)
        assert local_files.keys() == slurm_files.keys(), folder
        for name, data in local_files.items():
            assert slurm_files[name] == data, name
    assert (slurm_root / "results/times/cmc/consensus.json").is_file()
    # graph files differ only in their provenance (build seconds): compare the arrays
    for path in (local_root / "cache/graphs").glob("*.h5"):
        a, b = read_graph(path), read_graph(slurm_root / "cache/graphs" / path.name)
        for field in ("states", "edge_src", "edge_tgt", "edge_coef", "init_index", "init_prob"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert a.parameters == b.parameters
