"""Graph files: HDF5 artefacts holding a :class:`~phasemake.graph.build.Graph`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from phasemake.core.artefact import read_artefact, write_artefact
from phasemake.core.errors import ArtefactError
from phasemake.graph.build import Graph
from phasemake.graph.spechash import GRAPH_FORMAT_VERSION

__all__ = ["GRAPH_KIND", "check_spec", "expected_spec", "read_graph", "write_graph"]

GRAPH_KIND = "phasemake.graph"

_SPEC_NAME = re.compile(r"[0-9a-f]{32}")


def expected_spec(path: str | os.PathLike[str], spec: str | None = None) -> str | None:
    """The spec a file must hold: ``spec`` if given, else its name's stem when that is a
    spec hash (32 hex digits: a content-addressed cache path), else ``None`` (no check).

    Examples
    --------
    >>> expected_spec("cache/graphs/" + "ab" * 16 + ".h5") == "ab" * 16
    True
    >>> expected_spec("g.h5") is None
    True
    """
    if spec is not None:
        return spec
    stem = Path(path).stem
    return stem if _SPEC_NAME.fullmatch(stem) else None


def check_spec(path: str | os.PathLike[str], found: Any, spec: str | None, what: str) -> None:
    """Raise :class:`ArtefactError` unless ``found`` (the spec recorded in the file at
    ``path``) is the spec expected of it (see :func:`expected_spec`).

    A foreign but valid file copied to a cache path is treated like a corrupt one: the
    message says what it holds, what was expected and that deleting it gets it rebuilt.
    """
    expected = expected_spec(path, spec)
    if expected is not None and found != expected:
        raise ArtefactError(
            f"{path} holds the {what} of spec {found}, but spec {expected} was expected "
            "(a foreign file at this cache path); delete it so it is rebuilt"
        )


def _smallest_int(arr: np.ndarray) -> np.ndarray:
    if arr.size == 0:
        return arr.astype(np.int8)
    lo, hi = int(arr.min()), int(arr.max())
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dt)
    return arr.astype(np.int64)


def write_graph(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` to ``path`` atomically (compact integer dtypes, checksummed).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from phasemake import build_graph, read_graph
    >>> from phasemake.models import kingman
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "g.h5"
    >>> write_graph(build_graph(kingman, n=5), path)
    >>> read_graph(path).n_vertices
    5
    """
    index_dtype = np.int32 if graph.n_vertices < 2**31 else np.int64
    arrays = {
        "states": _smallest_int(graph.states),
        "edge_src": graph.edge_src.astype(index_dtype),
        "edge_tgt": graph.edge_tgt.astype(index_dtype),
        "edge_coef": np.asarray(graph.edge_coef, dtype=np.float64),
        "init_index": graph.init_index.astype(np.int64),
        "init_prob": graph.init_prob.astype(np.float64),
    }
    meta: dict[str, Any] = {
        "parameters": list(graph.parameters),
        "provenance": graph.provenance,
    }
    write_artefact(path, kind=GRAPH_KIND, version=GRAPH_FORMAT_VERSION, arrays=arrays, meta=meta)


def read_graph(path: str | os.PathLike[str], *, spec: str | None = None) -> Graph:
    """Read and verify a graph file.

    Parameters
    ----------
    path
        The graph file.
    spec
        The spec hash the graph must have been built for; by default the file name's stem
        when that is a spec hash (``{cache}/graphs/{spec}.h5``), else nothing is checked.

    Raises
    ------
    phasemake.core.errors.ArtefactError
        If the file is missing, foreign, of another format version or corrupt, or holds the
        graph of another spec than expected.
    """
    arrays, meta = read_artefact(path, kind=GRAPH_KIND, versions=(GRAPH_FORMAT_VERSION,))
    check_spec(path, meta.get("provenance", {}).get("spec"), spec, "graph")
    return Graph(
        states=arrays["states"].astype(np.int64),
        edge_src=arrays["edge_src"].astype(np.int64),
        edge_tgt=arrays["edge_tgt"].astype(np.int64),
        edge_coef=arrays["edge_coef"],
        init_index=arrays["init_index"],
        init_prob=arrays["init_prob"],
        parameters=tuple(meta["parameters"]),
        provenance=dict(meta.get("provenance", {})),
    )
