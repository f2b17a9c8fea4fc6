"""A cache shared between working directories, through real snakemake (docs/cache.md).

Shown here: a fresh working directory (a new checkout: every script newer than the cache
files) pointed at a populated cache plans no graph or trace job and leaves every cache
file untouched; a read-only cache runs (a read-only bind mount when the tests run as root,
who ignores write bits; the files' inodes and mtimes are checked either way); two
workflows on one empty cache, run concurrently five times, never fail and agree on every
cache file.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.integration.conftest import Workflow, copy_workflow

pytestmark = pytest.mark.integration

CACHE_RULES = ("build_graph", "plan_trace", "record_trace_unit", "stitch_trace")


def _config(cache: Path) -> dict:
    return {
        "cache": str(cache),
        "models": {"kingman": {"callback": "phasemake.models:kingman", "params": {"n": 4}}},
        "traces": {"max_unit_cost": 1},  # one unit per level: several unit jobs
        "analyses": {
            "t": {
                "model": "kingman",
                "observations": "absorption_times",
                "data": {"simulate": {"theta": {"coal": 1.0}, "size": 300, "seed": 3}},
                "cmc": {"enabled": False},
            }
        },
    }


def _workflow(root: Path, cache: Path) -> Workflow:
    """A fresh copy of the workflow, as a new checkout: every file modified now."""
    wf = copy_workflow(root)
    now = time.time()
    for path in root.rglob("*"):
        os.utime(path, (now, now))
    wf.write_config(_config(cache))
    return wf


def _cache_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every graph and trace file (the JAX cache aside)."""
    return {
        str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in cache.rglob("*")
        if p.is_file() and "jax" not in p.relative_to(cache).parts
    }


def _jobs(out: str) -> dict[str, int]:
    """Jobs of each cache rule in a Snakemake log (rules, checkpoints, local or not)."""
    return {
        rule: len(re.findall(rf"(?:rule|checkpoint|Job \d+:) {rule}:", out)) for rule in CACHE_RULES
    }


def _planned(wf: Workflow) -> dict[str, int]:
    proc = wf.snakemake("-n")
    return _jobs(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    """A cache filled by one run in a working directory of its own."""
    base = tmp_path_factory.mktemp("shared")
    cache = base / "cache"
    proc = _workflow(base / "first", cache).snakemake("--cores", "2")
    assert (cache / "graphs").is_dir() and list((cache / "traces").glob("*.h5"))
    # _jobs sees every cache job of a run that makes them (so its zeros below mean none)
    assert _jobs(proc.stdout + proc.stderr) == {
        "build_graph": 1,
        "plan_trace": 1,
        "record_trace_unit": 4,  # kingman n = 4: one unit per level, max_unit_cost 1
        "stitch_trace": 1,
    }
    return cache


def test_fresh_working_directory_rebuilds_nothing(populated, tmp_path):
    before = _cache_files(populated)
    wf = _workflow(tmp_path / "second", populated)
    assert _planned(wf) == dict.fromkeys(CACHE_RULES, 0)
    proc = wf.snakemake("--cores", "2")
    assert _jobs(proc.stdout + proc.stderr) == dict.fromkeys(CACHE_RULES, 0)
    assert (wf.root / "results/t/nlsq/fit.json").exists()  # its own results were computed
    assert _cache_files(populated) == before


def test_renaming_a_model_or_raising_its_cap_rebuilds_nothing(populated, tmp_path):
    # the graph is named by its spec; a new config name or max_states does not change it
    wf = _workflow(tmp_path / "third", populated)
    wf.snakemake("--cores", "2")
    before = _cache_files(populated)
    config = _config(populated)
    config["models"] = {"coalescent": {**config["models"]["kingman"], "max_states": 10_000}}
    config["analyses"]["t"]["model"] = "coalescent"
    wf.write_config(config)
    assert _planned(wf) == dict.fromkeys(CACHE_RULES, 0)
    wf.snakemake("--cores", "2")
    assert _cache_files(populated) == before


def _read_only(cache: Path):
    """Make ``cache`` read-only: write bits off, and for root (who ignores them) a
    read-only bind mount when the system allows it. Returns the undo function."""
    modes = {p: p.stat().st_mode for p in [cache, *cache.rglob("*")]}
    for p, mode in modes.items():
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    mounted = False
    if os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(cache), str(cache)], capture_output=True)
        if bind.returncode == 0:
            mounted = True
            ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(cache)], capture_output=True)
            assert ro.returncode == 0, ro.stderr

    def undo():
        if mounted:
            subprocess.run(["umount", str(cache)], check=True)
        for p, mode in modes.items():
            p.chmod(mode)

    return undo


def test_read_only_cache_runs(populated, tmp_path):
    before = _cache_files(populated)
    entries = sorted(p for p in populated.rglob("*"))
    undo = _read_only(populated)
    try:
        wf = _workflow(tmp_path / "reader", populated)
        proc = wf.snakemake("--cores", "2", check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "ProtectedOutputException" not in proc.stderr
        assert (wf.root / "results/t/nlsq/fit.json").exists()
    finally:
        undo()
    assert _cache_files(populated) == before
    assert sorted(p for p in populated.rglob("*")) == entries  # nothing written, even by JAX


def _start(wf: Workflow, jax_cache: Path) -> subprocess.Popen:
    """The cache's graphs, units and traces and the fit that reads them (the report, which
    reads only results, is left out to keep the trials short). Compiled programs come from
    a JAX cache shared by the trials, outside the graph cache under test, so that only the
    first trial compiles."""
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "results/t/nlsq/fit.json"],
        cwd=wf.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PHASEMAKE_JAX_CACHE": str(jax_cache)},
    )


def _content(path: Path):
    """A trace or unit file's bytes; a graph's arrays (its provenance records how long
    the build took, so two builds differ in those bytes only)."""
    if path.parent.name != "graphs":
        return path.read_bytes()
    with h5py.File(path, "r") as f:
        return {name: f[name][()].tobytes() for name in f if isinstance(f[name], h5py.Dataset)}


def test_two_workflows_on_one_cache_concurrently(tmp_path):
    """Both start on an empty cache, so both build, plan, record and stitch the same files
    at the same time: five trials, never a failure, the same trace and unit bytes (and
    graph arrays) in every trial, the same fit in both working directories."""
    reference = None
    for trial in range(5):
        cache = tmp_path / f"cache{trial}"
        wfs = [_workflow(tmp_path / f"w{trial}{i}", cache) for i in (1, 2)]
        procs = [_start(wf, tmp_path / "jax") for wf in wfs]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        for p, out in zip(procs, outs, strict=True):
            assert p.returncode == 0, f"trial {trial}:\n{out[-4000:]}"
        files = {
            str(p.relative_to(cache)): _content(p)
            for p in cache.rglob("*.h5")
            if "jax" not in p.relative_to(cache).parts
        }
        assert len(files) > 2
        if reference is None:
            reference = files
        assert files == reference, f"trial {trial}"
        fits = {(wf.root / "results/t/nlsq/fit.json").read_bytes() for wf in wfs}
        assert len(fits) == 1
