"""Issue 19 (0): every NLSQ pass of a one-chunk analysis in one job (fit_sole_passes) writes
the per-pass jobs' files bit for bit, resumes after its last valid pass, and starts again
when what the passes are computed from changed."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from phasemake import build_graph, spec_hash
from phasemake.data.observations import write_observations
from phasemake.data.simulation import simulate_absorption_times
from phasemake.fit.analysis import accumulate_chunk, model_from_files, step_nlsq
from phasemake.fit.nlsq import LMSettings
from phasemake.fit.onejob import fit_sole_passes
from phasemake.fit.state import check_sole_passes, read_passes, read_state
from phasemake.graph.files import write_graph
from phasemake.models import kingman
from phasemake.trace.files import stitch_trace_files, write_trace, write_unit
from phasemake.trace.units import plan_units, record_unit

DATA = {"simulate": {"theta": {"coal": 2.0}, "size": 300, "seed": 5}}
DEFAULT = LMSettings()
ANALYSIS = {"model": "k", "observations": "absorption_times", "data": DATA, "nlsq": {}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Graph, trace and observations files of a Kingman n = 4 analysis."""
    root = tmp_path_factory.mktemp("onejob")
    graph = build_graph(kingman, n=4)
    spec = spec_hash(kingman, n=4)
    write_graph(graph, root / f"{spec}.graph.h5")
    _, units = plan_units(graph)
    paths = [root / f"{u.key}.h5" for u in units]
    for u, p in zip(units, paths, strict=True):
        write_unit(record_unit(graph, u), p)
    write_trace(*stitch_trace_files(graph, units, paths), root / f"{spec}.trace.h5")
    obs = simulate_absorption_times(graph, np.array([2.0]), size=300, seed=5)
    write_observations(obs, root / "observations.h5", provenance={"analysis": "a", "data": DATA})
    return {
        "observations": root / "observations.h5",
        "trace": root / f"{spec}.trace.h5",
        "graph": root / f"{spec}.graph.h5",
    }


def run(inputs, folder, settings=DEFAULT):
    return fit_sole_passes(
        ANALYSIS, **inputs, folder=folder, manifest=folder / "passes.json", settings=settings
    )


def files(folder):
    return {
        p.relative_to(folder): p.read_bytes() for p in sorted(folder.glob("pass*/*")) if p.is_file()
    }


def per_pass_jobs(inputs, folder, settings=DEFAULT):
    """What the per-pass jobs do: a fresh model each pass (the first at the data's scale)."""
    step, state = 0, None
    while state is None or state["status"] == "running":
        previous = str(folder / f"pass{step - 1}/state.json") if step else None
        files = {"trace": inputs["trace"], "graph": inputs["graph"]}
        model = model_from_files(
            ANALYSIS, **files, observations=None if previous else inputs["observations"]
        )
        chunk = folder / f"pass{step}/chunk0.h5"
        accumulate_chunk(
            model, inputs["observations"], chunk, chunk=0, chunks=1, previous_state=previous
        )
        state = step_nlsq(
            [str(chunk)], folder / f"pass{step}/state.json", previous_state=previous,
            settings=settings,
        )  # fmt: skip
        step += 1
    return step


def test_one_job_writes_the_per_pass_jobs_bytes(inputs, tmp_path):
    state = run(inputs, tmp_path / "one")
    passes = per_pass_jobs(inputs, tmp_path / "jobs")
    assert state["status"] == "converged" and passes >= 3
    assert files(tmp_path / "one") == files(tmp_path / "jobs")
    listed = read_passes(tmp_path / "one/passes.json")
    assert listed == {"passes": passes, "state": str(tmp_path / f"one/pass{passes - 1}/state.json")}
    assert read_state(listed["state"]) == state


def test_a_killed_job_resumes_after_its_last_valid_pass(inputs, tmp_path, caplog):
    folder = tmp_path / "fit"
    run(inputs, folder)
    before = files(folder)
    n = read_passes(folder / "passes.json")["passes"]
    (folder / "passes.json").unlink()  # killed in pass n - 2: no manifest, no later pass
    for k in (n - 2, n - 1):
        shutil.rmtree(folder / f"pass{k}")
    kept = (folder / "pass0/state.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="phasemake"):
        run(inputs, folder)
    assert f"resuming after pass {n - 3}" in caplog.text
    assert files(folder) == before
    assert (folder / "pass0/state.json").stat().st_mtime_ns == kept
    # a corrupt pass: the parse-time check removes the manifest, the job redoes that pass
    (folder / "pass1/chunk0.h5").write_bytes(b"garbage")
    problems = check_sole_passes(folder, folder / "passes.json")
    assert any("NLSQ pass 1" in p for p in problems), problems
    assert not (folder / "passes.json").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="phasemake"):
        run(inputs, folder)
    assert "resuming after pass 0" in caplog.text
    assert files(folder) == before
    assert check_sole_passes(folder, folder / "passes.json") == []


def test_another_setting_starts_again_from_pass_0(inputs, tmp_path, caplog):
    folder = tmp_path / "fit"
    run(inputs, folder)
    (folder / "passes.json").unlink()
    shutil.rmtree(folder / "pass2")
    (folder / "pass9").mkdir()  # a stale folder of an older fit
    settings = LMSettings(ftol=1e-6)
    with caplog.at_level(logging.INFO, logger="phasemake"):
        state = run(inputs, folder, settings=settings)
    assert "resuming" not in caplog.text and not (folder / "pass9").exists()
    passes = per_pass_jobs(inputs, tmp_path / "jobs", settings=settings)
    assert files(folder) == files(tmp_path / "jobs")
    assert read_passes(folder / "passes.json")["passes"] == passes == state["iteration"] + 1
