"""Issue 13 (1, 7): nothing wrong in the cache or the results is ever used, and repairs
finish. Through real snakemake on a tiny config (Kingman n = 6 fitted; Kingman n = 8 and
a two-deme model only built and traced, to have valid foreign files at hand).

Shown here: a valid file of another spec copied to a cache path (the three swaps of the
issue) is rebuilt, never used; a corrupt stitched trace is rebuilt by the next run; a
deleted NLSQ chunk (as the error says) makes the next run redo its pass, to the same
bytes; ``snakemake -n`` reports a corrupt cache file and leaves it in place; bit rot that
keeps size, mtime and inode is rebuilt by the next real run instead of raising.
"""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

import phasemake
from phasemake.models import kingman, two_deme
from tests.integration.conftest import Workflow, copy_workflow

pytestmark = pytest.mark.integration

SIX, EIGHT = phasemake.spec_hash(kingman, n=6), phasemake.spec_hash(kingman, n=8)
DEME = phasemake.spec_hash(two_deme, n1=2, n2=1)
CONFIG = {
    "cache": "cache",
    "models": {
        "k6": {"callback": "phasemake.models:kingman", "params": {"n": 6}},
        "k8": {"callback": "phasemake.models:kingman", "params": {"n": 8}},
        "deme": {"callback": "phasemake.models:two_deme", "params": {"n1": 2, "n2": 1}},
    },
    "analyses": {
        "k6": {
            "model": "k6",
            "observations": "absorption_times",
            "data": {"simulate": {"theta": {"coal": 1.0}, "size": 400, "seed": 3}},
            "nlsq": {"initial": {"coal": 1.02}, "ftol": 1e-6},  # two or three passes
            "cmc": {"enabled": False},
        }
    },
}
FIT = "results/k6/nlsq/fit.json"
TARGETS = [
    *(f"cache/{kind}/{spec}.h5" for kind in ("graphs", "traces") for spec in (SIX, EIGHT, DEME)),
    FIT,
]


def run(wf: Workflow, *args: str, check: bool = True):
    return wf.snakemake("--cores", "2", *args, *TARGETS, check=check)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One run of the tiny config, copied by each test."""
    wf = copy_workflow(tmp_path_factory.mktemp("integrity"))
    wf.write_config(CONFIG)
    run(wf)
    return wf


@pytest.fixture
def copy(finished, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(finished.root, root, symlinks=True)
    return Workflow(root)


def _out(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (f"cache/traces/{EIGHT}.h5", f"cache/traces/{SIX}.h5"),  # Kingman n = 8 over n = 6
        (f"cache/traces/{DEME}.h5", f"cache/traces/{SIX}.h5"),  # two-deme over Kingman
        (f"cache/graphs/{EIGHT}.h5", f"cache/graphs/{SIX}.h5"),  # a graph of n = 8 over n = 6
    ],
    ids=["trace-n8-over-n6", "two-deme-trace-over-kingman", "graph-n8-over-n6"],
)
def test_a_foreign_file_at_a_cache_path_is_rebuilt_not_used(finished, copy, source, target):
    shutil.copy(copy.root / source, copy.root / target)
    shutil.rmtree(copy.root / "results")
    proc = run(copy)
    assert (copy.root / FIT).read_bytes() == (finished.root / FIT).read_bytes()
    assert "foreign file at this cache path" in _out(proc)
    assert (copy.root / target).read_bytes() != (copy.root / source).read_bytes()
    assert phasemake.load_trace(copy.root / f"cache/traces/{SIX}.h5").provenance["spec"] == SIX
    assert phasemake.read_graph(copy.root / f"cache/graphs/{SIX}.h5").n_vertices == 6


def test_corrupt_trace_is_reported_by_a_dry_run_and_rebuilt_by_the_next_run(finished, copy):
    trace = copy.root / f"cache/traces/{SIX}.h5"
    with h5py.File(trace, "r+") as f:
        name = next(k for k in f if f[k].size and f[k].dtype.kind == "f")
        f[name][(0,) * f[name].ndim] += 1.0
    corrupt = trace.read_bytes()
    dry = copy.snakemake("-n", *TARGETS)
    assert "is corrupt" in _out(dry) and "dry run: not removed" in _out(dry)
    assert trace.read_bytes() == corrupt  # a dry run changes nothing
    proc = run(copy)
    assert "removed it so it is re-stitched" in _out(proc)
    assert phasemake.load_trace(trace).provenance["spec"] == SIX
    assert (copy.root / FIT).read_bytes() == (finished.root / FIT).read_bytes()
    assert copy.planned("stitch_trace") == 0


def test_dry_run_leaves_a_corrupt_graph_and_plan_in_place(copy):
    graph = copy.root / f"cache/graphs/{SIX}.h5"
    graph.write_bytes(b"garbage")
    plan = copy.root / f"cache/traces/{EIGHT}/plan.json"
    plan.write_text("{")
    dry = copy.snakemake("-n", *TARGETS)  # succeeds
    assert "not a readable HDF5 file" in _out(dry) and "dry run: not removed" in _out(dry)
    assert "not a valid trace plan" in _out(dry)
    assert graph.read_bytes() == b"garbage" and plan.read_text() == "{"
    # (the real run removes and rebuilds them: see the tests above)


def test_bit_rot_keeping_size_mtime_and_inode_is_rebuilt(finished, copy):
    run(copy)  # a no-op run: every cache file verified and remembered (verified.json)
    assert (copy.root / "cache/verified.json").exists()
    graph = copy.root / f"cache/graphs/{SIX}.h5"
    before = graph.stat()
    with h5py.File(graph, "r+") as f:  # flip a value inside a dataset
        f["edge_coef"][0] += 1.0
    os.utime(graph, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = graph.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    proc = run(copy)
    assert "is corrupt" in _out(proc) and "removed it so it is rebuilt" in _out(proc)
    assert phasemake.read_graph(graph).provenance["spec"] == SIX
    assert (copy.root / FIT).read_bytes() == (finished.root / FIT).read_bytes()


@pytest.mark.parametrize("also_state", [False, True], ids=["chunk", "chunk-and-state"])
def test_a_deleted_nlsq_chunk_makes_the_next_run_redo_its_pass(finished, copy, also_state):
    pass1 = copy.root / "results/k6/nlsq/pass1"
    (pass1 / "chunk0.h5").unlink()  # as the error message of a corrupt chunk says
    if also_state:
        (pass1 / "state.json").unlink()
    proc = run(copy)
    assert "NLSQ pass 1" in _out(proc)
    assert (pass1 / "chunk0.h5").exists() and (pass1 / "state.json").exists()
    for path in sorted((finished.root / "results/k6/nlsq").rglob("*")):
        if path.is_file():
            mirror = copy.root / path.relative_to(finished.root)
            assert mirror.read_bytes() == path.read_bytes(), path
    assert copy.planned("fit_sole_nlsq") == 0


def test_a_cache_file_with_a_new_mtime_reruns_nothing(copy):
    """Finding 10: a graph, unit or trace written again with the same content (by another
    workflow on a shared cache, or touched) has a new mtime and nothing else: no job of
    this workflow runs again, and the fit keeps its bytes."""
    fit = copy.root / FIT
    before = fit.stat().st_mtime_ns, fit.read_bytes()
    later = fit.stat().st_mtime + 60
    for path in [
        copy.root / f"cache/graphs/{SIX}.h5",
        copy.root / f"cache/traces/{SIX}.h5",
        *(copy.root / "cache/traces/units").glob("*.h5"),
    ]:
        os.utime(path, (later, later))
    assert "Nothing to be done" in _out(copy.snakemake("-n", *TARGETS))
    run(copy)
    assert (fit.stat().st_mtime_ns, fit.read_bytes()) == before


def test_a_graph_rebuilt_elsewhere_and_a_large_touched_file_rerun_nothing(copy):
    """Finding 10, the two cases a touch of a small file does not cover: (a) a graph
    rebuilt from scratch (a new file, as another workflow or `phasemake build` writes it)
    has the same bytes, so nothing downstream runs; (b) an input over Snakemake's default
    1 MB checksum limit (here a 1.3 MB data file) touched: the workflow profile's
    max-checksum-file-size lets Snakemake compare its checksum instead of its mtime."""
    rows = np.random.default_rng(5).exponential(1.0, size=100_000)
    (copy.root / "data").mkdir(exist_ok=True)
    big = copy.root / "data/times.csv"
    big.write_text("time\n" + "".join(f"{t:.9f}\n" for t in rows))
    assert big.stat().st_size > 10**6
    config = {**CONFIG, "analyses": {**CONFIG["analyses"]}}
    config["analyses"]["f"] = {
        "model": "k6",
        "observations": "absorption_times",
        "data": {"file": "data/times.csv"},
        "cmc": {"enabled": False},
    }
    copy.write_config(config)
    targets = [*TARGETS, "results/f/nlsq/fit.json"]
    copy.snakemake("--cores", "2", *targets)
    fits = {p: p.read_bytes() for p in copy.root.glob("results/*/nlsq/fit.json")}
    graph = copy.root / f"cache/graphs/{SIX}.h5"
    graph.unlink()  # rebuilt outside this workflow: a new inode and mtime, the same content
    phasemake.write_graph(phasemake.build_graph(kingman, n=6), graph)
    later = big.stat().st_mtime + 60
    os.utime(big, (later, later))
    assert "Nothing to be done" in _out(copy.snakemake("-n", *targets))
    copy.snakemake("--cores", "2", *targets)
    assert {p: p.read_bytes() for p in copy.root.glob("results/*/nlsq/fit.json")} == fits
