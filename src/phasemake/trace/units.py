"""Elimination traces: the θ-free structure of a graph's linear systems, as typed arrays.

A trace renumbers the vertices so that the strongly connected components (SCCs) come in
topological *levels* counted from absorption (level 0: absorbing vertices; level ℓ: SCCs
whose successors all lie in levels < ℓ). Within a level, single-vertex components come first,
then multi-vertex components grouped by size; vertices are sorted by state inside each group,
so the lowest levels of related graphs (e.g. the same lineage counts at different sample
sizes) get identical numbering and identical work units.

For any θ the evaluator (:mod:`phasemake.trace.evaluator`) solves ``(-S) x = r`` level by level:
a single vertex is one division, a component of size m one dense m×m solve (batched over the
components of a level that have the same size). Nothing here depends on θ.

Recording is split into **work units**: contiguous ranges of levels sized by estimated cost
(edges + Σ m³ over components). Each unit's arrays are keyed by a content hash of the unit's
own structure; :func:`stitch_units` assembles a full trace from units.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from phasemake.core.errors import GraphBuildError
from phasemake.graph.build import Graph

__all__ = [
    "DEFAULT_UNIT_COST",
    "Layout",
    "UnitPlan",
    "initial_distribution",
    "layout_graph",
    "plan_units",
    "record_trace_arrays",
    "record_unit",
    "stitch_units",
]

#: Default target cost of one work unit (edges + Σ m³): a unit job lays out the whole graph
#: whatever its unit's size, so only graphs too large for one job are split.
DEFAULT_UNIT_COST = 50_000_000

#: Largest strongly connected component solved densely.
MAX_COMPONENT_SIZE = 4096


class Layout(NamedTuple):
    """The level structure of a graph (θ-free)."""

    order: np.ndarray  # trace position -> graph vertex
    position: np.ndarray  # graph vertex -> trace position
    level_vptr: np.ndarray  # (L+1,) vertex offsets of levels
    vertex_level: np.ndarray  # trace position -> level
    comp_size: np.ndarray  # trace position -> size of its component
    comp_id: np.ndarray  # trace position -> component id (dense, by position)


class UnitPlan(NamedTuple):
    """One work unit: levels ``[level_start, level_stop)`` and its content key."""

    index: int
    level_start: int
    level_stop: int
    vertices: int
    edges: int
    cost: int
    key: str


def _levels(n_comp: int, csrc: np.ndarray, ctgt: np.ndarray) -> np.ndarray:
    """Height of each node of a DAG (0 for sinks), by peeling sinks level by level."""
    outdeg = np.bincount(csrc, minlength=n_comp)
    rev = csr_matrix((np.ones(csrc.size, dtype=np.int64), (ctgt, csrc)), shape=(n_comp, n_comp))
    level = np.full(n_comp, -1, dtype=np.int64)
    frontier = np.flatnonzero(outdeg == 0)
    h = 0
    while frontier.size:
        level[frontier] = h
        preds = rev[frontier].indices  # with multiplicity: one per edge into the frontier
        np.subtract.at(outdeg, preds, 1)
        cand = np.unique(preds)
        frontier = cand[outdeg[cand] == 0]
        h += 1
    return level


def layout_graph(graph: Graph) -> Layout:
    """Compute the level layout of ``graph`` (components, levels and vertex order).

    Raises
    ------
    GraphBuildError
        If some states form a closed class with no path to absorption (E[T] = ∞), or a
        component exceeds :data:`MAX_COMPONENT_SIZE`.
    """
    n = graph.n_vertices
    src, tgt = graph.edge_src, graph.edge_tgt
    adj = csr_matrix((np.ones(src.size), (src, tgt)), shape=(n, n))
    n_comp, labels = connected_components(adj, directed=True, connection="strong")
    labels = labels.astype(np.int64)  # int32 from SciPy: label · n_comp overflows past 46,340
    cross = labels[src] != labels[tgt]
    pairs = np.unique(labels[src[cross]] * n_comp + labels[tgt[cross]])
    csrc, ctgt = pairs // n_comp, pairs % n_comp
    comp_level = _levels(n_comp, csrc, ctgt)
    size = np.bincount(labels, minlength=n_comp)
    transient_comp = np.zeros(n_comp, dtype=bool)
    transient_comp[labels[~graph.absorbing]] = True
    sinks = np.flatnonzero(comp_level == 0)
    closed = sinks[transient_comp[sinks]]
    if closed.size:
        members = np.flatnonzero(labels == closed[0])[:5]
        raise GraphBuildError(
            f"states {graph.states[members].tolist()} form a closed class with no path to "
            "absorption, so absorption times are infinite; add a transition out of them"
        )
    if size.max(initial=0) > MAX_COMPONENT_SIZE:
        big = int(np.argmax(size))
        raise GraphBuildError(
            f"a strongly connected component has {size[big]} states (more than "
            f"{MAX_COMPONENT_SIZE}); its dense solve would be too costly — restructure the "
            "model so that cycles span fewer states"
        )
    vlevel, vsize = comp_level[labels], size[labels]
    # components of one size inside a level are ordered by their smallest state
    comp_first = np.full(n_comp, n, dtype=np.int64)
    state_rank = np.empty(n, dtype=np.int64)
    state_rank[np.lexsort(graph.states.T[::-1])] = np.arange(n)
    np.minimum.at(comp_first, labels, state_rank)
    order = np.lexsort((state_rank, comp_first[labels], vsize, vlevel))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    levels = vlevel[order]
    level_vptr = np.searchsorted(levels, np.arange(levels.max(initial=0) + 2))
    comp_of_pos = labels[order]
    new_comp = np.ones(n, dtype=bool)
    new_comp[1:] = comp_of_pos[1:] != comp_of_pos[:-1]
    return Layout(
        order=order,
        position=position,
        level_vptr=level_vptr,
        vertex_level=levels,
        comp_size=vsize[order],
        comp_id=np.cumsum(new_comp) - 1,
    )


def _level_edge_order(graph: Graph, layout: Layout) -> tuple[np.ndarray, ...]:
    """Edges in trace numbering, sorted by (level, internal, src, tgt)."""
    src = layout.position[graph.edge_src]
    tgt = layout.position[graph.edge_tgt]
    internal = layout.comp_id[src] == layout.comp_id[tgt]
    level = layout.vertex_level[src]
    perm = np.lexsort((tgt, src, internal, level))
    return src[perm], tgt[perm], graph.edge_coef[perm], internal[perm], level[perm]


def _unit_cost(layout: Layout, edge_level: np.ndarray) -> np.ndarray:
    """Estimated cost per level: edges + Σ m³ of its components (m > 1)."""
    n_levels = layout.level_vptr.size - 1
    cost = np.bincount(edge_level, minlength=n_levels).astype(np.int64)
    big = layout.comp_size > 1
    # each vertex of a size-m component carries m² of its component's m³
    np.add.at(cost, layout.vertex_level[big], layout.comp_size[big].astype(np.int64) ** 2)
    return cost + 1


def plan_units(
    graph: Graph, *, max_unit_cost: int = DEFAULT_UNIT_COST
) -> tuple[Layout, list[UnitPlan]]:
    """Split the graph's levels into work units of at most ``max_unit_cost`` (or one level).

    Returns the layout and the units in level order, each with its content key.

    Examples
    --------
    >>> from phasemake import build_graph
    >>> from phasemake.models import kingman
    >>> layout, units = plan_units(build_graph(kingman, n=5))
    >>> len(units), units[0].level_start, units[-1].level_stop
    (1, 0, 5)
    """
    if max_unit_cost < 1:
        raise ValueError(f"max_unit_cost={max_unit_cost}; expected a positive integer")
    layout = layout_graph(graph)
    edges = _level_edge_order(graph, layout)
    cost = _unit_cost(layout, edges[4])
    bounds = [0]
    acc = 0
    for lvl, c in enumerate(cost.tolist()):
        if acc and acc + c > max_unit_cost:
            bounds.append(lvl)
            acc = 0
        acc += c
    bounds.append(cost.size)
    units = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        arrays = _unit_arrays(graph, layout, edges, a, b)
        units.append(
            UnitPlan(
                index=i,
                level_start=a,
                level_stop=b,
                vertices=int(arrays["states"].shape[0]),
                edges=int(arrays["edge_src"].size),
                cost=int(cost[a:b].sum()),
                key=unit_key(arrays),
            )
        )
    return layout, units


def initial_distribution(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The initial distribution of a stitched trace, in trace vertex order (V,).

    Examples
    --------
    >>> arrays = {"order": np.arange(3), "init_pos": np.array([2]), "init_prob": np.array([1.0])}
    >>> initial_distribution(arrays).tolist()
    [0.0, 0.0, 1.0]
    """
    alpha = np.zeros(int(arrays["order"].size))
    np.add.at(alpha, arrays["init_pos"], arrays["init_prob"])
    return alpha


def unit_key(arrays: dict[str, np.ndarray]) -> str:
    """Content hash of a unit's arrays (32 hex characters)."""
    h = hashlib.sha256(b"phasemake-trace-unit-v1")
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(memoryview(arr).cast("B") if arr.nbytes else b"")
    return h.hexdigest()[:32]


def _unit_arrays(graph, layout, edges, level_start, level_stop) -> dict[str, np.ndarray]:
    src, tgt, coef, internal, level = edges
    vptr = layout.level_vptr
    v0, v1 = int(vptr[level_start]), int(vptr[level_stop])
    e0, e1 = np.searchsorted(level, [level_start, level_stop])
    lv_edges = level[e0:e1]
    lv_int = internal[e0:e1]
    levels = np.arange(level_start, level_stop)
    eptr = e0 + np.searchsorted(lv_edges, levels)
    iptr = e0 + np.searchsorted(lv_edges * 2 + lv_int, levels * 2 + 1)
    # groups: (level, m, count, vstart, istart, iend) for components of size m > 1
    groups = []
    for lvl in levels.tolist():
        a, b = int(vptr[lvl]), int(vptr[lvl + 1])
        sizes = layout.comp_size[a:b]
        for m in np.unique(sizes[sizes > 1]).tolist():
            idx = a + np.flatnonzero(sizes == m)
            gs, ge = int(idx[0]), int(idx[-1]) + 1
            sel = np.flatnonzero(lv_int & (src[e0:e1] >= gs) & (src[e0:e1] < ge)) + e0
            i_start, i_end = (int(sel[0]), int(sel[-1]) + 1) if sel.size else (0, 0)
            groups.append((lvl, m, (ge - gs) // m, gs, i_start, i_end))
    return {
        "vertex_range": np.array([v0, v1], dtype=np.int64),
        "level_range": np.array([level_start, level_stop], dtype=np.int64),
        "states": graph.states[layout.order[v0:v1]],
        "level_vptr": vptr[level_start : level_stop + 1].astype(np.int64),
        "level_eptr": np.append(eptr, e1).astype(np.int64),
        "level_iptr": iptr.astype(np.int64),
        "edge_src": src[e0:e1],
        "edge_tgt": tgt[e0:e1],
        "edge_coef": coef[e0:e1],
        "groups": np.array(groups, dtype=np.int64).reshape(-1, 6),
    }


def record_unit(graph: Graph, unit: UnitPlan) -> dict[str, np.ndarray]:
    """Record one work unit's arrays (edge and group indices are global trace positions)."""
    layout = layout_graph(graph)
    edges = _level_edge_order(graph, layout)
    arrays = _unit_arrays(graph, layout, edges, unit.level_start, unit.level_stop)
    key = unit_key(arrays)
    if key != unit.key:
        raise ValueError(
            f"unit {unit.index} of this graph hashes to {key}, not to the planned {unit.key}; "
            "the plan is stale — re-plan the trace"
        )
    return arrays


def stitch_units(
    graph: Graph, units: Sequence[dict[str, np.ndarray]], *, layout: Layout | None = None
) -> dict[str, Any]:
    """Assemble a full trace from its units (in level order) and the graph.

    Edge indices in units are global positions, so stitching concatenates and re-bases the
    edge pointers; the units' states are checked against the graph's layout (computed
    unless given).
    """
    layout = layout_graph(graph) if layout is None else layout
    vstart, lstart, estart = 0, 0, 0
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("src", "tgt", "coef", "groups")}
    vptr, eptr, iptr = [], [], []
    for i, u in enumerate(units):
        v0, v1 = u["vertex_range"].tolist()
        l0, l1 = u["level_range"].tolist()
        if v0 != vstart or l0 != lstart:
            raise ValueError(
                f"unit {i} starts at vertex {v0}/level {l0}, expected {vstart}/{lstart}"
            )
        if not np.array_equal(u["states"], graph.states[layout.order[v0:v1]]):
            raise ValueError(f"unit {i} does not match this graph's states; re-record it")
        shift = estart - (int(u["level_eptr"][0]) if u["level_eptr"].size else 0)
        vptr.append(u["level_vptr"][:-1])
        eptr.append(u["level_eptr"][:-1] + shift)
        iptr.append(u["level_iptr"] + shift)
        g = u["groups"].copy()
        g[:, 4:] += shift
        parts["groups"].append(g)
        parts["src"].append(u["edge_src"])
        parts["tgt"].append(u["edge_tgt"])
        parts["coef"].append(u["edge_coef"])
        vstart, lstart, estart = v1, l1, estart + u["edge_src"].size
    if vstart != graph.n_vertices or estart != graph.n_edges:
        raise ValueError(
            f"units cover {vstart} of {graph.n_vertices} vertices and {estart} of "
            f"{graph.n_edges} edges; a unit is missing"
        )
    p = len(graph.parameters)
    return {
        "order": layout.order.astype(np.int64),
        "level_vptr": np.concatenate([*vptr, [vstart]]).astype(np.int64),
        "level_eptr": np.concatenate([*eptr, [estart]]).astype(np.int64),
        "level_iptr": np.concatenate(iptr).astype(np.int64),
        "edge_src": np.concatenate(parts["src"]).astype(np.int64),
        "edge_tgt": np.concatenate(parts["tgt"]).astype(np.int64),
        "edge_coef": np.concatenate(parts["coef"]).reshape(-1, p).astype(np.float64),
        "groups": np.concatenate(parts["groups"]).reshape(-1, 6).astype(np.int64),
        "init_pos": layout.position[graph.init_index].astype(np.int64),
        "init_prob": graph.init_prob.astype(np.float64),
    }


def record_trace_arrays(
    graph: Graph, *, max_unit_cost: int = DEFAULT_UNIT_COST
) -> tuple[dict[str, Any], list[UnitPlan]]:
    """Plan, record every unit and stitch, in one process: the trace arrays and the plan."""
    layout, units = plan_units(graph, max_unit_cost=max_unit_cost)
    edges = _level_edge_order(graph, layout)
    recorded = [_unit_arrays(graph, layout, edges, u.level_start, u.level_stop) for u in units]
    return stitch_units(graph, recorded, layout=layout), units
