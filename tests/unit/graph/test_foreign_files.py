"""Issue 13 (1, 2): a valid file of another spec at a cache path is never used, and
``GraphCache.clear`` never leaves the cache directory."""

from __future__ import annotations

import shutil

import pytest

from phasemake import (
    ArtefactError,
    GraphCache,
    PhasemakeError,
    build_graph,
    read_graph,
    spec_hash,
    write_graph,
)
from phasemake.models import kingman


def test_a_graph_of_another_spec_at_a_cache_path_is_refused(tmp_path):
    cache = GraphCache(tmp_path)
    six, eight = spec_hash(kingman, n=6), spec_hash(kingman, n=8)
    write_graph(build_graph(kingman, n=8), cache.graph_path(eight))
    shutil.copy(cache.graph_path(eight), cache.graph_path(six))  # the swap of the issue
    with pytest.raises(ArtefactError, match=f"holds the graph of spec {eight}.*{six} was"):
        read_graph(cache.graph_path(six))
    with pytest.raises(ArtefactError, match="foreign file"):
        read_graph(cache.graph_path(eight), spec=six)  # asked for by the model's spec
    assert read_graph(cache.graph_path(eight)).n_vertices == 8  # its own path: fine
    # the cache rebuilds it instead of returning the n = 8 graph
    graph = cache.load_or_build(kingman, n=6)
    assert graph.n_vertices == 6 and read_graph(cache.graph_path(six)).n_vertices == 6
    assert cache.discard_if_invalid(six) is None


def test_cache_verify_reports_a_foreign_graph_and_trace(tmp_path):
    from phasemake.trace.files import (
        read_trace_artefact,
        stitch_trace_files,
        write_trace,
        write_unit,
    )
    from phasemake.trace.units import plan_units, record_unit

    cache = GraphCache(tmp_path)
    six, eight = spec_hash(kingman, n=6), spec_hash(kingman, n=8)
    for n, spec in ((6, six), (8, eight)):
        graph = cache.load_or_build(kingman, n=n)
        _, units = plan_units(graph)
        paths = [cache.unit_path(u.key) for u in units]
        for u, p in zip(units, paths, strict=True):
            if not p.exists():
                write_unit(record_unit(graph, u), p)
        arrays, meta = stitch_trace_files(graph, units, paths)
        write_trace(arrays, meta, cache.trace_dir / f"{spec}.h5")
    assert all(problem is None for _, problem in cache.verify())
    shutil.copy(cache.trace_dir / f"{eight}.h5", cache.trace_dir / f"{six}.h5")
    bad = {path.name: problem for path, problem in cache.verify() if problem}
    assert list(bad) == [f"{six}.h5"] and f"trace of spec {eight}" in bad[f"{six}.h5"]
    with pytest.raises(ArtefactError, match="parameters"):
        read_trace_artefact(cache.trace_dir / f"{eight}.h5", parameters=["coal", "mig"])


@pytest.mark.parametrize("spec", ["../../victim", "", "../graphs", "A" * 32, "0" * 31])
def test_clear_refuses_anything_but_a_spec_hash_and_deletes_nothing(tmp_path, spec):
    root = tmp_path / "work" / "cache"
    cache = GraphCache(root)
    cache.load_or_build(kingman, n=4)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (cache.trace_dir / "units").mkdir(parents=True)
    (cache.trace_dir / "units" / "u.h5").write_text("unit")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(PhasemakeError, match="expected exactly 32 hex digits"):
        cache.clear([spec])
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_clear_of_one_spec_removes_its_graph_plan_and_trace_only(tmp_path):
    cache = GraphCache(tmp_path)
    cache.load_or_build(kingman, n=4)
    cache.load_or_build(kingman, n=5)
    four, five = spec_hash(kingman, n=4), spec_hash(kingman, n=5)
    cache.plan_path(four).parent.mkdir(parents=True)
    cache.plan_path(four).write_text("{}")
    removed = cache.clear([four])
    assert sorted(p.name for p in removed) == [f"{four}.h5", "plan.json"]
    assert not cache.plan_path(four).parent.exists() and cache.graph_path(five).exists()
    assert read_graph(cache.graph_path(five)).n_vertices == 5
