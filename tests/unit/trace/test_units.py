"""Trace structure, work units and files: planning, sharing, stitching and corruption."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import phasemake
from phasemake import GraphBuildError, build_graph
from phasemake.models import block_counting, kingman, two_deme
from phasemake.trace.files import read_unit, stitch_trace_files, unit_is_recorded, write_unit
from phasemake.trace.units import layout_graph, plan_units, record_trace_arrays, record_unit


def record_through_files(graph, folder, **kw):
    """What the workflow does: plan, one file per unit, stitch from the files."""
    _, units = plan_units(graph, **kw)
    paths = []
    for unit in units:
        path = folder / f"{unit.key}.h5"
        if not path.exists():
            write_unit(record_unit(graph, unit), path)
        paths.append(path)
    return units, paths


def test_levels_of_the_two_deme_model_are_its_lineage_counts():
    # (a, b) with a + b = k form one strongly connected component (migration) per k
    g = build_graph(two_deme, n1=3, n2=2)
    layout = layout_graph(g)
    totals = g.states[layout.order].sum(axis=1)
    for lvl in range(layout.level_vptr.size - 1):
        a, b = layout.level_vptr[lvl], layout.level_vptr[lvl + 1]
        assert set(totals[a:b].tolist()) == {lvl + 1}
    assert layout.comp_size.max() == 6  # k = 5: (5,0) ... (0,5)


def test_files_and_in_process_give_identical_arrays(tmp_path):
    for graph in (build_graph(block_counting, n=9), build_graph(two_deme, n1=4, n2=3)):
        direct, _ = record_trace_arrays(graph, max_unit_cost=40)
        units, paths = record_through_files(graph, tmp_path, max_unit_cost=40)
        assert len(units) > 1
        stitched, _ = stitch_trace_files(graph, units, paths)
        assert direct.keys() == stitched.keys()
        for name in direct:
            assert direct[name].dtype == stitched[name].dtype
            assert np.array_equal(direct[name], stitched[name]), name


def test_trace_file_round_trip_evaluates_identically(tmp_path):
    graph = build_graph(two_deme, n1=3, n2=3)
    arrays, units = record_trace_arrays(graph)
    phasemake.write_trace(arrays, phasemake.trace.files.trace_meta(graph, units), tmp_path / "t.h5")
    loaded = phasemake.load_trace(tmp_path / "t.h5")
    direct = phasemake.compile_trace(graph)
    theta = [0.8, 1.7]
    assert float(loaded.expectation(theta)) == float(direct.expectation(theta))
    assert loaded.parameters == ("coal", "mig")


def test_unit_shared_by_two_graphs_is_computed_once(tmp_path):
    # one level per unit: the lowest lineage counts of n=6 and n=8 are the same units
    small, big = build_graph(kingman, n=6), build_graph(kingman, n=8)
    u_small, _ = record_through_files(small, tmp_path, max_unit_cost=1)
    written = {p.name for p in tmp_path.iterdir()}
    u_big, _ = record_through_files(big, tmp_path, max_unit_cost=1)
    shared = {u.key for u in u_small} & {u.key for u in u_big}
    assert len(shared) == len(u_small) == 6
    assert len(list(tmp_path.iterdir())) == len(written) + len(u_big) - len(shared)


def test_corrupt_unit_is_detected_and_recomputed(tmp_path, caplog):
    graph = build_graph(block_counting, n=7)
    units, paths = record_through_files(graph, tmp_path, max_unit_cost=30)
    with h5py.File(paths[1], "r+") as f:
        f["edge_coef"][0, 0] += 1.0
    with pytest.raises(phasemake.ArtefactError, match="checksum"):
        read_unit(paths[1])
    with caplog.at_level("WARNING"):
        stitched, _ = stitch_trace_files(graph, units, paths)
    assert "recomputing unit" in caplog.text and units[1].key in caplog.text
    read_unit(paths[1])  # rewritten and valid again
    direct, _ = record_trace_arrays(graph, max_unit_cost=30)
    assert all(np.array_equal(direct[k], stitched[k]) for k in direct)


def test_stale_plan_is_refused():
    _, units = plan_units(build_graph(two_deme, n1=2, n2=2))
    changed = build_graph(two_deme, n1=2, n2=2, relative_size=2.0)  # other coefficients
    with pytest.raises(ValueError, match="the plan is stale"):
        record_unit(changed, units[0])


def test_closed_class_without_absorption_is_an_error():
    @phasemake.model(parameters=["a"], initial=[0])
    def flipflop(state):
        return [([1 - state[0]], [1.0])]

    with pytest.raises(GraphBuildError, match="closed class"):
        phasemake.compile_trace(build_graph(flipflop))


def test_larger_graphs_are_split_into_several_units():
    g = build_graph(block_counting, n=20)
    _, one = plan_units(g)
    _, many = plan_units(g, max_unit_cost=500)
    assert len(one) == 1 and len(many) > 3
    assert [u.level_start for u in many[1:]] == [u.level_stop for u in many[:-1]]


def test_several_cyclic_components_in_one_level_against_dense():
    # two disjoint 2-cycles (one per g) at the same level exercise the batched solves
    @phasemake.model(parameters=["a", "b", "c"], initial=[([0, 0], 0.3), ([1, 0], 0.7)])
    def cycles(state):
        g, x = state.tolist()
        if x == 2:
            return []
        if x == 0:
            return [([g, 1], [1.0 + g, 0.0, 0.0])]
        return [([g, 0], [0.0, 1.0, 0.0]), ([g, 2], [0.0, 0.0, 1.0 + 2 * g])]

    graph = build_graph(cycles)
    layout = layout_graph(graph)
    assert sorted(layout.comp_size.tolist()) == [1, 1, 2, 2, 2, 2]
    trace = phasemake.compile_trace(graph)
    rng = np.random.default_rng(7)
    for _ in range(3):
        theta = rng.uniform(0.3, 3.0, size=3)
        rewards = rng.uniform(size=(graph.n_vertices, 2))
        # dense reference; rtol 1e-12: both are direct solves of a 4x4 system
        ref = phasemake.expected_rewards(graph, theta, rewards)
        np.testing.assert_allclose(trace.expectation(theta, rewards), ref, rtol=1e-12)
        moments = trace.moments(theta, 2, rewards[:, 0])
        assert float(moments[0]) == pytest.approx(ref[0], rel=1e-12)


def test_a_unit_is_recorded_only_when_its_file_holds_that_unit(tmp_path):
    # what record_trace_unit checks first (a complete unit that --rerun-incomplete reruns)
    graph = build_graph(two_deme, n1=3, n2=2)
    units, paths = record_through_files(graph, tmp_path, max_unit_cost=1)
    assert all(unit_is_recorded(p) for p in paths)
    assert not unit_is_recorded(tmp_path / "missing.h5")
    paths[0].write_bytes(paths[0].read_bytes()[:300])  # truncated by a killed job
    paths[1].rename(tmp_path / f"{units[2].key}.h5")  # another unit at this unit's path
    assert not unit_is_recorded(paths[0])
    assert not unit_is_recorded(tmp_path / f"{units[2].key}.h5")


def test_more_components_than_int32_pairs_hold():
    # 50,000 components: SciPy labels them with int32, and label · n_comp (2.5e9) overflowed
    # into negative pair codes (block-counting n = 50, 204,226 states, failed so)
    g = build_graph(kingman, n=50_000)
    layout = layout_graph(g)
    assert layout.level_vptr.size - 1 == 50_000  # one state per level: k lineages at k - 1
    levels = g.states[layout.order, 0]
    assert levels[0] == 1 and np.all(np.diff(levels) == 1)
