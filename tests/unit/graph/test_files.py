"""Graph files and the cache: round trips, atomic writes, corruption and foreign files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from phasemake import ArtefactError, GraphCache, build_graph, read_graph, write_graph
from phasemake.core.artefact import atomic_path
from phasemake.models import block_counting, two_deme

ARRAYS = ("states", "edge_src", "edge_tgt", "edge_coef", "init_index", "init_prob")


def test_round_trip_is_exact(tmp_path):
    g = build_graph(two_deme, n1=3, n2=4)
    write_graph(g, tmp_path / "g.h5")
    h = read_graph(tmp_path / "g.h5")
    for name in ARRAYS:
        assert np.array_equal(getattr(g, name), getattr(h, name))
        assert getattr(h, name).dtype == getattr(g, name).dtype
    assert h.parameters == g.parameters and h.provenance == g.provenance


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "x.h5"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_corrupted_data_is_detected(tmp_path):
    path = tmp_path / "g.h5"
    write_graph(build_graph(block_counting, n=6), path)
    with h5py.File(path, "r+") as f:
        f["edge_coef"][0, 0] = 12345.0
    with pytest.raises(ArtefactError, match="corrupt: its checksum"):
        read_graph(path)


def test_truncated_file_is_detected(tmp_path):
    path = tmp_path / "g.h5"
    write_graph(build_graph(block_counting, n=6), path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ArtefactError, match="not a readable HDF5 file"):
        read_graph(path)


def test_foreign_and_future_files_are_rejected(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ArtefactError, match=r"foreign file, not a phasemake\.graph file"):
        read_graph(foreign)
    future = tmp_path / "future.h5"
    write_graph(build_graph(block_counting, n=4), future)
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ArtefactError, match="format version 99"):
        read_graph(future)


def test_cache_hit_corrupt_rebuild_and_management(tmp_path, caplog):
    cache = GraphCache(tmp_path / "cache")
    g = cache.load_or_build(two_deme, n1=2, n2=2)
    path = cache.graph_path(g.provenance["spec"])
    assert path.exists()
    written = path.stat().st_mtime_ns, path.stat().st_ino
    hit = cache.load_or_build(two_deme, n1=2, n2=2)
    assert np.array_equal(hit.edge_coef, g.edge_coef)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written  # read, not rebuilt

    path.write_bytes(b"not hdf5 at all")
    with caplog.at_level("WARNING"):
        rebuilt = cache.load_or_build(two_deme, n1=2, n2=2)
    assert "not a readable HDF5 file" in caplog.text
    assert np.array_equal(rebuilt.edge_coef, g.edge_coef)
    assert cache.verify() == [(path, None)]

    other = cache.load_or_build(block_counting, n=5)
    assert {e.model for e in cache.entries()} == {"two_deme", "block_counting"}
    with h5py.File(path, "r+") as f:
        f["edge_coef"][0, 0] += 1
    problems = [p for _, p in cache.verify() if p]
    assert len(problems) == 1 and "checksum" in problems[0]
    assert cache.discard_if_invalid(g.provenance["spec"]) is not None and not path.exists()
    assert cache.clear([other.provenance["spec"]]) == [cache.graph_path(other.provenance["spec"])]
    assert cache.entries() == []


def test_cached_file_is_group_readable(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = tmp_path / "g.h5"
        write_graph(build_graph(block_counting, n=4), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044


def test_a_rebuilt_graph_has_the_same_bytes(tmp_path):
    # no timings in the file: a rebuild (or another workflow's) looks unchanged downstream
    for name in ("a.h5", "b.h5"):
        write_graph(build_graph(two_deme, n1=2, n2=2), tmp_path / name)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
