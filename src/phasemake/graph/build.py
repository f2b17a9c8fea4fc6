"""State-space graphs and their breadth-first construction from a model callback."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order

from phasemake._version import __version__
from phasemake.core.errors import GraphBuildError
from phasemake.graph.model import Model, as_model
from phasemake.graph.spechash import GRAPH_FORMAT_VERSION, spec_hash

__all__ = ["DEFAULT_MAX_STATES", "Graph", "build_graph"]

log = logging.getLogger(__name__)

#: Default cap on the number of states explored by :func:`build_graph`.
DEFAULT_MAX_STATES = 2_000_000


@dataclass(frozen=True, eq=False)
class Graph:
    """A phase-type state-space graph.

    Attributes
    ----------
    states
        ``(V, d)`` int64 array; row ``i`` is the state of vertex ``i`` (breadth-first order).
    edge_src, edge_tgt
        ``(E,)`` int64 arrays of source and target vertices, sorted by (source, target),
        without duplicates or self-loops.
    edge_coef
        ``(E, p)`` float64 array of non-negative coefficients; the rate of edge ``e`` is
        ``edge_coef[e] @ theta``.
    init_index, init_prob
        The initial distribution: vertices and their probabilities.
    parameters
        The p parameter names, in coefficient-column order.
    provenance
        JSON-serialisable dict: spec hash, model name, construction params, phasemake
        version, graph-format version, dropped zero-rate edges. No timings: the same spec
        gives the same bytes, so a rebuild (or another workflow's) changes nothing
        downstream; the build time is in the build job's log and benchmark file.
    """

    states: np.ndarray
    edge_src: np.ndarray
    edge_tgt: np.ndarray
    edge_coef: np.ndarray
    init_index: np.ndarray
    init_prob: np.ndarray
    parameters: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        """Number of vertices V."""
        return int(self.states.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of edges E."""
        return int(self.edge_src.shape[0])

    @property
    def absorbing(self) -> np.ndarray:
        """Boolean mask of absorbing vertices (no outgoing edge)."""
        mask = np.ones(self.n_vertices, dtype=bool)
        mask[self.edge_src] = False
        return mask

    def index_of(self, state: Any) -> int:
        """Vertex index of ``state``; raises ``KeyError`` if it is not in the graph."""
        row = np.asarray(state, dtype=np.int64)
        hits = np.flatnonzero((self.states == row).all(axis=1))
        if hits.size == 0:
            raise KeyError(f"state {row.tolist()} is not in the graph")
        return int(hits[0])

    def rates(self, theta: Any) -> np.ndarray:
        """Edge rates ``edge_coef @ theta`` for a parameter vector of length p."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (len(self.parameters),):
            raise ValueError(
                f"theta has shape {theta.shape}; expected ({len(self.parameters)},) for "
                f"parameters {list(self.parameters)}"
            )
        return self.edge_coef @ theta

    def summary(self) -> str:
        """A one-line human-readable description."""
        return (
            f"{self.provenance.get('model', 'graph')}: {self.n_vertices} vertices, "
            f"{self.n_edges} edges, {int(self.absorbing.sum())} absorbing, "
            f"parameters {list(self.parameters)}"
        )


def build_graph(model: Model, /, *, max_states: int = DEFAULT_MAX_STATES, **params: Any) -> Graph:
    """Explore a model's state space breadth-first and return its graph.

    Every transition is validated: next states must have the state length, coefficients
    must be finite and non-negative (so rates are non-negative for every θ ≥ 0) and there
    must be no self-loops. Edges whose coefficients are all zero are dropped (and states
    reachable only through them are not part of the graph); duplicate edges are merged by
    summing their coefficients.

    Parameters
    ----------
    model
        A model declared with :func:`phasemake.model`.
    max_states
        Cap on the number of states; exceeding it raises :class:`GraphBuildError`.
        (``max_states`` is therefore reserved and cannot be a construction param.)
    **params
        Construction params passed to the callback and the initial distribution.

    Returns
    -------
    Graph

    Examples
    --------
    >>> from phasemake.models import kingman
    >>> g = build_graph(kingman, n=4)
    >>> g.states.ravel().tolist(), g.edge_coef.ravel().tolist()
    ([4, 3, 2, 1], [6.0, 3.0, 1.0])
    """
    model = as_model(model)
    if not isinstance(max_states, int) or max_states < 1:
        raise GraphBuildError(f"max_states={max_states!r}; expected a positive integer")
    t0 = time.perf_counter()
    spec = spec_hash(model, **params)
    p = len(model.parameters)
    initial = model.initial_distribution(**params)
    d = len(initial[0][0])
    states: list[tuple] = [s for s, _ in initial]
    index: dict[tuple, int] = {s: i for i, s in enumerate(states)}
    if len(states) > max_states:
        raise GraphBuildError(_cap_message(model, max_states, len(states), params))
    counts: list[int] = []  # transitions returned per explored state
    tgt: list[int] = []
    coef: list[Any] = []
    tgt_append, coef_append, lookup = tgt.append, coef.append, index.get
    callback = model.callback
    ndarray = np.ndarray
    next_report = t0 + 5.0
    q = 0
    while q < len(states):
        current = np.array(states[q], dtype=np.int64)
        current.flags.writeable = False
        try:
            transitions = callback(current, **params)
        except Exception as err:
            raise GraphBuildError(
                f"model {model.name!r} raised {type(err).__name__}: {err} for state "
                f"{list(states[q])}"
            ) from err
        before = len(tgt)
        try:
            for ns, c in transitions:
                key = tuple(ns.tolist()) if type(ns) is ndarray else tuple(ns)
                v = lookup(key)
                if v is None:
                    v = len(states)
                    if len(key) != d:
                        raise GraphBuildError(
                            f"model {model.name!r}: transition {list(states[q])} -> "
                            f"{list(key)} has a next state of length {len(key)}; every "
                            f"state has length {d}"
                        )
                    if v >= max_states:
                        raise GraphBuildError(_cap_message(model, max_states, v, params))
                    index[key] = v
                    states.append(key)
                tgt_append(v)
                coef_append(c)
        except GraphBuildError:
            raise
        except (TypeError, ValueError):
            raise GraphBuildError(
                f"model {model.name!r} returned {transitions!r:.300} for state "
                f"{list(states[q])}; expected a list of (next_state, coefficients) pairs, "
                "next_state an integer sequence, or [] for an absorbing state"
            ) from None
        counts.append(len(tgt) - before)
        q += 1
        if q % 4096 == 0 and time.perf_counter() > next_report:
            next_report += 5.0
            log.info("%s: %d states explored, %d discovered", model.name, q, len(states))
    src = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    explore_s = time.perf_counter() - t0
    graph = _finalise(model, states, src, tgt, coef, initial, p, params)
    build_s = time.perf_counter() - t0
    graph.provenance.update(
        spec=spec,
        graph_format_version=GRAPH_FORMAT_VERSION,
    )
    log.info("built %s in %.3f s (%.3f s exploring)", graph.summary(), build_s, explore_s)
    return graph


def _cap_message(model: Model, cap: int, n: int, params: dict[str, Any]) -> str:
    return (
        f"model {model.name!r} with params {params!r} has more than max_states={cap} "
        f"states ({n} discovered so far); raise max_states (config key "
        "models.<name>.max_states) if the state space is finite and fits in memory, or "
        "reduce the construction params"
    )


def _int_states(model: Model, states: list[tuple]) -> np.ndarray:
    try:
        arr = np.array(states)
    except (TypeError, ValueError) as err:
        raise GraphBuildError(f"model {model.name!r} produced non-numeric states: {err}") from None
    if arr.size and arr.dtype.kind not in "iub":
        bad = None
        if arr.dtype.kind == "f":
            mask = ~(np.isfinite(arr) & (arr == np.round(arr))).all(axis=1)
            bad = int(np.flatnonzero(mask)[0]) if mask.any() else None
        else:
            bad = 0
        if bad is not None:
            raise GraphBuildError(
                f"model {model.name!r} produced state {list(states[bad])}; states must be "
                "integer vectors"
            )
    return arr.astype(np.int64).reshape(len(states), -1)


def _coefficients(model: Model, coef: list[Any], p: int, src, tgt, states) -> np.ndarray:
    try:
        arr = np.asarray(coef, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim == 1 and p == 1:
        arr = arr[:, None]
    if arr is None or arr.shape != (len(coef), p):
        for e, c in enumerate(coef):
            ok = (np.ndim(c) == 1 and len(c) == p) or (p == 1 and np.ndim(c) == 0)
            if not ok:
                raise GraphBuildError(
                    f"model {model.name!r}: transition {list(states[src[e]])} -> "
                    f"{list(states[tgt[e]])} has coefficients {c!r}; expected a vector of "
                    f"length {p} (one per parameter {list(model.parameters)})"
                )
        raise GraphBuildError(f"model {model.name!r} produced non-numeric coefficients")
    bad = ~np.isfinite(arr).all(axis=1) | (arr < 0).any(axis=1)
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        raise GraphBuildError(
            f"model {model.name!r}: transition {list(states[src[e]])} -> "
            f"{list(states[tgt[e]])} has coefficients {arr[e].tolist()}; coefficients must "
            "be finite and non-negative so that every rate is non-negative for θ ≥ 0"
        )
    return arr


def _finalise(model, states, src, tgt, coef, initial, p, params) -> Graph:
    states_arr = _int_states(model, states)
    src_arr = src
    tgt_arr = np.asarray(tgt, dtype=np.int64)
    coef_arr = _coefficients(model, coef, p, src, tgt, states)
    loops = src_arr == tgt_arr
    if loops.any():
        e = int(np.flatnonzero(loops)[0])
        raise GraphBuildError(
            f"model {model.name!r}: state {list(states[src[e]])} has a transition to itself; "
            "self-loops do not change the process — leave them out"
        )
    keep = (coef_arr != 0).any(axis=1)
    n_zero = int((~keep).sum())
    src_arr, tgt_arr, coef_arr = src_arr[keep], tgt_arr[keep], coef_arr[keep]
    n_init = len(initial)
    if n_zero:
        states_arr, src_arr, tgt_arr, kept = _prune_unreachable(
            states_arr, src_arr, tgt_arr, n_init
        )
        coef_arr = coef_arr[kept]
    order = np.lexsort((tgt_arr, src_arr))
    src_arr, tgt_arr, coef_arr = src_arr[order], tgt_arr[order], coef_arr[order]
    if src_arr.size:
        new = np.ones(src_arr.size, dtype=bool)
        new[1:] = (src_arr[1:] != src_arr[:-1]) | (tgt_arr[1:] != tgt_arr[:-1])
        starts = np.flatnonzero(new)
        coef_arr = np.add.reduceat(coef_arr, starts, axis=0)
        src_arr, tgt_arr = src_arr[starts], tgt_arr[starts]
    return Graph(
        states=states_arr,
        edge_src=src_arr,
        edge_tgt=tgt_arr,
        edge_coef=np.ascontiguousarray(coef_arr),
        init_index=np.arange(n_init, dtype=np.int64),
        init_prob=np.array([prob for _, prob in initial], dtype=np.float64),
        parameters=tuple(model.parameters),
        provenance={
            "model": model.name,
            "params": _jsonable(params),
            "phasemake_version": __version__,
            "zero_rate_edges_dropped": n_zero,
        },
    )


def _prune_unreachable(states, src, tgt, n_init):
    """Drop vertices reachable only through dropped zero-rate edges, keeping BFS order."""
    n = states.shape[0]
    adj = csr_matrix((np.ones(src.size), (src, tgt)), shape=(n + 1, n + 1))
    root = n  # virtual root pointing at every initial vertex
    extra = csr_matrix(
        (np.ones(n_init), (np.full(n_init, root), np.arange(n_init))), shape=(n + 1, n + 1)
    )
    reached = breadth_first_order(adj + extra, root, return_predecessors=False)
    mask = np.zeros(n + 1, dtype=bool)
    mask[reached] = True
    mask = mask[:n]
    keep = mask[src]
    if mask.all():
        return states, src, tgt, keep
    remap = np.cumsum(mask) - 1
    return states[mask], remap[src[keep]], remap[tgt[keep]], keep


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
