"""Trace and work-unit files, and the in-process ``compile_trace``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phasemake.core.artefact import atomic_path, read_artefact, write_artefact
from phasemake.core.errors import ArtefactError
from phasemake.graph.build import Graph
from phasemake.graph.files import check_spec, expected_spec
from phasemake.trace.lumpstore import LUMP_KEYS, check_lumping, lumping_arrays
from phasemake.trace.units import (
    DEFAULT_UNIT_COST,
    UnitPlan,
    record_trace_arrays,
    record_unit,
    stitch_units,
    unit_key,
)

if TYPE_CHECKING:
    from phasemake.trace.evaluator import Trace

log = logging.getLogger(__name__)

__all__ = [
    "TRACE_FORMAT_VERSION",
    "UNIT_FORMAT_VERSION",
    "claim_path",
    "claim_unit",
    "compile_trace",
    "load_trace",
    "read_claim",
    "read_plan",
    "read_trace_artefact",
    "read_unit",
    "stitch_trace_files",
    "trace_meta",
    "unit_is_recorded",
    "write_plan",
    "write_trace",
    "write_unit",
]

TRACE_KIND = "phasemake.trace"
UNIT_KIND = "phasemake.trace_unit"
#: Stitched trace files. Version 2 records the trace's lumping (:mod:`phasemake.trace.lumpstore`);
#: version-1 files are still read (their lumping is found on first use).
TRACE_FORMAT_VERSION = 2
#: Trace versions :func:`read_trace_artefact` reads.
TRACE_FORMAT_VERSIONS = (1, TRACE_FORMAT_VERSION)
#: Work-unit files and plans (unchanged by trace version 2: cached units stay valid).
UNIT_FORMAT_VERSION = 1


def trace_meta(graph: Graph, units: list[UnitPlan]) -> dict[str, Any]:
    return {
        "parameters": list(graph.parameters),
        "provenance": {
            "spec": graph.provenance.get("spec"),
            "model": graph.provenance.get("model"),
            "vertices": graph.n_vertices,
            "edges": graph.n_edges,
            "units": [u.key for u in units],
        },
    }


def compile_trace(
    graph: Graph, *, max_unit_cost: int = DEFAULT_UNIT_COST, walk: str = "auto"
) -> Trace:
    """Plan, record every work unit and stitch them into a :class:`Trace`, in one process.

    The workflow does the same through files (one job per unit); both give identical arrays.
    ``walk`` is how the solves walk the levels (see :class:`Trace`).

    Examples
    --------
    >>> import phasemake
    >>> from phasemake.models import block_counting
    >>> trace = phasemake.compile_trace(phasemake.build_graph(block_counting, n=4))
    >>> rewards = trace_rewards = phasemake.build_graph(block_counting, n=4).states[:, :3]
    >>> [round(float(v), 12) for v in trace.expectation([1.0], rewards)]   # 2/i
    [2.0, 1.0, 0.666666666667]
    """
    from phasemake.trace.evaluator import Trace

    arrays, units = record_trace_arrays(graph, max_unit_cost=max_unit_cost)
    meta = trace_meta(graph, units)
    return Trace(arrays, parameters=graph.parameters, provenance=meta["provenance"], walk=walk)


def write_trace(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], path: str | os.PathLike[str]
) -> None:
    """Write stitched trace arrays atomically, versioned and checksummed, with their
    lumping (:mod:`phasemake.trace.lumpstore`).

    The lumping is found here, from these arrays (any ``lump_*`` arrays passed in are
    replaced), so a trace file's lumping is always its own trace's; whether the trace lumps
    or not is recorded, and no job that loads the file searches for it again.
    """
    from phasemake.trace.lumping import lump_trace

    trace = {name: a for name, a in arrays.items() if name not in LUMP_KEYS}
    trace.update(lumping_arrays(lump_trace(trace)))
    write_artefact(path, kind=TRACE_KIND, version=TRACE_FORMAT_VERSION, arrays=trace, meta=meta)


def load_trace(
    path: str | os.PathLike[str],
    *,
    spec: str | None = None,
    parameters: tuple[str, ...] | list[str] | None = None,
    walk: str = "auto",
) -> Trace:
    """Load and verify a stitched trace file.

    Parameters
    ----------
    path
        The trace file.
    spec
        The spec hash of the graph the trace must have been stitched from; by default the
        file name's stem when that is a spec hash (``{cache}/traces/{spec}.h5``).
    parameters
        The model parameters the trace must have, if given.
    walk
        How the solves walk the levels (see :class:`~phasemake.trace.evaluator.Trace`).

    Raises
    ------
    phasemake.core.errors.ArtefactError
        If the file is missing, foreign, of another format version or corrupt, holds the
        trace of another graph (spec) or other parameters than expected, or a lumping that
        does not fit its trace.
    """
    from phasemake.trace.evaluator import Trace

    arrays, meta = read_trace_artefact(path, spec=spec, parameters=parameters)
    return Trace(
        arrays, parameters=tuple(meta["parameters"]), provenance=meta["provenance"], walk=walk
    )


def read_trace_artefact(
    path: str | os.PathLike[str],
    *,
    spec: str | None = None,
    parameters: tuple[str, ...] | list[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of a stitched trace file, verified (checksum, the spec of its
    graph, its parameters) as :func:`load_trace` does, without building a
    :class:`~phasemake.trace.evaluator.Trace` (no JAX); the stored lumping's shapes are
    checked against the trace (a version-1 file has none)."""
    arrays, meta = read_artefact(path, kind=TRACE_KIND, versions=TRACE_FORMAT_VERSIONS)
    check_spec(path, meta.get("provenance", {}).get("spec"), spec, "trace")
    check_lumping(arrays, path)
    if parameters is not None and list(meta.get("parameters", [])) != list(parameters):
        raise ArtefactError(
            f"{path} is a trace with parameters {meta.get('parameters')}, but the model has "
            f"{list(parameters)}; delete it so it is rebuilt"
        )
    return arrays, meta


def write_unit(arrays: dict[str, np.ndarray], path: str | os.PathLike[str]) -> str:
    """Write a work unit's arrays atomically; returns its content key."""
    key = unit_key(arrays)
    write_artefact(
        path, kind=UNIT_KIND, version=UNIT_FORMAT_VERSION, arrays=arrays, meta={"key": key}
    )
    return key


def unit_is_recorded(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` already holds its valid unit (named by its content key, checksum
    verified). Snakemake re-runs a job whose output it marked incomplete (an interrupted
    run, then ``--rerun-incomplete``) although the unit may have been written in full: its
    job then keeps the file instead of recording the unit again.

    Examples
    --------
    >>> unit_is_recorded("/nonexistent/0123.h5")
    False
    """
    try:
        read_unit(path)
    except ArtefactError:
        return False
    return True


def read_unit(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a work unit, verifying its checksum and that its content matches its key."""
    arrays, meta = read_artefact(path, kind=UNIT_KIND, versions=(UNIT_FORMAT_VERSION,))
    key = unit_key(arrays)
    if key != meta.get("key") or Path(path).stem != key:
        raise ArtefactError(
            f"{path} holds unit {key}, but is named/recorded as {Path(path).stem}/"
            f"{meta.get('key')}; delete it so it is recomputed"
        )
    return arrays


def stitch_trace_files(
    graph: Graph, units: list[UnitPlan], paths: list[str | os.PathLike[str]]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read unit files (in plan order) and stitch them; re-record any invalid unit.

    A unit file that fails verification is reported (logged as a warning), recomputed from
    the graph and rewritten atomically, so one corrupt file never poisons the trace.
    """
    recorded = []
    for unit, path in zip(units, paths, strict=True):
        try:
            recorded.append(read_unit(path))
        except ArtefactError as err:
            log.warning("%s; recomputing unit %s", err, unit.key)
            arrays = record_unit(graph, unit)
            write_unit(arrays, path)
            recorded.append(arrays)
    return stitch_units(graph, recorded), trace_meta(graph, units)


def claim_path(units_dir: str | os.PathLike[str], key: str) -> Path:
    """The claim manifest of unit ``key``: ``{units_dir}/{key}.source.json``."""
    return Path(units_dir) / f"{key}.source.json"


def read_claim(units_dir: str | os.PathLike[str], key: str) -> dict[str, Any]:
    """The claim manifest of unit ``key`` written by :func:`claim_unit`: the ``graph`` the
    unit is recorded from, the ``plan`` that claimed it first, and that plan's ``entry``."""
    return json.loads(claim_path(units_dir, key).read_text())


def claim_unit(unit: UnitPlan, *, units_dir: str | os.PathLike[str], graph: str, plan: str) -> Path:
    """Record which graph a unit is recorded from, unless another plan claimed it first.

    The manifest ``{units_dir}/{key}.source.json`` is created exclusively and never
    rewritten, so the unit's job keeps the same inputs however many graphs share it.
    """
    folder = Path(units_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = claim_path(folder, unit.key)
    if final.exists():
        return final
    payload = {"graph": str(graph), "plan": str(plan), "entry": unit._asdict()}
    tmp = folder / f".{unit.key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    try:
        os.link(tmp, final)  # atomic and exclusive: the first plan wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_plan(units: list[UnitPlan], meta: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the work-unit plan as JSON (atomically)."""
    payload = {"format": "phasemake.trace_plan", "format_version": UNIT_FORMAT_VERSION, **meta}
    payload["units"] = [u._asdict() for u in units]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))


def read_plan(
    path: str | os.PathLike[str], *, spec: str | None = None
) -> tuple[list[UnitPlan], dict[str, Any]]:
    """Read a plan written by :func:`write_plan`.

    The plan must record ``spec`` if given, else the name of its folder when that is a spec
    hash (``{cache}/traces/{spec}/plan.json``); a plan of another graph raises
    :class:`~phasemake.core.errors.ArtefactError`.
    """
    try:
        payload = json.loads(Path(path).read_text())
        if not isinstance(payload, dict) or payload.get("format") != "phasemake.trace_plan":
            raise ValueError("not a phasemake trace plan")
        units = [UnitPlan(**u) for u in payload.pop("units")]
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise ArtefactError(f"{path} is not a valid trace plan ({err}); delete it") from None
    expected = expected_spec(Path(path).parent, spec)  # the folder is named by the spec
    check_spec(path, payload.get("spec"), expected, "trace plan")
    return units, payload
