"""The level structure of a trace and the unrolled walk of its solves.

The trace's vertices sit in topological levels (absorption is level 0); within a level,
single vertices come first, then cyclic components grouped by size. ``solve`` computes
``x = (-S)^{-1} rhs`` bottom-up and ``occupation`` ``(-S)^{-T} rhs`` top-down, one level
at a time: a division per single vertex, a batched dense solve per group of components.
Unrolled in Python, every level is a program of its own for XLA; the stacked walk
(:mod:`phasemake.trace.stacked`) compiles one per padded shape instead.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Level", "edge_terms", "in_edges", "index_dtype", "occupation", "solve", "structure"]


class Level(NamedTuple):
    """One level: vertices, edge ranges and component groups (static ints)."""

    v0: int
    v1: int
    e0: int  # external edges [e0, ei)
    ei: int  # internal edges [ei, e1)
    e1: int  # end of this level's edges
    j0: int  # external edges into this level, [j0, j1) of the in_* arrays
    j1: int
    singles: int
    groups: tuple[tuple[int, int, int, int, int], ...]  # (m, count, vstart, istart, iend)


def index_dtype(*sizes: int) -> type:
    """int32 when every vertex and edge index up to ``max(sizes)`` fits (the solves are
    memory-bound: they stream each edge's source, target and coefficient once per θ), else
    int64.

    Examples
    --------
    >>> index_dtype(5150, 19998).__name__, index_dtype(2**31).__name__
    ('int32', 'int64')
    """
    return np.int32 if max(sizes) < 2**31 else np.int64


def in_edges(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Permutation of the external edges by (target level, target), and level pointers."""
    vptr, eptr, iptr = arrays["level_vptr"], arrays["level_eptr"], arrays["level_iptr"]
    n_levels = vptr.size - 1
    external = np.zeros(arrays["edge_src"].size, dtype=bool)
    for lvl in range(n_levels):
        external[eptr[lvl] : iptr[lvl]] = True
    ext = np.flatnonzero(external)
    tgt = arrays["edge_tgt"][ext]
    perm = ext[np.lexsort((arrays["edge_src"][ext], tgt))]
    jptr = np.searchsorted(arrays["edge_tgt"][perm], vptr)
    return perm, jptr


def structure(arrays: dict[str, np.ndarray], jptr: np.ndarray) -> tuple[Level, ...]:
    vptr, eptr, iptr = arrays["level_vptr"], arrays["level_eptr"], arrays["level_iptr"]
    by_level: dict[int, list] = {}
    for lvl, m, c, vs, i0, i1 in arrays["groups"].tolist():
        by_level.setdefault(lvl, []).append((m, c, vs, i0, i1))
    levels = []
    for lvl in range(1, vptr.size - 1):  # level 0 is absorption: x = 0 there
        v0, v1 = int(vptr[lvl]), int(vptr[lvl + 1])
        groups = tuple(by_level.get(lvl, ()))
        singles = (v1 - v0) - sum(m * c for m, c, *_ in groups)
        levels.append(
            Level(
                v0,
                v1,
                int(eptr[lvl]),
                int(iptr[lvl]),
                int(eptr[lvl + 1]),
                int(jptr[lvl]),
                int(jptr[lvl + 1]),
                singles,
                groups,
            )
        )
    return tuple(levels)


def _rates(data, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
    return data.edge_coef @ theta, data.out_coef @ theta


def _component_matrices(rate, out, src, tgt, group) -> jax.Array:
    """Batched ``(count, m, m)`` blocks of ``-S`` for one group of size-m components."""
    m, c, vs, i0, i1 = group
    local_src = src[i0:i1] - vs
    local_tgt = tgt[i0:i1] - vs
    mat = jnp.zeros((c, m, m), dtype=rate.dtype)
    mat = mat.at[local_src // m, local_src % m, local_tgt % m].add(-rate[i0:i1])
    diag = out[vs : vs + m * c].reshape(c, m)
    return mat + diag[:, :, None] * jnp.eye(m, dtype=rate.dtype)


def edge_terms(coef, xt) -> jax.Array:
    """``c_e x_j`` per edge: (E, p) for ``xt`` (E,), (E, p, k) for ``xt`` (E, k)."""
    return coef * xt[:, None] if xt.ndim == 1 else coef[:, :, None] * xt[:, None, :]


def _level_solve(lv: Level, b, rate, out, src, tgt, *, transpose: bool) -> jax.Array:
    """Solve one level's blocks of ``-S`` (or their transposes) for its right-hand side
    ``b`` (its vertices' rows): a division per single vertex, a batched dense solve per
    group of same-size components."""
    parts = []
    if lv.singles:
        d = out[lv.v0 : lv.v0 + lv.singles]
        parts.append(b[: lv.singles] / (d if b.ndim == 1 else d[:, None]))
    for group in lv.groups:
        m, c, vs = group[:3]
        mat = _component_matrices(rate, out, src, tgt, group)
        block = b[vs - lv.v0 : vs - lv.v0 + m * c]
        mat = jnp.swapaxes(mat, 1, 2) if transpose else mat
        sol = jnp.linalg.solve(mat, block.reshape(c, m, -1))
        parts.append(sol.reshape(block.shape))
    return jnp.concatenate(parts) if len(parts) > 1 else parts[0]


def solve(levels: tuple[Level, ...], data, theta, rhs, edge_sums: bool = False):
    """``x = (-S)^{-1} rhs`` for ``rhs`` of shape (V,) or (V, k) in trace order (0 at
    absorption).

    With ``edge_sums``, also return ``y`` (V, p), or (V, p, k) for ``rhs`` (V, k), with
    ``y_i = Σ_{e = i → j} c_e x_j``, accumulated from the gathers the solve makes anyway.
    """
    rate, out = _rates(data, theta)
    src, tgt, coef = data.edge_src, data.edge_tgt, data.edge_coef
    vec = rhs.ndim == 1
    x = jnp.zeros_like(rhs)
    y = None
    if edge_sums:
        y = jnp.zeros(data.out_coef.shape + rhs.shape[1:], dtype=rhs.dtype)
    for lv in levels:
        nv = lv.v1 - lv.v0
        b = rhs[lv.v0 : lv.v1]
        if lv.ei > lv.e0:
            xt = x[tgt[lv.e0 : lv.ei]]
            r = rate[lv.e0 : lv.ei]
            local = src[lv.e0 : lv.ei] - lv.v0
            contrib = (r if vec else r[:, None]) * xt
            b = b + jax.ops.segment_sum(contrib, local, num_segments=nv, indices_are_sorted=True)
            if edge_sums:
                ys = jax.ops.segment_sum(
                    edge_terms(coef[lv.e0 : lv.ei], xt),
                    local,
                    num_segments=nv,
                    indices_are_sorted=True,
                )
                y = y.at[lv.v0 : lv.v1].add(ys)
        x = x.at[lv.v0 : lv.v1].set(_level_solve(lv, b, rate, out, src, tgt, transpose=False))
        if edge_sums and lv.e1 > lv.ei:  # edges inside components, now that x is known
            ys = jax.ops.segment_sum(
                edge_terms(coef[lv.ei : lv.e1], x[tgt[lv.ei : lv.e1]]),
                src[lv.ei : lv.e1] - lv.v0,
                num_segments=nv,
                indices_are_sorted=True,
            )
            y = y.at[lv.v0 : lv.v1].add(ys)
    return (x, y) if edge_sums else x


def occupation(levels: tuple[Level, ...], data, theta, rhs=None) -> jax.Array:
    """``z = α (-S)^{-1}``: expected time in each vertex (adjoint solve, top level first);
    with ``rhs`` of shape (V,) or (V, k), ``(-S)^{-T} rhs`` instead (trace order)."""
    rate, out = _rates(data, theta)
    in_rate = data.in_coef @ theta
    rhs = data.alpha if rhs is None else rhs
    vec = rhs.ndim == 1
    z = jnp.zeros_like(rhs)
    for lv in reversed(levels):
        nv = lv.v1 - lv.v0
        b = rhs[lv.v0 : lv.v1]
        if lv.j1 > lv.j0:
            r = in_rate[lv.j0 : lv.j1]
            contrib = (r if vec else r[:, None]) * z[data.in_src[lv.j0 : lv.j1]]
            b = b + jax.ops.segment_sum(
                contrib,
                data.in_tgt[lv.j0 : lv.j1] - lv.v0,
                num_segments=nv,
                indices_are_sorted=True,
            )
        solved = _level_solve(lv, b, rate, out, data.edge_src, data.edge_tgt, transpose=True)
        z = z.at[lv.v0 : lv.v1].set(solved)
    return z
