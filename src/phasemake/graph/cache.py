"""The content-addressed graph cache: ``{root}/graphs/{spec}.h5``."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import h5py

from phasemake.core.errors import ArtefactError, PhasemakeError
from phasemake.graph.build import DEFAULT_MAX_STATES, Graph, build_graph
from phasemake.graph.files import GRAPH_KIND, read_graph, write_graph
from phasemake.graph.model import Model
from phasemake.graph.spechash import spec_hash

__all__ = ["CacheEntry", "GraphCache"]

log = logging.getLogger(__name__)

_SPEC = re.compile(r"[0-9a-f]{32}")


class CacheEntry(NamedTuple):
    """One graph file in the cache, as listed by :meth:`GraphCache.entries`."""

    spec: str
    path: Path
    bytes: int
    model: str
    vertices: int
    edges: int
    params: dict[str, Any]


class GraphCache:
    """Graphs stored under their spec hash, and the traces derived from them (under
    ``traces/``); no automatic eviction.

    Parameters
    ----------
    root
        The cache directory (``cache/`` by default); may be shared by several workflows.

    Examples
    --------
    >>> import tempfile
    >>> from phasemake.models import kingman
    >>> cache = GraphCache(tempfile.mkdtemp())
    >>> g = cache.load_or_build(kingman, n=6)      # built and stored
    >>> g2 = cache.load_or_build(kingman, n=6)     # read back, verified
    >>> g2.n_vertices, len(cache.entries())
    (6, 1)
    """

    def __init__(self, root: str | os.PathLike[str] = "cache") -> None:
        self.root = Path(root)
        self.graph_dir = self.root / "graphs"
        self.trace_dir = self.root / "traces"

    def graph_path(self, spec: str) -> Path:
        """Where the graph of ``spec`` is stored."""
        return self.graph_dir / f"{spec}.h5"

    def load_or_build(
        self, model: Model, /, *, max_states: int = DEFAULT_MAX_STATES, **params: Any
    ) -> Graph:
        """Return the cached graph of ``model(**params)``, building and storing it if needed.

        A corrupt, foreign or outdated file is reported (logged as a warning) and rebuilt.
        """
        spec = spec_hash(model, **params)
        path = self.graph_path(spec)
        if path.exists():
            try:
                graph = read_graph(path, spec=spec)
            except ArtefactError as err:
                log.warning("%s; rebuilding", err)
            else:
                log.info("graph cache hit: %s", path)
                return graph
        graph = build_graph(model, max_states=max_states, **params)
        write_graph(graph, path)
        log.info("graph cache miss: built and wrote %s", path)
        return graph

    def discard_if_invalid(self, spec: str) -> str | None:
        """Verify the cached graph of ``spec``; delete it if invalid and return why."""
        path = self.graph_path(spec)
        if not path.exists():
            return None
        try:
            read_graph(path, spec=spec)
        except ArtefactError as err:
            path.unlink(missing_ok=True)
            return f"{err}; removed it so it is rebuilt"
        return None

    def entries(self) -> list[CacheEntry]:
        """All graph files, sorted by spec (headers only; no checksum verification)."""
        out = []
        for path in sorted(self.graph_dir.glob("*.h5")):
            model, vertices, edges, params = "?", -1, -1, {}
            try:
                with h5py.File(path, "r") as f:
                    if f.attrs.get("format") == GRAPH_KIND:
                        prov = json.loads(f.attrs.get("meta", "{}")).get("provenance", {})
                        model, params = prov.get("model", "?"), prov.get("params", {})
                        vertices, edges = f["states"].shape[0], f["edge_src"].shape[0]
            except (OSError, KeyError, ValueError):
                model = "<unreadable>"
            out.append(
                CacheEntry(path.stem, path, path.stat().st_size, model, vertices, edges, params)
            )
        return out

    def plan_path(self, spec: str) -> Path:
        """Where the work-unit plan of ``spec``'s trace is stored."""
        return self.trace_dir / spec / "plan.json"

    def unit_path(self, key: str) -> Path:
        """Where the work unit ``key`` is stored (shared by every graph that has it)."""
        return self.trace_dir / "units" / f"{key}.h5"

    def trace_files(self) -> tuple[list[Path], list[Path]]:
        """Stitched trace files and work-unit files."""
        traces = sorted(self.trace_dir.glob("*.h5"))
        units = sorted((self.trace_dir / "units").glob("*.h5"))
        return traces, units

    def verify(self) -> list[tuple[Path, str | None]]:
        """Verify every graph, plan, trace and unit file; ``(path, None)`` if valid, else why.

        Besides checksums and formats, each file must hold what its path names: a graph or
        a stitched trace the spec of its file name, a plan the spec of its folder, a unit
        the key of its file name.
        """
        from phasemake.trace.files import read_plan, read_trace_artefact, read_unit

        traces, units = self.trace_files()
        plans = sorted(self.trace_dir.glob("*/plan.json"))
        results = []
        for paths, read in (
            (sorted(self.graph_dir.glob("*.h5")), read_graph),
            (plans, read_plan),
            (traces, read_trace_artefact),
            (units, read_unit),
        ):
            for path in paths:
                try:
                    read(path)
                    results.append((path, None))
                except ArtefactError as err:
                    results.append((path, str(err)))
        return results

    def clear(self, specs: list[str] | None = None) -> list[Path]:
        """Delete the given specs' graphs, plans and traces (everything if ``None``).

        Work units are shared between graphs, so they are removed only by a full clear.

        Raises
        ------
        PhasemakeError
            If a spec is not 32 lowercase hex digits (``phasemake hash`` prints them): no
            path outside the cache directory, nor a whole folder of it, is ever deleted.
        """
        if specs is None:
            traces, units = self.trace_files()
            removed = sorted(self.graph_dir.glob("*.h5")) + traces + units
            shutil.rmtree(self.graph_dir, ignore_errors=True)
            shutil.rmtree(self.trace_dir, ignore_errors=True)
            return removed
        for spec in specs:
            if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
                raise PhasemakeError(
                    f"--spec {spec!r} is not a spec hash; expected exactly 32 hex digits "
                    "(0-9, a-f) as printed by `phasemake hash` or `phasemake cache stats`"
                )
        root = self.root.resolve()
        removed = []
        for spec in specs:
            plan_dir = self.trace_dir / spec
            for path in (self.graph_path(spec), self.trace_dir / f"{spec}.h5", plan_dir):
                if not path.resolve().is_relative_to(root):  # a link out of the cache
                    raise PhasemakeError(
                        f"{path} resolves to {path.resolve()}, outside the cache {root}; "
                        "remove it by hand"
                    )
            for path in (self.graph_path(spec), self.trace_dir / f"{spec}.h5"):
                if path.is_file():
                    path.unlink()
                    removed.append(path)
            if plan_dir.is_dir() and not plan_dir.is_symlink():
                removed += sorted(p for p in plan_dir.rglob("*") if p.is_file())
                shutil.rmtree(plan_dir)  # its plan
        return removed
