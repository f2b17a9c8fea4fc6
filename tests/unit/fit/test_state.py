"""Issue 13 (7): the parse-time walk of the NLSQ passes redoes a pass whose chunk or state
file is missing or corrupt (and every later pass); a dry run only reports."""

from __future__ import annotations

import numpy as np
import pytest

from phasemake.core.artefact import write_artefact
from phasemake.fit.state import CHUNK_KIND, CHUNK_VERSION, check_passes, write_state


def _passes(folder, n=3, chunks=2):
    """Passes 0..n-1 (the last one stopped) and a fit.json, consistent with each other."""
    point = np.array([0.5, 1.0])
    for step in range(n):
        for c in range(chunks):
            write_artefact(
                folder / f"pass{step}" / f"chunk{c}.h5",
                kind=CHUNK_KIND,
                version=CHUNK_VERSION,
                arrays={"jtj": np.eye(2), "jtr": np.ones(2), "phi": point},
                meta={"data": "sha256:d", "chunk": c},
            )
        point = point + 0.25
        status = "running" if step < n - 1 else "converged"
        state = {"data": "sha256:d", "next": point.tolist(), "status": status}
        write_state(folder / f"pass{step}" / "state.json", state)
    (folder / "fit.json").write_text("{}")
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_complete_passes_are_left_alone(tmp_path):
    files = _passes(tmp_path)
    assert check_passes(tmp_path, chunks=2) == []
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files


@pytest.mark.parametrize("damage", ["delete", "corrupt", "state"])
def test_a_damaged_pass_is_redone_with_every_later_pass(tmp_path, damage):
    files = _passes(tmp_path)
    target = tmp_path / "pass1" / ("state.json" if damage == "state" else "chunk0.h5")
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:-20])
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    (dry,) = check_passes(tmp_path, chunks=2, dry_run=True)
    assert "NLSQ pass 1" in dry and "dry run: nothing removed" in dry
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before
    (message,) = check_passes(tmp_path, chunks=2)
    assert "NLSQ pass 1" in message and "redone" in message
    left = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    kept = [p for p in files if p.parent.name == "pass0"]
    if damage == "state":  # the valid chunks of pass 1 are kept
        kept += [tmp_path / "pass1/chunk0.h5", tmp_path / "pass1/chunk1.h5"]
    else:
        kept += [tmp_path / "pass1/chunk1.h5"]
    assert left == sorted(kept)
    assert check_passes(tmp_path, chunks=2) == []  # now a pass in progress: resumed


def test_a_chunk_of_other_data_is_not_used(tmp_path):
    _passes(tmp_path)
    write_artefact(
        tmp_path / "pass2" / "chunk1.h5",
        kind=CHUNK_KIND,
        version=CHUNK_VERSION,
        arrays={"jtj": np.eye(2), "jtr": np.ones(2), "phi": np.array([1.0, 1.5])},
        meta={"data": "sha256:other", "chunk": 1},
    )
    (message,) = check_passes(tmp_path, chunks=2)
    assert "NLSQ pass 2" in message and "sha256:other" in message
    assert not (tmp_path / "pass2/state.json").exists() and not (tmp_path / "fit.json").exists()


def test_a_chunk_job_refuses_observations_of_other_data(tmp_path):
    from phasemake import ArtefactError, build_graph
    from phasemake.data.observations import read_header, write_observations
    from phasemake.data.simulation import simulate_absorption_times
    from phasemake.fit.analysis import check_observations
    from phasemake.models import kingman

    data = {"simulate": {"theta": {"coal": 1.0}, "size": 50, "seed": 3}}
    obs = simulate_absorption_times(build_graph(kingman, n=4), np.array([1.0]), size=50, seed=3)
    path = tmp_path / "observations.h5"
    meta = write_observations(obs, path, provenance={"analysis": "a", "data": data})
    meta = read_header(path)
    check_observations(path, meta, data=data)  # what the config asks for: fine
    other = {"simulate": {**data["simulate"], "seed": 4}}
    with pytest.raises(ArtefactError, match=r"observations.h5 was made from data .*'seed': 3"):
        check_observations(path, meta, data=other)
    write_state(tmp_path / "pass0/state.json", {"data": "sha256:else", "next": [1.0]})
    with pytest.raises(ArtefactError, match=r"but .*pass0/state\.json was computed on data"):
        check_observations(path, meta, previous_state=tmp_path / "pass0/state.json")


def test_observations_of_other_data_are_removed_at_parse_time(tmp_path):
    from phasemake import build_graph
    from phasemake.data.observations import write_observations
    from phasemake.data.simulation import simulate_absorption_times
    from phasemake.fit.analysis import discard_foreign_observations
    from phasemake.models import kingman

    data = {"simulate": {"theta": {"coal": 1.0}, "size": 20, "seed": 3}}
    obs = simulate_absorption_times(build_graph(kingman, n=4), np.array([1.0]), size=20, seed=3)
    path = tmp_path / "observations.h5"
    write_observations(obs, path, provenance={"analysis": "a", "data": data})
    assert discard_foreign_observations(path, data) == []
    other = {"simulate": {**data["simulate"], "size": 30}}
    (dry,) = discard_foreign_observations(path, other, dry_run=True)
    assert "was made from data" in dry and "dry run: not removed" in dry and path.exists()
    (real,) = discard_foreign_observations(path, other)
    assert "removed it so it is rebuilt" in real and not path.exists()


def test_a_one_job_fit_loses_its_manifest_when_a_pass_must_be_redone(tmp_path):
    from phasemake.fit.state import check_sole_passes, valid_passes, write_passes

    _passes(tmp_path, n=3, chunks=1)
    manifest = tmp_path / "passes.json"
    write_passes(manifest, passes=3, state=tmp_path / "pass2/state.json")
    assert check_sole_passes(tmp_path, manifest) == []
    assert [s["status"] for s in valid_passes(tmp_path, 1)] == ["running", "running", "converged"]
    (tmp_path / "pass1/chunk0.h5").write_bytes(b"garbage")
    dry = check_sole_passes(tmp_path, manifest, dry_run=True)
    assert "dry run" in dry[-1] and manifest.exists() and (tmp_path / "fit.json").exists()
    real = check_sole_passes(tmp_path, manifest)
    assert any("NLSQ pass 1" in p for p in real) and "removed" in real[-1]
    assert not manifest.exists() and not (tmp_path / "fit.json").exists()
    assert len(valid_passes(tmp_path, 1)) == 1
    # a killed job: no manifest, an old fit.json, which Snakemake would take for done
    (tmp_path / "pass1").rmdir()  # (what the job's resume removes)
    (tmp_path / "fit.json").write_text("{}")
    (killed,) = check_sole_passes(tmp_path, manifest)
    assert "written by per-pass NLSQ jobs" in killed and not (tmp_path / "fit.json").exists()
    (tmp_path / "passes.resume.json").write_text("{}")  # what a one-job fit writes first
    (tmp_path / "fit.json").write_text("{}")
    (killed,) = check_sole_passes(tmp_path, manifest)
    assert "job was killed?" in killed and not (tmp_path / "fit.json").exists()
    # a manifest that lists another number of passes than are valid
    _passes(tmp_path, n=3, chunks=1)
    write_passes(manifest, passes=2, state=tmp_path / "pass1/state.json")
    (listed,) = check_sole_passes(tmp_path, manifest, dry_run=True)[:1]
    assert "lists 2 passes, but 3 are valid" in listed
