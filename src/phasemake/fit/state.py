"""NLSQ state files (JSON, checksummed) and the chunk statistics they sum: readable without
importing JAX, so the workflow walks the passes at parse time cheaply and the reducer job
(:func:`phasemake.fit.analysis.step_nlsq`) starts fast."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from phasemake.core.artefact import read_json_artefact, write_json_artefact

__all__ = [
    "CHUNK_KIND",
    "CHUNK_VERSION",
    "PASSES_KIND",
    "STATE_KIND",
    "STATE_VERSION",
    "Accumulator",
    "check_passes",
    "check_sole_passes",
    "read_passes",
    "read_state",
    "valid_passes",
    "write_passes",
    "write_state",
]

STATE_KIND = "phasemake.nlsq_state"
STATE_VERSION = 1
#: Kind of the chunk files (:func:`phasemake.fit.analysis.accumulate_chunk`); version 2
#: added the block scores (:mod:`phasemake.fit.linkage`).
CHUNK_KIND, CHUNK_VERSION = "phasemake.nlsq_chunk", 2
#: Kind of the manifest of an analysis whose passes ran in one job (``passes.json``,
#: :func:`phasemake.fit.onejob.fit_sole_passes`).
PASSES_KIND, PASSES_VERSION = "phasemake.nlsq_passes", 1


class Accumulator(NamedTuple):
    """Sufficient statistics of one pass over some rows, at one φ.

    ``jtj`` (p, p), ``jtr`` (p,), ``chi2`` (the objective), ``rr`` (``‖r‖²``, for the
    gradient test), ``count`` (rows, or cells for the SFS) and ``blocks``, the score sums
    by block of linked rows (:class:`phasemake.fit.linkage.BlockScores`; ``None`` where
    not computed).
    """

    jtj: np.ndarray
    jtr: np.ndarray
    chi2: float
    rr: float
    count: float
    blocks: Any = None

    @staticmethod
    def total(parts: list[Accumulator]) -> Accumulator:
        """Sum in the given order (deterministic); block scores are merged in row order,
        and dropped if a part has none."""
        jtj, jtr = parts[0].jtj.copy(), parts[0].jtr.copy()
        chi2, rr, count = parts[0].chi2, parts[0].rr, parts[0].count
        blocks = parts[0].blocks
        for a in parts[1:]:
            jtj += a.jtj
            jtr += a.jtr
            chi2 += a.chi2
            rr += a.rr
            count += a.count
            blocks = None if blocks is None or a.blocks is None else blocks.merge(a.blocks)
        return Accumulator(jtj, jtr, float(chi2), float(rr), float(count), blocks)


def write_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state after one pass (see :func:`phasemake.fit.nlsq.lm_update`) atomically."""
    write_json_artefact(path, kind=STATE_KIND, version=STATE_VERSION, payload=state)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified NLSQ state file."""
    return read_json_artefact(path, kind=STATE_KIND, versions=(STATE_VERSION,))


def write_passes(path: str | os.PathLike[str], *, passes: int, state: str) -> None:
    """Write the manifest of a one-job fit atomically: the number of ``passes`` and the
    final ``state`` file's path."""
    payload = {"passes": int(passes), "state": os.fspath(state)}
    write_json_artefact(path, kind=PASSES_KIND, version=PASSES_VERSION, payload=payload)


def read_passes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified manifest of a one-job fit (:func:`write_passes`)."""
    return read_json_artefact(path, kind=PASSES_KIND, versions=(PASSES_VERSION,))


def valid_passes(folder: str | os.PathLike[str], chunks: int) -> list[dict[str, Any]]:
    """The states of the passes under ``folder`` that can be used, in pass order: from
    pass 0 up to the first pass whose state or chunk files are missing or invalid (see
    :func:`check_passes`), or up to the first state that has stopped.

    Examples
    --------
    >>> import tempfile
    >>> valid_passes(tempfile.mkdtemp(), chunks=1)
    []
    """
    folder, states = Path(folder), []
    while _pass_problem(folder, len(states), chunks, states[-1] if states else None) is None:
        states.append(read_state(folder / f"pass{len(states)}" / "state.json"))
        if states[-1].get("status") != "running":
            break
    return states


def _pass_problem(folder: Path, step: int, chunks: int, previous: dict | None) -> str | None:
    """Why pass ``step`` under ``folder`` cannot be used (a missing or invalid chunk or
    state file, or chunks of other data or another point), else ``None``."""
    from phasemake.core.artefact import read_artefact
    from phasemake.core.errors import ArtefactError

    prefix = folder / f"pass{step}"
    try:
        state = read_state(prefix / "state.json")
        for c in range(chunks):
            chunk = prefix / f"chunk{c}.h5"
            if not chunk.is_file():
                return f"{chunk} is missing"
            arrays, meta = read_artefact(chunk, kind=CHUNK_KIND, versions=(CHUNK_VERSION,))
            if meta.get("data") != state.get("data"):
                return f"{chunk} was computed on data {meta.get('data')}, not {state.get('data')}"
            if previous is not None and not np.array_equal(arrays["phi"], previous["next"]):
                return f"{chunk} was computed at another point than {prefix.parent} proposed"
    except (ArtefactError, KeyError, TypeError) as err:
        return str(err)
    return None


def check_passes(
    folder: str | os.PathLike[str], chunks: int, *, dry_run: bool = False
) -> list[str]:
    """Walk the NLSQ passes under ``folder`` (``pass{k}/state.json`` and ``chunk{c}.h5``) at
    parse time; from the first pass whose state or chunk file is missing or invalid while
    a later file exists, remove that pass's state, its invalid chunks and every later pass
    (and the ``fit.json`` made from them), so that Snakemake redoes the pass: the passes
    are deterministic, so the redone passes and the fit are byte-identical. A dry run
    (``dry_run``) only reports. Returns one message per problem.

    Examples
    --------
    >>> import tempfile
    >>> check_passes(tempfile.mkdtemp(), chunks=2)
    []
    """
    folder = Path(folder)
    steps = sorted(
        int(p.name[4:]) for p in folder.glob("pass*") if p.is_dir() and p.name[4:].isdigit()
    )
    if not steps:
        return []
    previous, last = None, steps[-1]
    for step in range(last + 1):
        state_path = folder / f"pass{step}" / "state.json"
        problem = _pass_problem(folder, step, chunks, previous)
        if problem is None:
            previous = read_state(state_path)
            if previous.get("status") != "running":
                return []
            continue
        if step == last and not state_path.exists() and not (folder / "fit.json").exists():
            # the pass in progress (a killed run): Snakemake resumes it, from its valid chunks
            bad = [
                c
                for c in sorted((folder / f"pass{step}").glob("chunk*.h5"))
                if _chunk_problem(c, previous)
            ]
            if dry_run or not bad:
                return [f"{c} is invalid (dry run: not removed)" for c in bad]
            for c in bad:
                c.unlink()
            return [f"{c} is invalid; removed it so it is recomputed" for c in bad]
        break
    else:
        return []
    message = f"NLSQ pass {step} under {folder} cannot be used ({problem})"
    if dry_run:
        return [f"{message} (dry run: nothing removed; a real run redoes pass {step})"]
    state_path.unlink(missing_ok=True)
    for c in range(chunks):
        chunk = folder / f"pass{step}" / f"chunk{c}.h5"
        if chunk.exists() and _chunk_problem(chunk, previous):
            chunk.unlink()
    for later in steps:
        if later > step:
            shutil.rmtree(folder / f"pass{later}", ignore_errors=True)
    (folder / "fit.json").unlink(missing_ok=True)
    return [f"{message}; removed it and the later passes so they are redone"]


def check_sole_passes(
    folder: str | os.PathLike[str], manifest: str | os.PathLike[str], *, dry_run: bool = False
) -> list[str]:
    """:func:`check_passes` for an analysis whose passes run in one job (one chunk a
    pass, :func:`phasemake.fit.onejob.fit_sole_passes`), whose only declared output is
    the ``manifest``: when a pass is redone, or the manifest is invalid or names a final
    state that is not the last valid pass's, the manifest (and ``fit.json``) is removed, so
    that the job runs again and resumes after the last valid pass; so is a ``fit.json``
    without a manifest (a killed job). A dry run only reports.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_sole_passes(folder, f"{folder}/passes.json")
    []
    """
    from phasemake.core.errors import ArtefactError

    problems = check_passes(folder, 1, dry_run=dry_run)
    manifest, fit = Path(manifest), Path(folder) / "fit.json"
    if not manifest.exists():
        if not fit.exists():
            return problems
        # a killed job, or a fit from the per-pass jobs of an earlier version: Snakemake
        # takes a present fit.json for done without asking for the checkpoint's manifest,
        # so the fit is removed and the job resumes (or refits once)
        from phasemake.fit.onejob import RESUME_NAME

        if (Path(folder) / RESUME_NAME).exists():
            message = f"{manifest} is missing (a fit_sole_nlsq job was killed?)"
        else:
            message = (
                f"{manifest} is missing: {fit} was written by per-pass NLSQ jobs (before "
                "one-chunk fits ran in one job); it is fitted again once, in one job"
            )
        if dry_run:
            return [*problems, f"{message} (dry run: {fit} not removed)"]
        fit.unlink()
        return [*problems, f"{message}; removed {fit} so that the fit resumes"]
    try:
        listed = read_passes(manifest)
        states = valid_passes(folder, 1)
        if len(states) != listed["passes"] or states[-1].get("status") == "running":
            problems.append(
                f"{manifest} lists {listed['passes']} passes, but {len(states)} are valid "
                "and complete"
            )
    except (ArtefactError, KeyError, TypeError, IndexError) as err:
        problems.append(str(err))
    if not problems:
        return []
    if dry_run:
        return [*problems, f"{manifest} would be removed (dry run: not removed)"]
    manifest.unlink(missing_ok=True)
    fit.unlink(missing_ok=True)
    return [*problems, f"removed {manifest} so that the fit resumes after its last valid pass"]


def _chunk_problem(chunk: Path, previous: dict | None) -> bool:
    from phasemake.core.artefact import read_artefact
    from phasemake.core.errors import ArtefactError

    try:
        arrays, _ = read_artefact(chunk, kind=CHUNK_KIND, versions=(CHUNK_VERSION,))
    except ArtefactError:
        return True
    return previous is not None and not np.array_equal(arrays["phi"], previous["next"])
