"""Level solves compiled once per shape: the stacked plan of the evaluator.

The evaluator's solves (:mod:`phasemake.trace.evaluator`) walk the topological levels of
the trace, one dense solve per cyclic component. Unrolled, every level is a program of its
own, and XLA's compile time grows with the number of levels that hold a cyclic component
(about 0.2 s each: 20 s for the two-deme model at n = 100, where every one of its 99
levels is one component, of sizes 3 to 101).

The stacked plan cuts each level into *pieces* (its single vertices; each group of
equal-size components) and sorts the pieces into a few *buckets* of one padded shape:
components of size ``m`` are solved as blocks of size ``M ≥ m`` (padded with the identity),
a piece's edges as ``NE ≥ ne`` entries (padded with zero rates). One ``lax.scan`` walks the
pieces in level order and ``lax.switch`` runs the bucket's program, so XLA compiles one
program per bucket, not per level. The component sizes of the buckets are chosen to
minimise the padded cost (``a + b M³`` per dense solve, dynamic programming over the
sorted sizes) with ``1.5 log2(k + 1)`` to ``2 log2(k + 1)`` size classes for k pieces
with cyclic components: compile time grows with the logarithm of the number of levels,
and the padding adds at most 12% to the modelled cost of the solves (:data:`PADDING`).

Padded slots read and write one spare vertex (index ``V``) whose value is reset to 0 after
each piece, so a singular component elsewhere never leaks into other values.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from phasemake.trace.levels import edge_terms, index_dtype

__all__ = ["StackedArrays", "build_plan", "occupation", "solve"]

#: Buckets whose blocks have up to this many entries per row (C × M²) are built before the
#: walk, if all their rows fit in :data:`PREBUILD_TOTAL` entries (32 MiB per θ); others row
#: by row inside it. Prebuilt, a step only slices its row: fewer operations per step,
#: which is what the walk's time is made of for small blocks; for large ones copying the
#: row costs more (three-deme island, 30 lineages, blocks up to 496: E[T] 30.1 ms
#: prebuilt, 24.4 ms built inside the walk, 21.4 ms unrolled).
PREBUILD = 2**14
PREBUILD_TOTAL = 2**22
#: The size classes are the fewest (within :func:`size_classes`) whose modelled cost of
#: the padded solves is within this factor of no padding.
PADDING = 1.12
#: Cost model of a dense solve of size M (seconds, CPU LAPACK): a + b M³ per component.
_SOLVE_FIXED = 6e-6
_SOLVE_CUBIC = 9e-11


class Bucket(NamedTuple):
    """Index arrays of the pieces of one padded shape (one row per piece).

    ``vid`` (P, C M) are the pieces' vertices (trace order, ``V`` for padding); ``ext_e``
    and ``ext_slot`` (P, NE) their edges to lower levels and the local slot of each edge's
    source; ``int_e``, ``int_c``, ``int_r``, ``int_k`` (P, NI) the edges inside their
    components (component, row, column); ``in_j`` and ``in_slot`` (P, NJ) the external
    edges into them (indices of the ``in_*`` arrays) and each one's target slot.
    Padded edges point one past the end of their arrays, where rates and coefficients
    are 0."""

    vid: Any
    ext_e: Any
    ext_slot: Any
    int_e: Any
    int_c: Any
    int_r: Any
    int_k: Any
    in_j: Any
    in_slot: Any


class StackedArrays(NamedTuple):
    """The plan's device arrays: the buckets and, per piece in level order, its bucket
    and its row there."""

    buckets: tuple[Bucket, ...]
    step_bucket: Any
    step_row: Any


class _Piece(NamedTuple):
    m: int  # component size (1: single vertices)
    c: int  # number of components
    v0: int  # first vertex (trace order); the piece is [v0, v0 + m c)
    ext: tuple[int, int]  # its external edges, [a, b) of the edge arrays
    internal: tuple[int, int]  # its internal edges
    incoming: tuple[int, int]  # external edges into it, [a, b) of the in_* arrays


def _pieces(levels, edge_src: np.ndarray, in_tgt: np.ndarray) -> list[_Piece]:
    """Each level's singles and groups as pieces, in level order."""
    out = []
    for lv in levels:
        spans = []
        if lv.singles:
            spans.append((1, lv.singles, lv.v0, (0, 0)))
        spans.extend((m, c, vs, (i0, i1)) for m, c, vs, i0, i1 in lv.groups)
        for m, c, v0, internal in spans:
            v1 = v0 + m * c
            a, b = lv.e0 + np.searchsorted(edge_src[lv.e0 : lv.ei], [v0, v1])
            j0, j1 = np.searchsorted(in_tgt, [v0, v1])
            out.append(_Piece(m, c, v0, (int(a), int(b)), internal, (int(j0), int(j1))))
    return out


def _size_classes(pieces: list[_Piece], classes: tuple[int, int]) -> dict[int, int]:
    """Padded size for each component size m > 1: the partition of the sorted sizes into
    runs, each padded to its largest size, that minimises the modelled cost for each
    number of runs (dynamic programming, O(runs × sizes²) in numpy); the fewest runs in
    ``classes = (least, most)`` whose cost is within :data:`PADDING` of no padding."""
    sizes = np.array(sorted({p.m for p in pieces if p.m > 1}), dtype=np.float64)
    if sizes.size == 0:
        return {}
    n, k_max = sizes.size, min(classes[1], sizes.size)
    where = {int(m): i for i, m in enumerate(sizes)}
    solves, comps = np.zeros(n), np.zeros(n)  # per size: batched solves, components
    for p in pieces:
        if p.m > 1:
            solves[where[p.m]] += 1
            comps[where[p.m]] += p.c
    cum_s = np.concatenate([[0.0], np.cumsum(solves)])
    cum_c = np.concatenate([[0.0], np.cumsum(comps)])
    # run[i, j]: sizes i..j-1 padded to sizes[j - 1]
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    top = sizes[np.clip(j - 1, 0, n - 1)]
    run = _SOLVE_FIXED * (cum_s[j] - cum_s[i]) + _SOLVE_CUBIC * (cum_c[j] - cum_c[i]) * top**3
    run = np.where(i < j, run, np.inf)
    best = np.full((k_max + 1, n + 1), np.inf)
    cut = np.zeros((k_max + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, k_max + 1):
        total = best[k - 1][:, None] + run  # (i, j)
        cut[k] = np.argmin(total, axis=0)
        best[k] = total[cut[k], np.arange(n + 1)]
    exact = _SOLVE_FIXED * cum_s[-1] + _SOLVE_CUBIC * float(comps @ sizes**3)
    k_min = min(classes[0], k_max)
    good = [k for k in range(k_min, k_max + 1) if best[k, n] <= PADDING * exact]
    k = good[0] if good else k_min + int(np.argmin(best[k_min:, n]))
    padded, end = {}, n
    while end > 0:
        start = int(cut[k, end])
        for m in sizes[start:end]:
            padded[int(m)] = int(sizes[end - 1])
        end, k = start, k - 1
    return padded


def size_classes(n_cyclic: int) -> tuple[int, int]:
    """The least and most size classes for ``n_cyclic`` pieces with cyclic components:
    ``⌈1.5 log2(n + 1)⌉`` and ``⌈2 log2(n + 1)⌉``. Each class is one more program to
    compile (about 0.2 s) and less padding: on the two-deme model at n = 100 (99 cyclic
    levels), 7 classes compiled in 1.65 s and evaluated E[T] in 3.97 ms, 10 classes in
    2.25 s and 3.51 ms (the unrolled walk: 18.6 s and 3.66 ms)."""
    log = math.log2(n_cyclic + 1)
    return max(1, math.ceil(1.5 * log)), max(1, math.ceil(2 * log))


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def build_plan(levels, arrays: dict[str, np.ndarray], in_perm: np.ndarray):
    """The stacked plan of a trace: ``(shapes, StackedArrays)`` with ``shapes`` the static
    ``(C, M)`` of each bucket; ``in_perm`` orders the external edges as the evaluator's
    ``in_*`` arrays."""
    src, tgt = arrays["edge_src"], arrays["edge_tgt"]
    n_vertices, n_edges, n_in = int(arrays["order"].size), int(src.size), int(in_perm.size)
    in_tgt = tgt[in_perm]
    pieces = _pieces(levels, src, in_tgt)
    n_cyclic = sum(p.m > 1 for p in pieces)
    padded = _size_classes(pieces, size_classes(n_cyclic))
    keys, members = [], {}
    for p in pieces:
        ne, nj = p.ext[1] - p.ext[0], p.incoming[1] - p.incoming[0]
        key = (1, _pow2(p.c), _pow2(ne), _pow2(nj)) if p.m == 1 else (padded[p.m], _pow2(p.c))
        keys.append(key)
        members.setdefault(key, []).append(p)
    order = list(members)
    index = index_dtype(n_vertices, n_edges)  # the padding sentinels included
    shapes, buckets = [], []
    for key in order:
        ps = members[key]
        big_m, big_c = key[0], key[1]
        ne = max(1, max(p.ext[1] - p.ext[0] for p in ps))
        ni = max(1, max(p.internal[1] - p.internal[0] for p in ps))
        nj = max(1, max(p.incoming[1] - p.incoming[0] for p in ps))
        rows = len(ps)
        b = Bucket(
            vid=np.full((rows, big_c * big_m), n_vertices, dtype=index),
            ext_e=np.full((rows, ne), n_edges, dtype=index),
            ext_slot=np.zeros((rows, ne), dtype=index),
            int_e=np.full((rows, ni), n_edges, dtype=index),
            int_c=np.zeros((rows, ni), dtype=index),
            int_r=np.zeros((rows, ni), dtype=index),
            int_k=np.zeros((rows, ni), dtype=index),
            in_j=np.full((rows, nj), n_in, dtype=index),
            in_slot=np.zeros((rows, nj), dtype=index),
        )
        for r, p in enumerate(ps):
            # vertex (component q, position i) of the piece sits in slot q M + i
            q, i = np.divmod(np.arange(p.m * p.c), p.m)
            slot_of = q * big_m + i
            b.vid[r, slot_of] = p.v0 + np.arange(p.m * p.c)
            e = np.arange(*p.ext)
            b.ext_e[r, : e.size] = e
            b.ext_slot[r, : e.size] = slot_of[src[e] - p.v0]
            e = np.arange(*p.internal)
            ls, lt = src[e] - p.v0, tgt[e] - p.v0
            b.int_e[r, : e.size] = e
            b.int_c[r, : e.size] = ls // p.m
            b.int_r[r, : e.size] = ls % p.m
            b.int_k[r, : e.size] = lt % p.m
            j = np.arange(*p.incoming)
            b.in_j[r, : j.size] = j
            b.in_slot[r, : j.size] = slot_of[in_tgt[j] - p.v0]
        shapes.append((big_c, big_m))
        buckets.append(b)
    step_bucket = np.array([order.index(k) for k in keys], dtype=np.int32)
    step_row = np.zeros(len(pieces), dtype=np.int32)
    seen = [0] * len(order)
    for s, k in enumerate(step_bucket):
        step_row[s], seen[k] = seen[k], seen[k] + 1
    return tuple(shapes), StackedArrays(tuple(buckets), step_bucket, step_row)


def _pad(a: jax.Array, value) -> jax.Array:
    """``a`` with one more row of ``value`` (the spare vertex or edge)."""
    return jnp.concatenate([a, jnp.full((1, *a.shape[1:]), value, dtype=a.dtype)])


def _block_matrices(big_c: int, big_m: int, b: Bucket, rate, out, transpose: bool):
    """The (P, C, M, M) blocks of ``-S`` (identity on padding) of bucket rows ``b``, or
    their transposes; the diagonals (P, C M) for ``M = 1``."""
    diag = out[b.vid]
    if big_m == 1:
        return diag
    r, k = (b.int_k, b.int_r) if transpose else (b.int_r, b.int_k)
    rows = jnp.broadcast_to(jnp.arange(b.int_c.shape[0])[:, None], b.int_c.shape)
    mat = jnp.zeros((b.vid.shape[0], big_c, big_m, big_m), dtype=rate.dtype)
    mat = mat.at[rows, b.int_c, r, k].add(-rate[b.int_e])
    return mat + diag.reshape(-1, big_c, big_m)[..., None] * jnp.eye(big_m, dtype=rate.dtype)


def _blocks(shapes, plan: StackedArrays, rate, out, transpose: bool):
    """A function ``(k, r) -> blocks of row r of bucket k``. Buckets of small blocks
    (:data:`PREBUILD`) are built batched before the walk; others row by row inside it, so
    the walk never holds every level's large blocks at once. The LU stays inside the walk, one at a
    time: XLA's CPU runtime deadlocked (jax 0.10.2) when the buckets' batched LUs ran
    before the walk."""
    built = [
        _block_matrices(c, m, b, rate, out, transpose)
        if c * m * m <= PREBUILD and b.vid.shape[0] * c * m * m <= PREBUILD_TOTAL
        else None
        for (c, m), b in zip(shapes, plan.buckets, strict=True)
    ]

    def block(k: int, r):
        if built[k] is not None:
            return built[k][r]
        one = Bucket(*(a[r][None] for a in plan.buckets[k]))
        return _block_matrices(*shapes[k], one, rate, out, transpose)[0]

    return block


def _local_solve(big_c: int, big_m: int, block, rhs) -> jax.Array:
    """Solve one piece's blocks (its row of :func:`_blocks`) for ``rhs`` (C M,) or (C M, k)."""
    if big_m == 1:
        return rhs / (block if rhs.ndim == 1 else block[:, None])
    return _dense_solve(block, rhs.reshape(big_c, big_m, -1)).reshape(rhs.shape)


def _dense_solve(mat: jax.Array, rhs: jax.Array) -> jax.Array:
    """``mat⁻¹ rhs`` for a batch of matrices: LU with partial pivoting and two triangular
    solves (what ``jnp.linalg.solve`` does, without its linear-solve wrapper for
    autodiff, which the custom reverse modes make unneeded and XLA would compile)."""
    lu, _, perm = jax.lax.linalg.lu(mat)
    b = jnp.take_along_axis(rhs, perm[:, :, None], axis=1)
    b = jax.lax.linalg.triangular_solve(lu, b, left_side=True, lower=True, unit_diagonal=True)
    return jax.lax.linalg.triangular_solve(lu, b, left_side=True, lower=False)


def _row(bucket: Bucket, r) -> Bucket:
    return Bucket(*(a[r] for a in bucket))


def solve(shapes, plan: StackedArrays, data, theta, rhs, edge_sums: bool = False):
    """``x = (-S)^{-1} rhs`` (and the edge sums ``y``) as :func:`phasemake.trace.levels.solve`
    computes them, one bucket program per piece."""
    n = rhs.shape[0]
    rate, out = _pad(data.edge_coef @ theta, 0.0), _pad(data.out_coef @ theta, 1.0)
    tgt, coef = _pad(data.edge_tgt, n), _pad(data.edge_coef, 0.0)
    rhs = _pad(rhs, 0.0)
    blocks = _blocks(shapes, plan, rate, out, transpose=False)
    # per bucket, each edge's rate and target, gathered for all rows at once
    gains = [rate[b.ext_e] for b in plan.buckets]
    targets = [tgt[b.ext_e] for b in plan.buckets]
    x = jnp.zeros_like(rhs)
    y = jnp.zeros((n + 1, *data.out_coef.shape[1:], *rhs.shape[1:]), rhs.dtype)
    y = y if edge_sums else jnp.zeros((), rhs.dtype)

    def branch(k: int):
        big_c, big_m = shapes[k]

        def run(carry, r):
            x, y = carry
            b = _row(plan.buckets[k], r)
            xt = x[targets[k][r]]
            gain = gains[k][r] if xt.ndim == 1 else gains[k][r][:, None]
            rhs_b = rhs[b.vid].at[b.ext_slot].add(gain * xt)
            sol = _local_solve(big_c, big_m, blocks(k, r), rhs_b)
            x = x.at[b.vid].set(sol).at[n].set(0.0)
            if edge_sums:
                ys = jnp.zeros((big_c * big_m, *y.shape[1:]), y.dtype)
                ys = ys.at[b.ext_slot].add(edge_terms(coef[b.ext_e], xt))
                slot = b.int_c * big_m + b.int_r
                ys = ys.at[slot].add(edge_terms(coef[b.int_e], x[tgt[b.int_e]]))
                y = y.at[b.vid].set(ys).at[n].set(0.0)
            return x, y

        return run

    branches = [branch(k) for k in range(len(shapes))]

    def step(carry, s):
        return jax.lax.switch(s[0], branches, carry, s[1]), None

    (x, y), _ = jax.lax.scan(step, (x, y), (plan.step_bucket, plan.step_row))
    return (x[:n], y[:n]) if edge_sums else x[:n]


def occupation(shapes, plan: StackedArrays, data, theta, rhs) -> jax.Array:
    """``(-S)^{-T} rhs`` top level first, as :func:`phasemake.trace.levels.occupation`."""
    n = rhs.shape[0]
    rate, out = _pad(data.edge_coef @ theta, 0.0), _pad(data.out_coef @ theta, 1.0)
    in_rate, in_src = _pad(data.in_coef @ theta, 0.0), _pad(data.in_src, n)
    rhs = _pad(rhs, 0.0)
    blocks = _blocks(shapes, plan, rate, out, transpose=True)
    gains = [in_rate[b.in_j] for b in plan.buckets]
    sources = [in_src[b.in_j] for b in plan.buckets]

    def branch(k: int):
        big_c, big_m = shapes[k]

        def run(z, r):
            b = _row(plan.buckets[k], r)
            zs = z[sources[k][r]]
            gain = gains[k][r] if zs.ndim == 1 else gains[k][r][:, None]
            rhs_b = rhs[b.vid].at[b.in_slot].add(gain * zs)
            sol = _local_solve(big_c, big_m, blocks(k, r), rhs_b)
            return z.at[b.vid].set(sol).at[n].set(0.0)

        return run

    branches = [branch(k) for k in range(len(shapes))]

    def step(z, s):
        return jax.lax.switch(s[0], branches, z, s[1]), None

    z, _ = jax.lax.scan(step, jnp.zeros_like(rhs), (plan.step_bucket, plan.step_row), reverse=True)
    return z[:n]
