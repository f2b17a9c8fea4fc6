"""Stage 1 through real snakemake: reruns happen exactly when a graph could change."""

from __future__ import annotations

import h5py
import pytest

pytestmark = pytest.mark.integration

TINY = {
    "cache": "cache",
    "models": {
        "island": {"callback": "models/island.py:island", "params": {"n": 3}},
        "island_again": {"callback": "models/island.py:island", "params": {"n": 3}},
        "kingman": {"callback": "phasemake.models:kingman", "params": {"n": 6}},
    },
}


def test_reruns_follow_the_spec_hash(workflow):
    workflow.write_config(TINY)
    assert workflow.planned("build_graph") == 2  # island_again is the same spec as island
    workflow.snakemake("--cores", "2")
    first = workflow.graphs()
    assert len(first) == 2
    assert len(list((workflow.root / "logs/build_graph").glob("*.log"))) == 2
    assert workflow.planned("build_graph") == 0

    model_file = workflow.root / "models/island.py"
    text = model_file.read_text()
    model_file.write_text(
        text.replace('"""Every (next_state', '"""Every possible (next_state')
        + "\n# a comment-only edit\n"
    )
    assert workflow.planned("build_graph") == 0

    model_file.write_text(text.replace("DEMES = 3", "DEMES = 2"))
    assert workflow.planned("build_graph") == 1
    workflow.snakemake("--cores", "2")
    second = workflow.graphs()
    assert len(second) == 3  # the old island graph stays in the cache (no eviction)
    assert {k: second[k] for k in first} == first  # nothing already built was rewritten
    assert workflow.planned("build_graph") == 0


def test_corrupt_cached_graph_is_reported_and_rebuilt(workflow):
    workflow.write_config(TINY)
    workflow.snakemake("--cores", "1")
    path = next(p for p in (workflow.root / "cache/graphs").glob("*.h5"))
    with h5py.File(path, "r+") as f:
        f["edge_coef"][0, 0] += 1.0
    proc = workflow.snakemake("--cores", "1")
    assert "is corrupt: its checksum" in proc.stdout + proc.stderr
    assert path.exists()
    assert workflow.planned("build_graph") == 0


def test_bad_config_fails_at_parse_time_naming_the_key(workflow):
    bad = {"cache": "cache", "models": {"island": {"callback": "models/island.py:nope"}}}
    workflow.write_config(bad)
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    assert "config models.island" in proc.stdout + proc.stderr
    bad = {"cache": "cache", "models": {"island": {"callbak": "models/island.py:island"}}}
    workflow.write_config(bad)
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    assert "callbak" in proc.stdout + proc.stderr
