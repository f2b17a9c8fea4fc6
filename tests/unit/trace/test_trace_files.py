"""Issue 13 (1): a stitched trace or a plan of another graph at a cache path is refused."""

from __future__ import annotations

import json
import shutil

import pytest

from phasemake import ArtefactError, build_graph, spec_hash
from phasemake.models import kingman, two_deme
from phasemake.trace.files import (
    load_trace,
    read_plan,
    stitch_trace_files,
    write_plan,
    write_trace,
    write_unit,
)
from phasemake.trace.units import plan_units, record_unit


def _trace_file(model, folder, **params):
    graph = build_graph(model, **params)
    _, units = plan_units(graph)
    paths = [folder / f"{u.key}.h5" for u in units]
    for u, p in zip(units, paths, strict=True):
        write_unit(record_unit(graph, u), p)
    arrays, meta = stitch_trace_files(graph, units, paths)
    path = folder / f"{spec_hash(model, **params)}.h5"
    write_trace(arrays, meta, path)
    return path


def test_a_trace_of_another_graph_at_a_cache_path_is_refused(tmp_path):
    eight = _trace_file(kingman, tmp_path, n=8)
    deme = _trace_file(two_deme, tmp_path, n1=3, n2=1)
    six = tmp_path / f"{spec_hash(kingman, n=6)}.h5"
    assert float(load_trace(eight).expectation([1.0])) == pytest.approx(2 * (1 - 1 / 8))
    shutil.copy(eight, six)  # Kingman n = 8 over n = 6
    with pytest.raises(ArtefactError, match=f"trace of spec {eight.stem}.*{six.stem} was"):
        load_trace(six)
    shutil.copy(deme, eight)  # two-deme over Kingman
    with pytest.raises(ArtefactError, match="foreign file at this cache path"):
        load_trace(eight)
    with pytest.raises(ArtefactError, match=r"parameters \['coal', 'mig'\].*\['coal'\]"):
        load_trace(deme, parameters=("coal",))
    # asked for by spec, any path is checked
    with pytest.raises(ArtefactError, match="spec"):
        load_trace(deme, spec=spec_hash(kingman, n=8))


def test_a_plan_of_another_spec_is_refused(tmp_path):
    graph = build_graph(kingman, n=5)
    _, units = plan_units(graph)
    spec, other = spec_hash(kingman, n=5), spec_hash(kingman, n=6)
    write_plan(units, {"spec": spec}, tmp_path / spec / "plan.json")
    assert read_plan(tmp_path / spec / "plan.json")[1]["spec"] == spec
    (tmp_path / other).mkdir()
    shutil.copy(tmp_path / spec / "plan.json", tmp_path / other / "plan.json")
    with pytest.raises(ArtefactError, match=f"trace plan of spec {spec}"):
        read_plan(tmp_path / other / "plan.json")
    (tmp_path / other / "plan.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ArtefactError, match="not a valid trace plan"):
        read_plan(tmp_path / other / "plan.json")
