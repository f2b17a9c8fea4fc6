"""Parse-time helpers and the config schema."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from phasemake import DEFAULT_MAX_STATES, ModelError
from phasemake.workflow import resolve_model_specs
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_resolves():
    jsonschema.Draft202012Validator(SCHEMA).validate(CONFIG)
    specs = resolve_model_specs(CONFIG["models"], base_dir=REPO)
    assert set(specs) == set(CONFIG["models"])
    assert "two_deme" in {m.model.name for m in specs.values()}


def test_schema_is_strict_and_documented():
    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is not None, path
            for key, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{path}.{key} has no description"
                alternatives = node.get("oneOf", []) + node.get("anyOf", [])
                required = key in node.get("required", []) or any(
                    key in branch.get("required", []) for branch in alternatives
                )
                assert required or "default" in sub, f"{path}.{key} has no default"
                walk(sub, f"{path}.{key}")
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], f"{path}.*")

    walk(SCHEMA, "config")
    default = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["max_states"]
    assert default["default"] == DEFAULT_MAX_STATES


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(unknown_key=1),
        lambda c: c["models"]["two_deme"].update(parms={}),
        lambda c: c["models"]["two_deme"].update(callback="no_colon"),
        lambda c: c["models"].update({"9bad": {"callback": "a:b"}}),
        lambda c: c["models"]["two_deme"].update(max_states=0),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"shards": 0}),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"shards": "many"}),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"rule": "average"}),
        lambda c: c["analyses"]["two_deme_times"].update(
            cmc={"prior": {"coal": {"normal": {"loc": 0, "scale": 1}}}}
        ),
        lambda c: c["analyses"]["two_deme_times"].update(
            cmc={"prior": {"coal": {"gamma": {"rate": 1.0}}}}  # concentration missing
        ),
    ],
)
def test_schema_rejects_bad_config(mutate):
    bad = copy.deepcopy(CONFIG)
    mutate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(bad)


def test_bad_callback_reference_names_the_model_entry():
    with pytest.raises(ModelError, match=r"config models\.x: .*has no attribute 'nope'"):
        resolve_model_specs({"x": {"callback": "phasemake.models:nope"}})


def test_identical_models_share_a_spec():
    entry = {"callback": "phasemake.models:kingman", "params": {"n": 4}}
    specs = resolve_model_specs({"a": entry, "b": dict(entry)})
    assert specs["a"].spec == specs["b"].spec


def _cache_with_unit(root):
    """A cache with one graph, its plan and its one unit, all valid and old enough to be
    remembered; returns (spec, graph path, unit path)."""
    import os

    from phasemake import GraphCache, plan_units, spec_hash
    from phasemake.models import kingman
    from phasemake.trace.files import record_unit, write_plan, write_unit

    cache = GraphCache(root)
    graph = cache.load_or_build(kingman, n=5)
    spec = spec_hash(kingman, n=5)
    _, units = plan_units(graph)
    write_plan(units, {"spec": spec}, cache.plan_path(spec))
    unit = cache.unit_path(units[0].key)
    write_unit(record_unit(graph, units[0]), unit)
    for path in (cache.graph_path(spec), unit):  # written a minute ago
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 60 * 10**9))
    return spec, cache.graph_path(spec), unit


def test_verified_artefacts_are_not_read_again_until_they_change(tmp_path, monkeypatch):
    import h5py

    from phasemake.trace import files as tracefile
    from phasemake.workflow import discard_invalid_artefacts

    spec, graph, unit = _cache_with_unit(tmp_path)
    reads = []
    real = tracefile.read_unit
    monkeypatch.setattr(tracefile, "read_unit", lambda p: reads.append(p) or real(p))
    assert discard_invalid_artefacts(tmp_path, [spec]) == []
    assert reads == [unit] and (tmp_path / "verified.json").exists()
    assert discard_invalid_artefacts(tmp_path, [spec]) == []
    assert reads == [unit]  # remembered: not read again
    with h5py.File(unit, "r+") as f:  # corrupt it: its mtime changes
        f["edge_coef"][...] = f["edge_coef"][()] + 1.0
    (problem,) = discard_invalid_artefacts(tmp_path, [spec])
    assert "is corrupt" in problem and not unit.exists() and graph.exists()


def test_an_invalid_file_in_a_read_only_cache_is_reported_not_fatal(tmp_path, monkeypatch):
    # a read-only cache (as root, write bits do not stop unlink: the refusal is simulated)
    import pathlib

    from phasemake.workflow import discard_invalid_artefacts

    spec, _, unit = _cache_with_unit(tmp_path)
    unit.write_bytes(unit.read_bytes()[:500])  # truncated

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "unlink", refuse)
    (problem,) = discard_invalid_artefacts(tmp_path, [spec])
    assert str(unit) in problem and "cannot be removed (Permission denied)" in problem
    assert "ask whoever writes the cache to rebuild it" in problem and unit.exists()


def test_artefacts_written_by_a_run_are_remembered_without_reading(tmp_path, monkeypatch):
    from phasemake.trace import files as tracefile
    from phasemake.workflow import discard_invalid_artefacts, remember_artefacts

    spec, _, _ = _cache_with_unit(tmp_path)
    assert remember_artefacts(tmp_path, [spec]) == 2  # the graph and the unit
    assert remember_artefacts(tmp_path, [spec]) == 0
    monkeypatch.setattr(tracefile, "read_unit", lambda p: pytest.fail(f"read {p}"))
    assert discard_invalid_artefacts(tmp_path, [spec]) == []


def test_auto_chunks_follow_the_size_of_the_data(tmp_path):
    import numpy as np

    from phasemake.workflow import data_rows, resolve_chunks

    np.save(tmp_path / "t.npy", np.ones((2500, 1)))
    (tmp_path / "t.csv").write_text("time\n" + "1.0\n" * 1200)
    analyses = {
        "sim": {"observations": "absorption_times", "data": {"simulate": {"size": 20000}}},
        "npy": {"observations": "absorption_times", "data": {"file": str(tmp_path / "t.npy")}},
        "csv": {"observations": "absorption_times", "data": {"file": str(tmp_path / "t.csv")}},
        "set": {"observations": "sfs", "chunks": 7, "data": {"simulate": {"windows": 10}}},
        "one": {"observations": "sfs", "chunks": 1, "data": {"simulate": {"windows": 900}}},
        "big": {"observations": "sfs", "chunks": 1, "data": {"simulate": {"windows": 5000}}},
    }
    assert data_rows(analyses["csv"]) == 1200
    for a in analyses.values():
        a.setdefault("chunks", "auto")
        a["chunk_rows"] = 1000
    small = resolve_chunks(analyses)
    assert {n: a["chunks"] for n, a in analyses.items()} == {
        "sim": 20,
        "npy": 3,
        "csv": 2,
        "set": 7,
        "one": 1,
        "big": 1,
    }
    assert small == {"one"}  # one chunk of at most chunk_rows rows (big: set by hand)
    shipped = copy.deepcopy(CONFIG["analyses"])
    keys = SCHEMA["properties"]["analyses"]["additionalProperties"]["properties"]
    for a in shipped.values():
        a.setdefault("chunks", keys["chunks"]["default"])
        a.setdefault("chunk_rows", keys["chunk_rows"]["default"])
    small = resolve_chunks(shipped)
    assert all(a["chunks"] == 1 for a in shipped.values())  # small data: one chunk a pass
    assert small == set(shipped)


def _age(path, seconds=60):
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


def test_foreign_graph_trace_and_plan_are_removed_or_only_reported_in_a_dry_run(tmp_path):
    import shutil

    from phasemake import GraphCache, spec_hash
    from phasemake.core.artefact import write_artefact
    from phasemake.models import kingman
    from phasemake.trace.files import TRACE_FORMAT_VERSION, TRACE_KIND
    from phasemake.workflow import discard_invalid_artefacts

    spec, graph, _ = _cache_with_unit(tmp_path)
    cache = GraphCache(tmp_path)
    other = cache.load_or_build(kingman, n=7)
    eight = spec_hash(kingman, n=7)
    meta = {"parameters": ["coal"], "provenance": {"spec": eight}}
    # a valid trace artefact of another spec (write_trace would need real trace arrays)
    write_artefact(
        cache.trace_dir / f"{eight}.h5",
        kind=TRACE_KIND,
        version=TRACE_FORMAT_VERSION,
        arrays={"x": other.states},
        meta=meta,
    )
    shutil.copy(cache.trace_dir / f"{eight}.h5", cache.trace_dir / f"{spec}.h5")
    shutil.copy(cache.graph_path(eight), graph)
    plan = cache.plan_path(spec)
    plan.write_text(plan.read_text().replace(spec, eight))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    dry = discard_invalid_artefacts(tmp_path, [spec], dry_run=True)
    assert len(dry) == 3 and all("dry run: not removed" in m for m in dry)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    real = discard_invalid_artefacts(tmp_path, [spec])
    assert [m.split("; removed it so it is ")[1] for m in real] == [
        "rebuilt",
        "re-stitched",
        "re-planned",
    ]
    assert all(f"of spec {eight}" in m for m in real)
    assert not graph.exists() and not plan.exists()
    assert not (cache.trace_dir / f"{spec}.h5").exists()
    assert cache.graph_path(eight).exists() and (cache.trace_dir / f"{eight}.h5").exists()


def test_bit_rot_that_keeps_size_mtime_and_inode_is_still_found(tmp_path):
    import os

    import h5py

    from phasemake.workflow import discard_invalid_artefacts, remember_artefacts

    spec, graph, unit = _cache_with_unit(tmp_path)
    assert remember_artefacts(tmp_path, [spec]) == 2
    stat = unit.stat()
    with h5py.File(unit, "r+") as f:  # flip a value inside a dataset, same size
        f["edge_coef"][...] = f["edge_coef"][()] + 1.0
    os.utime(unit, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and restore the mtime
    now = unit.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ino,
    )
    (problem,) = discard_invalid_artefacts(tmp_path, [spec])
    assert "is corrupt" in problem and not unit.exists() and graph.exists()
