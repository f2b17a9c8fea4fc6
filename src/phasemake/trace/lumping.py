"""Exact lumping of a chain whose holding times depend only on a block of states.

Many models' states fall into blocks whose exit rates are the same function of θ (every
state of the block-counting coalescent with k lineages leaves at ``C(k, 2)·coal``), and
whose jumps go elsewhere with probabilities that do not depend on θ at all. If, moreover,

1. every edge's coefficient vector is a fixed fraction ``w_e`` of its source's total exit
   coefficients (the jump chain does not depend on θ, in any epoch),
2. the jump chain is strongly lumpable: from every state of a block the probability of
   jumping into each other block (or to absorption) is the same, and never into its own
   block,
3. the blocks reached from the start form a tree: one start block, and every other block
   entered from exactly one block,

then the block process ``N_t`` is a Markov chain (a few states: the lineage counts), and
given ``N_t = B`` the state is distributed as ``ν_B``, the probability of the jump chain
visiting each state of B given that it visits B, **whatever θ, the epochs and t**. So for
any history of rate vectors θ_k,

``E[∫ r(X_t) dt] = Σ_B E[time in B] · Σ_{v ∈ B} ν(v) r(v)``,

and the absorption time is the block chain's. :func:`lump` finds the coarsest such
blocks (partition refinement); :class:`phasemake.trace.epochtrace.EpochTrace` then
evaluates a history on the small block chain by dense matrix exponentials.

Examples
--------
>>> import phasemake
>>> from phasemake.models import block_counting
>>> trace = phasemake.compile_trace(phasemake.build_graph(block_counting, n=10))
>>> lumped = lump(trace._series_data)
>>> trace.n_vertices, lumped.n_blocks  # 42 states, 9 lineage counts
(42, 9)
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax

jax.config.update("jax_enable_x64", True)  # lump_trace's series data: float64, as Trace's

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from phasemake.trace import uniformisation  # noqa: E402
from phasemake.trace.lumpstore import MAX_BLOCKS, Lumping  # noqa: E402
from phasemake.trace.units import initial_distribution  # noqa: E402

__all__ = [
    "MAX_BLOCKS",
    "Blocks",
    "Lumping",
    "block_arrays",
    "block_expectation",
    "block_moments",
    "chain_expectation",
    "expm_upper",
    "lump",
    "lump_trace",
    "project",
]

#: Relative tolerance of "the same" for jump fractions (sums of float64 fractions).
_DIGITS = 12


def _refine(labels: np.ndarray, src, tgt, w, n_states: int) -> np.ndarray:
    """Split blocks until every state of a block jumps into each block with the same
    probability (the coarsest strongly lumpable refinement of ``labels``)."""
    while True:
        n_labels = int(labels.max()) + 1
        key = src.astype(np.int64) * (n_labels + 1) + labels[tgt]
        uniq, inv = np.unique(key, return_inverse=True)
        total = np.round(np.bincount(inv, weights=w), _DIGITS)
        owner = uniq // (n_labels + 1)
        into = uniq % (n_labels + 1)
        signatures: list[list] = [[int(labels[v])] for v in range(n_states)]
        for v, b, p in zip(owner.tolist(), into.tolist(), total.tolist(), strict=True):
            signatures[v].extend((b, p))
        index: dict[tuple, int] = {}
        new = np.array([index.setdefault(tuple(s), len(index)) for s in signatures])
        if len(index) == n_labels:
            return labels
        labels = new


def lump(data, *, max_blocks: int = MAX_BLOCKS) -> Lumping | None:
    """The block chain of a trace (:class:`~phasemake.trace.uniformisation.SeriesData`),
    or ``None`` when the conditions of the module docstring do not hold or it would have
    more than ``max_blocks`` blocks."""
    src, tgt = np.asarray(data.src), np.asarray(data.tgt)
    coef, out = np.asarray(data.coef), np.asarray(data.out_coef)
    live = np.asarray(data.transient) > 0
    alpha, level = np.asarray(data.alpha), np.asarray(data.level)
    n = out.shape[0]
    if src.size == 0 or not np.all(live[src]):
        return None
    # 1. each edge a fixed fraction of its source's exit coefficients
    o = out[src]
    norm = np.einsum("ep,ep->e", o, o)
    if np.any(norm <= 0):
        return None
    w = np.einsum("ep,ep->e", coef, o) / norm
    scale = np.max(np.abs(coef), axis=1)
    if np.any(np.max(np.abs(coef - w[:, None] * o), axis=1) > 1e-12 * scale):
        return None
    # 2. blocks: equal exit coefficients, refined to strong lumpability; absorption apart
    _, labels = np.unique(np.where(live[:, None], out, np.inf), axis=0, return_inverse=True)
    labels = _refine(labels.reshape(-1).astype(np.int64), src, tgt, w, n)
    if np.any(labels[src] == labels[tgt]):
        return None
    # 3. visiting probabilities, top level down (edges go to lower levels or sideways)
    p = alpha.copy()
    by_level = np.argsort(level[tgt], kind="stable")
    bounds = np.searchsorted(level[tgt][by_level], np.arange(level.max() + 2))
    for lvl in range(int(level.max()), 0, -1):
        e = by_level[bounds[lvl] : bounds[lvl + 1]]
        inside = level[src[e]] == lvl
        np.add.at(p, tgt[e[~inside]], p[src[e[~inside]]] * w[e[~inside]])
        if np.any(p[src[e[inside]]] > 0):  # a reached cyclic component: no tree of blocks
            return None
    reached = live & (p > 0)
    start = np.unique(labels[live & (alpha > 0)])
    if start.size != 1:
        return None
    # the reached blocks, each entered from one block only
    keep = reached[src] & reached[tgt]
    pairs = np.unique(np.stack([labels[src[keep]], labels[tgt[keep]]], axis=1), axis=0)
    entered = np.bincount(pairs[:, 1], minlength=int(labels.max()) + 1) if pairs.size else None
    if entered is not None and (np.any(entered > 1) or entered[start[0]] > 0):
        return None
    blocks = np.unique(labels[reached])
    if blocks.size > max_blocks:
        return None
    # topological order: by the highest level a block's states sit on (edges go down)
    top = np.array([level[reached & (labels == b)].max() for b in blocks])
    blocks = blocks[np.argsort(-top, kind="stable")]
    m = blocks.size
    rank = np.full(int(labels.max()) + 1, m)
    rank[blocks] = np.arange(m)
    block = np.where(reached, rank[labels], m)
    mass = np.bincount(block, weights=np.where(reached, p, 0.0), minlength=m + 1)
    nu = np.where(reached, p / np.where(reached, mass[block], 1.0), 0.0)
    # the block chain: from one representative state of each block
    lumped = np.zeros((m, m, out.shape[1]))
    for b in range(m):
        v = int(np.flatnonzero(block == b)[0])
        e = src == v
        go = block[tgt[e]]
        frac = np.bincount(go, weights=w[e], minlength=m + 1)[:m]
        lumped[b] = frac[:, None] * out[v][None, :]
        lumped[b, b] = -out[v]
    start_mass = float(np.sum(alpha[live]))
    return Lumping(block=block, nu=nu, coef=lumped, n_blocks=m, start_mass=start_mass)


def lump_trace(arrays: dict[str, np.ndarray]) -> Lumping | None:
    """:func:`lump` of the trace with these arrays (:mod:`phasemake.trace.units`): the
    lumping :attr:`phasemake.Trace.lumping <phasemake.trace.evaluator.Trace.lumping>`
    finds, from the same series data (what a trace file records when it is written)."""
    return lump(uniformisation.series_data(arrays, initial_distribution(arrays)))


# -- evaluation on the block chain (pure JAX) ------------------------------------------------
class Blocks(NamedTuple):
    """Device arrays of a :class:`Lumping`."""

    block: jax.Array  # (V,) block of each vertex in trace order (M: none)
    nu: jax.Array  # (V,) P(visit v | visit its block)
    coef: jax.Array  # (M, M, p) block generator coefficients
    start: jax.Array  # (M,) the initial distribution over blocks


def block_arrays(lumping: Lumping) -> Blocks:
    """The device arrays of a lumping."""
    put = jax.device_put  # no compiled conversion programs (jnp.asarray makes some)
    start = np.zeros(lumping.n_blocks)
    start[0] = lumping.start_mass
    return Blocks(put(lumping.block), put(lumping.nu), put(lumping.coef), put(start))


#: Squarings allowed to a matrix exponential (norms up to ~5e9; beyond it the result is
#: NaN, never a wrong number).
MAX_SQUARINGS = 30
_PADE13 = (
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
)


def expm_upper(a: jax.Array) -> jax.Array:
    """``exp(a)`` of an upper-triangular matrix: scaling to 1-norm ≤ 5.37, the degree-13
    Padé approximant (Higham 2005; backward error below float64's unit roundoff there)
    and squaring. One Padé degree keeps the compiled program small.

    Examples
    --------
    >>> import scipy.linalg
    >>> a = jnp.array([[-3.0, 2.0, 1.0], [0.0, -50.0, 50.0], [0.0, 0.0, 0.0]])
    >>> bool(jnp.allclose(expm_upper(a), scipy.linalg.expm(np.asarray(a)), rtol=1e-13))
    True
    """
    b = _PADE13
    norm = jnp.max(jnp.sum(jnp.abs(a), axis=0))
    s = jnp.maximum(0.0, jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300) / 5.371920351148152)))
    a = a / 2.0**s
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2)
    u = u + b[1] * a
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2
    v = v + b[0] * eye
    r = jax.scipy.linalg.solve_triangular(v - u, v + u, lower=False)

    def square(x, i):
        return jax.lax.cond(i < s, lambda y: y @ y, lambda y: y, x), None

    r, _ = jax.lax.scan(square, r, jnp.arange(MAX_SQUARINGS, dtype=a.dtype))
    return jnp.where(s <= MAX_SQUARINGS, r, jnp.nan)


def _epochs(blocks: Blocks, rates: jax.Array, times: jax.Array):
    """The epoch starts; per finite epoch ``∫π`` and ``∫(d - s)π`` over it (rows over
    blocks); the distribution entering the last epoch; the distributions leaving the
    finite epochs."""
    m = blocks.coef.shape[0]
    starts = jnp.concatenate([jnp.zeros((1,), rates.dtype), times])
    pi = blocks.start

    def epoch(pi, xs):
        theta, d = xs
        # exp(H d), H = [[0, 1, 0], [0, 0, π], [0, 0, Q]]: its first two rows hold
        # ∫_0^d (d - s) π e^{Qs} ds and ∫_0^d π e^{Qs} ds, its last block e^{Qd}
        h = jnp.zeros((m + 2, m + 2), rates.dtype)
        h = h.at[0, 1].set(1.0).at[1, 2:].set(pi).at[2:, 2:].set(blocks.coef @ theta)
        e = expm_upper(h * d)
        leaving = pi @ e[2:, 2:]
        return leaving, (e[1, 2:], e[0, 2:], leaving)

    pi, (firsts, seconds, leaving) = jax.lax.scan(epoch, pi, (rates[:-1], jnp.diff(starts)))
    return starts, firsts, seconds, pi, leaving


def _solve(blocks: Blocks, theta: jax.Array, b: jax.Array) -> jax.Array:
    """``(-Q)⁻¹ b`` (``-Q`` is upper triangular: blocks are in topological order)."""
    return jax.scipy.linalg.solve_triangular(-(blocks.coef @ theta), b, lower=False)


def _solve_left(blocks: Blocks, theta: jax.Array, pi: jax.Array) -> jax.Array:
    """``π (-Q)⁻¹`` for a row vector ``π``."""
    return jax.scipy.linalg.solve_triangular(-(blocks.coef @ theta), pi, lower=False, trans="T")


def project(lumping: Lumping, rewards: np.ndarray) -> np.ndarray:
    """Rewards (V, k) in trace order (0 at absorption) summed per block, weighted by ν:
    ``R_B = Σ_{v ∈ B} ν(v) r(v)`` (M, k). They do not depend on θ, so a caller with fixed
    rewards (the SFS observation model) computes them once and evaluates
    :func:`chain_expectation` on the M blocks alone."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.zeros((lumping.n_blocks + 1, rewards.shape[1]))
    np.add.at(out, lumping.block, rewards * lumping.nu[:, None])
    return out[: lumping.n_blocks]


def block_expectation(blocks: Blocks, rates, times, rewards) -> jax.Array:
    """``E[∫ r(X_t) dt]`` under epochs of rate vectors ``rates`` (K, p) and boundaries
    ``times`` (K-1,), for rewards (V, k) in trace order (0 at absorption)."""
    m = blocks.coef.shape[0]
    per_block = jax.ops.segment_sum(rewards * blocks.nu[:, None], blocks.block, m + 1)[:m]
    return chain_expectation(blocks, rates, times, per_block)


def chain_expectation(blocks: Blocks, rates, times, per_block) -> jax.Array:
    """:func:`block_expectation` from the rewards per block (:func:`project`).

    A block chain of one rate parameter (``p = 1``: every one-deme size history) under
    two or more epochs has a hand-written reverse mode (:func:`_scaled_chain`):
    ``jax.grad`` and ``jax.jacrev`` cost about twice the value, and forward mode
    (``jax.jvp``, ``jax.jacfwd``) is not available there (``EpochTrace(..., lump=False)``
    has it)."""
    if blocks.coef.shape[2] == 1 and rates.shape[0] > 1:
        return _scaled_chain(blocks, rates[:, 0], times, per_block)
    _, firsts, _, pi, _ = _epochs(blocks, rates, times)
    # π (-Q)⁻¹ R as (π (-Q)⁻¹) R: one solve with a vector
    return (jnp.sum(firsts, axis=0) + _solve_left(blocks, rates[-1], pi)) @ per_block


def _scaled_forward(blocks: Blocks, c, times, per_block):
    """The value, and what its reverse mode needs."""
    starts, firsts, seconds, pi, leaving = _epochs(blocks, c[:, None], times)
    x = _solve_left(blocks, c[-1:], pi)  # π_K (-Q_K)⁻¹
    value = (jnp.sum(firsts, axis=0) + x) @ per_block
    return value, (c, per_block, starts, firsts, seconds, leaving, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scaled_chain(blocks: Blocks, c, times, per_block):
    """:func:`block_expectation` for ``Q_k = c_k C`` (one rate parameter)."""
    return _scaled_forward(blocks, c, times, per_block)[0]


def _scaled_bwd(blocks: Blocks, saved, g):
    """The adjoint, backwards through the epochs. With ``L = E·g``, ``w = R g``, ``P_k =
    e^{Q_k d_k}``, ``I_k = ∫_0^{d_k} e^{Q_k s} ds`` and ``β_k`` the adjoint of the
    distribution entering epoch k (``β_K = (-Q_K)⁻¹ w``, ``β_k = I_k w + P_k β_{k+1}``),
    and since ``Q_k = c_k C`` commutes with its exponential:

    - ``∂L/∂d_k = π_{k+1}·(w + c_k C β_{k+1})``,
    - ``∂L/∂c_k = (d_k ∫π - ∫(d - s)π)·C w + d_k π_{k+1}·C β_{k+1}`` (no division by
      ``c_k``: a zero rate is fine) and ``∂L/∂c_K = -x·w / c_K``, ``x = π_K (-Q_K)⁻¹``,
    - ``∂L/∂R = (Σ_k ∫π + x)ᵀ g``.

    ``P_k β_{k+1} + I_k w`` is the top of ``exp([[Q_k, w], [0, 0]] d_k) [β_{k+1}; 1]``:
    one exponential of an (M + 1)-matrix per finite epoch."""
    c, per_block, starts, firsts, seconds, leaving, x = saved
    m = blocks.coef.shape[0]
    coef = blocks.coef[:, :, 0]
    w = per_block @ g
    cw = coef @ w
    beta = jax.scipy.linalg.solve_triangular(-c[-1] * coef, w, lower=False)

    def epoch(beta, xs):
        ck, d, first, second, out = xs
        cb = coef @ beta
        g_d = out @ (w + ck * cb)
        g_c = (d * first - second) @ cw + d * (out @ cb)
        a = jnp.zeros((m + 1, m + 1), c.dtype).at[:m, :m].set(ck * coef).at[:m, m].set(w)
        e = expm_upper(a * d)
        return e[:m, :m] @ beta + e[:m, m], (g_d, g_c)

    durations = jnp.diff(starts)
    _, (g_d, g_c) = jax.lax.scan(
        epoch, beta, (c[:-1], durations, firsts, seconds, leaving), reverse=True
    )
    g_rates = jnp.concatenate([g_c, -(x @ w)[None] / c[-1]])
    # d_k = τ_{k+1} - τ_k: boundary k (times[k] = τ_{k+1}) ends epoch k and starts k + 1
    g_times = g_d - jnp.concatenate([g_d[1:], jnp.zeros((1,), g_d.dtype)])
    g_rewards = jnp.outer(jnp.sum(firsts, axis=0) + x, g)
    return g_rates, g_times, g_rewards


_scaled_chain.defvjp(lambda blocks, c, t, r: _scaled_forward(blocks, c, t, r), _scaled_bwd)


def block_moments(blocks: Blocks, rates, times) -> jax.Array:
    """``[E[T], E[T²]]`` of the absorption time under the epochs."""
    starts, firsts, seconds, pi, _ = _epochs(blocks, rates, times)
    mass, tail = jnp.sum(firsts, axis=1), jnp.sum(seconds, axis=1)
    # ∫ s π(s) ds over epoch k = τ_k ∫π + (d ∫π - ∫(d - s)π) = τ_{k+1} ∫π - ∫(d - s)π
    total = jnp.sum(starts[1:] * mass - tail)
    h = _solve(blocks, rates[-1], jnp.ones_like(pi))
    h2 = _solve(blocks, rates[-1], h)
    mean = jnp.sum(mass) + pi @ h
    return jnp.stack([mean, 2.0 * (total + starts[-1] * (pi @ h) + pi @ h2)])
