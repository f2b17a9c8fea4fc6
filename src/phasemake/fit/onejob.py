"""Every NLSQ pass of a one-chunk analysis in one process (the ``fit_sole_nlsq`` job).

Each pass writes the files the per-pass jobs write (``pass{k}/chunk0.h5`` by
:func:`phasemake.fit.analysis.accumulate_chunk`, then ``pass{k}/state.json`` by
:func:`phasemake.fit.analysis.step_nlsq`), so the fit is bit-identical to the per-pass file
DAG; the trace is read and the model compiled once instead of once a pass. The job's only
declared output is a manifest (``passes.json``: the number of passes and the final state),
written last. A killed job resumes after its last valid pass, if the fingerprint it wrote
before its first pass (``passes.resume.json``: data, trace and graph checksums and the
settings) still matches; otherwise it starts again from pass 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py

from phasemake.core.artefact import read_json_artefact, write_json_artefact
from phasemake.core.errors import ArtefactError
from phasemake.core.joblog import PROGRESS
from phasemake.data.observations import read_header
from phasemake.fit.analysis import accumulate_chunk, model_from_files, step_nlsq
from phasemake.fit.nlsq import LMSettings
from phasemake.fit.state import valid_passes, write_passes

__all__ = ["RESUME_NAME", "fingerprint", "fit_sole_passes", "log_pass"]

log = logging.getLogger(__name__)

RESUME_KIND, RESUME_VERSION = "phasemake.nlsq_resume", 1
#: The fingerprint's file name, beside the pass folders.
RESUME_NAME = "passes.resume.json"


def log_pass(logger: logging.Logger, state: dict[str, Any]) -> None:
    """One progress line for the terminal (``extra=PROGRESS``) about a pass's state."""
    last = state["history"][-1]
    logger.info(
        "pass %d: chi2 %.12g %s, damping %.3g, best chi2 %.12g; %s %s",
        state["iteration"],
        last["chi2"],
        "accepted" if last["accepted"] else "rejected",
        state["damping"],
        state["best"]["chi2"],
        state["status"],
        state["reason"],
        extra=PROGRESS,
    )


def _stored_checksum(path: str | os.PathLike[str]) -> str:
    """The checksum an artefact file states (verified when the model reads it), or its
    size for a file without one."""
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("checksum")
    except OSError:
        value = None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value is not None else f"size:{os.path.getsize(path)}"


def fingerprint(
    analysis: dict[str, Any],
    *,
    observations: str | os.PathLike[str],
    trace: str | os.PathLike[str],
    graph: str | os.PathLike[str],
    settings: LMSettings,
) -> dict[str, Any]:
    """What the passes are computed from: the data (the observations' checksum), the trace
    and graph files (their checksums), the analysis's settings and the LM settings.

    Examples
    --------
    >>> fingerprint(analysis, observations="results/a/data/observations.h5",
    ...             trace="cache/traces/<spec>.h5", graph="cache/graphs/<spec>.h5",
    ...             settings=LMSettings())  # doctest: +SKIP
    """
    made = {
        "data": read_header(observations)["checksum"],
        "trace": _stored_checksum(trace),
        "graph": _stored_checksum(graph),
        "analysis": analysis,
        "settings": asdict(settings),
    }
    return json.loads(json.dumps(made, sort_keys=True, default=str))  # as read back


def _pass_folders(folder: Path) -> list[Path]:
    return [p for p in folder.glob("pass*") if p.is_dir() and p.name[4:].isdigit()]


def _resumable(folder: Path, made: dict[str, Any]) -> list[dict[str, Any]]:
    """The valid passes' states, if the fingerprint on disk is ``made``; else none."""
    try:
        found = read_json_artefact(folder / RESUME_NAME, kind=RESUME_KIND, versions=(1,))
    except ArtefactError:
        return []
    return valid_passes(folder, 1) if found == made else []


def fit_sole_passes(
    analysis: dict[str, Any],
    *,
    observations: str | os.PathLike[str],
    trace: str | os.PathLike[str],
    graph: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    manifest: str | os.PathLike[str],
    settings: LMSettings,
) -> dict[str, Any]:
    """Run the NLSQ passes of a one-chunk ``analysis`` (its settings, as the chunk jobs get
    them) in this process, each writing ``folder/pass{k}/chunk0.h5`` and
    ``folder/pass{k}/state.json`` as the per-pass jobs do, until a state stops; then write
    the ``manifest`` (:func:`phasemake.fit.state.write_passes`). Resumes after the last
    valid pass when the fingerprint in ``folder/passes.resume.json`` matches
    (:func:`fingerprint`); otherwise removes the old passes and starts from pass 0.

    Returns the final state.

    Examples
    --------
    >>> state = fit_sole_passes(
    ...     analysis, observations="results/a/data/observations.h5",
    ...     trace="cache/traces/<spec>.h5", graph="cache/graphs/<spec>.h5",
    ...     folder="results/a/nlsq", manifest="results/a/nlsq/passes.json",
    ...     settings=LMSettings.from_config(analysis["nlsq"]))  # doctest: +SKIP
    >>> state["status"]  # doctest: +SKIP
    'converged'
    """
    folder = Path(folder)
    made = fingerprint(
        analysis, observations=observations, trace=trace, graph=graph, settings=settings
    )
    states = _resumable(folder, made)
    if states:
        log.info("resuming after pass %d", len(states) - 1)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_artefact(folder / RESUME_NAME, kind=RESUME_KIND, version=1, payload=made)
    for stale in _pass_folders(folder):
        if int(stale.name[4:]) >= len(states):
            shutil.rmtree(stale)
    # one model for every pass: it differs from one built without the observations only
    # in the free parameters' start values, which the first pass alone reads (later
    # passes start at the previous state's point), so every pass evaluates the same
    # programs at the same points as the per-pass jobs, compiled once
    model = model_from_files(analysis, trace=trace, graph=graph, observations=observations)
    state = states[-1] if states else None
    step, start = len(states), time.perf_counter()
    while state is None or state["status"] == "running":
        prefix = folder / f"pass{step}"
        previous = os.fspath(folder / f"pass{step - 1}" / "state.json") if step else None
        accumulate_chunk(
            model,
            observations,
            prefix / "chunk0.h5",
            chunk=0,
            chunks=1,
            previous_state=previous,
            data=analysis.get("data"),
        )
        state = step_nlsq(
            [os.fspath(prefix / "chunk0.h5")],
            prefix / "state.json",
            previous_state=previous,
            settings=settings,
        )
        log_pass(log, state)
        step += 1
    log.info("%d passes (%.2f s in this job)", step, time.perf_counter() - start)
    write_passes(manifest, passes=step, state=folder / f"pass{step - 1}" / "state.json")
    return state
