"""Distribution of the absorption time by adaptive, level-truncated uniformisation.

The forward distribution ``π(t) = α exp(S t)`` is advanced in *intervals* of ``K`` (=
:data:`BLOCK`) uniformisation steps. Interval ``j`` starts at ``t_j`` with

1. **truncation** — the levels of the trace are a DAG: probability only flows towards
   absorption (down). The highest levels holding a total mass ≤ :data:`DROP_TOL` are emptied
   and never refilled. That mass is an upper bound on the change it makes to the survival
   function, and times the largest exit rate to absorption on the density;
2. **rate** — ``λ_j`` is the largest exit rate among the vertices of the levels kept (it falls
   as the process leaves the fast, crowded top levels: for the coalescent it goes from
   ``n(n-1)/2`` to 1);
3. **span** — ``π(t_j + τ) = Σ_n Pois(n; λ_j τ) π(t_j) P_j^n`` with ``P_j = I + S/λ_j``, and
   the interval covers ``τ ≤ μ_K/λ_j`` where ``μ_K`` is the largest Poisson mean whose tail
   beyond ``K`` terms is below :data:`TAIL`. Every output time falls in one interval, whose
   ``K`` coefficients ``π(t_j) P_j^n s`` give its value exactly up to that tail.

The work is ``K`` sparse products per interval, about ``∫ λ(t) dt`` in total instead of
``λ_max t_max`` for a single series: ten times fewer for the coalescent at n = 30.

Without a fixed budget the intervals run until ``t_max`` is covered (eager evaluation);
inside ``jit``, ``grad`` or ``vmap`` the number of steps ``n_terms`` must be fixed
beforehand, and times beyond what those steps cover come back NaN, never silently wrong.
A fixed budget is an upper bound, not the cost: the intervals after the one that covers
``max(t)`` are skipped (``lax.cond``), forward and reverse, so a budget sized for the
fastest θ a sampler may visit costs only what each θ needs (under ``vmap`` over θ the
skip becomes a select and every interval is computed).

Derivatives: an interval's steps have a tangent rule (``_steps``) that gathers
``dp·φ + p·dφ`` once a step, so forward mode (NLSQ's Jacobians) costs ~1.4× the value
and reverse mode, JAX's transpose of that rule, keeps one V-vector a step and costs ~2.2×
(block-counting n = 30, ``benchmarks/trace.py``). Reverse mode keeps the steps of the
whole budget while they fit in :data:`RESIDUAL_BYTES`; past that each interval is
recomputed from its start (one forward pass more, ~3×).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BLOCK",
    "DROP_TOL",
    "KINDS",
    "MAX_RATE_TIME",
    "RESIDUAL_BYTES",
    "SPAN",
    "TAIL",
    "SeriesData",
    "interval_limit",
    "series",
    "series_data",
]

#: What :func:`series` computes: one pass gives the density and the survival together.
KINDS = {"pdf": ("pdf",), "survival": ("survival",), "both": ("pdf", "survival")}
#: Uniformisation steps per interval.
BLOCK = 128
#: Poisson tail mass left out of each interval's series.
TAIL = 1e-15
#: Largest probability mass emptied from the top levels at an interval start.
DROP_TOL = 1e-14
#: Largest memory reverse mode keeps for a fixed budget's steps before it recomputes them.
RESIDUAL_BYTES = 128 * 2**20
#: Largest ``λ_max · t_max`` evaluated without a budget (≈ that many sparse products).
MAX_RATE_TIME = 2.0**24


def _poisson_tail(mu: float, k: int) -> float:
    """``P(N ≥ k)`` for ``N ~ Poisson(mu)``, summed in log space (``k > mu``)."""
    total, n = 0.0, k
    while True:
        term = math.exp(-mu + n * math.log(mu) - math.lgamma(n + 1.0))
        total += term
        if term < total * 1e-17:
            return total
        n += 1


def _span(k: int, tail: float) -> float:
    """Largest ``mu`` with ``P(Poisson(mu) ≥ k) ≤ tail`` (bisection)."""
    lo, hi = 1e-9, float(k)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _poisson_tail(mid, k) <= tail else (lo, mid)
    return lo


#: Poisson mean one interval covers: ``λ_j · (t_{j+1} - t_j)``.
SPAN = _span(BLOCK, TAIL)


class SeriesData(NamedTuple):
    """Device arrays for the forward series (trace vertex order)."""

    src: jax.Array  # edges sorted by target
    tgt: jax.Array
    coef: jax.Array  # (E, p)
    out_coef: jax.Array  # (V, p) total exit coefficients
    exit_coef: jax.Array  # (V, p) exit coefficients into absorbing vertices
    transient: jax.Array  # (V,) 1.0 off absorption
    alpha: jax.Array
    level: jax.Array  # (V,) topological level, non-decreasing


def series_data(arrays: dict[str, np.ndarray], alpha: np.ndarray) -> SeriesData:
    """Arrays of :class:`SeriesData` from a trace's arrays and its initial distribution."""
    src, tgt = arrays["edge_src"], arrays["edge_tgt"]
    coef = np.asarray(arrays["edge_coef"], dtype=np.float64)
    n = int(arrays["order"].size)
    vptr = np.asarray(arrays["level_vptr"])
    level = np.repeat(np.arange(vptr.size - 1, dtype=np.int32), np.diff(vptr))
    out_coef = np.zeros((n, coef.shape[1]))
    np.add.at(out_coef, src, coef)
    exit_coef = np.zeros_like(out_coef)
    into = level[tgt] == 0
    np.add.at(exit_coef, src[into], coef[into])
    perm = np.argsort(tgt, kind="stable")
    return SeriesData(
        src=jax.device_put(src[perm].astype(np.int32)),
        tgt=jax.device_put(tgt[perm].astype(np.int32)),
        coef=jax.device_put(coef[perm]),
        out_coef=jax.device_put(out_coef),
        exit_coef=jax.device_put(exit_coef),
        transient=jax.device_put((level > 0).astype(np.float64)),
        alpha=jax.device_put(alpha),
        level=jax.device_put(level),
    )


class _Interval(NamedTuple):
    pi: jax.Array  # distribution at the interval start
    start: jax.Array  # its time t_j


def _interval(data: SeriesData, theta, out, cap, reward, n_levels: int, state: _Interval):
    """Truncate, pick λ_j, run ``BLOCK`` steps: (next state, (t_j, λ_j, coefficients))."""
    mass = jax.ops.segment_sum(state.pi, data.level, n_levels, indices_are_sorted=True)
    above = jnp.cumsum(mass[::-1])[::-1] - mass  # mass strictly above each level
    top = jnp.argmax(above <= DROP_TOL)  # lowest level with a negligible mass above it
    keep = data.level <= top
    pi = jnp.where(keep, state.pi, 0.0)
    # nothing left but absorbed mass: any rate keeps π = 0; the interval then covers all
    # later times (a dead branch kept out of the derivative, which would be 0 · ∞)
    alive = cap[top] > 0
    lam = jnp.where(alive, cap[top], 1.0)
    coef = jax.lax.stop_gradient(data.coef)  # data: _steps's tangent rule has no term for it
    end, coeffs = _steps(data.src, data.tgt, coef, theta / lam, out / lam, reward, pi)
    start = jnp.where(alive, state.start + SPAN / lam, jnp.inf)
    return _Interval(end, start), (state.start, lam, coeffs)


def _flow(src, tgt, coef, u) -> jax.Array:
    """``Σ_j A_jᵀ u[:, j]``: the flow into each vertex, rates ``coef[:, j]`` acting on the
    columns of ``u`` (V, p). One gather of rows, one sorted segment sum."""
    edge = jnp.sum(coef * u[src], axis=1)
    return jax.ops.segment_sum(edge, tgt, u.shape[0], indices_are_sorted=True)


#: Poisson weights ``Pois(n; SPAN)`` of an interval's ``BLOCK`` steps at its end.
_WEIGHTS = np.exp(
    np.arange(BLOCK) * math.log(SPAN)
    - SPAN
    - np.array([math.lgamma(n + 1.0) for n in range(BLOCK)])
)


def _step(src, tgt, rate, decay, reward, p, acc, w):
    """One step ``p ← p + A(φ)ᵀp - decay·p``, the weighted sum and ``p · reward``."""
    flow = jax.ops.segment_sum(rate * p[src], tgt, p.shape[0], indices_are_sorted=True)
    return p + flow - decay * p, acc + w * p, p @ reward


@jax.custom_jvp
def _steps(src, tgt, coef, phi, decay, reward, pi):
    """``BLOCK`` steps from ``pi`` with rates ``coef @ φ`` (``φ = θ/λ``, ``decay =
    out/λ``): ``(Σ_n w_n p_n, (p_n · reward)_n)``.

    The tangent rule gathers ``dp φ + p dφ`` in one go, so its transpose, which reverse
    mode derives, keeps one V-vector a step (``p``) and does one gather and one scatter a
    step. Differentiating the plain steps kept ``p[src]`` (one value per edge) and
    accumulated a cotangent per edge every step: 4.5× the forward cost in all, now 2.2×.
    """
    rate = coef @ phi

    def step(carry, w):
        p, acc, c = _step(src, tgt, rate, decay, reward, *carry, w)
        return (p, acc), c

    (_, end), coeffs = jax.lax.scan(step, (pi, jnp.zeros_like(pi)), jnp.asarray(_WEIGHTS))
    return end, coeffs


@_steps.defjvp
def _steps_jvp(primals, tangents):
    src, tgt, coef, phi, decay, reward, pi = primals
    # the edges are data: _interval passes coef through stop_gradient (no tangent)
    *_, d_phi, d_decay, d_reward, d_pi = tangents
    rate = coef @ phi

    def step(carry, w):
        p, acc, dp, dacc = carry
        p_next, acc, c = _step(src, tgt, rate, decay, reward, p, acc, w)
        # every product of p with a tangent takes the column p[:, None]: reverse mode then
        # keeps one copy of p a step
        col = p[:, None]
        d_p = dp + _flow(src, tgt, coef, dp[:, None] * phi + col * d_phi)
        d_p = d_p - decay * dp - (col * d_decay[:, None])[:, 0]
        d_c = dp @ reward + jnp.sum(col * d_reward, axis=0)
        return (p_next, acc, d_p, dacc + w * dp), (c, d_c)

    zero = jnp.zeros_like(pi)
    (_, end, _, d_end), (coeffs, d_coeffs) = jax.lax.scan(
        step, (pi, zero, d_pi, zero), jnp.asarray(_WEIGHTS)
    )
    return (end, coeffs), (d_end, d_coeffs)


def _horner(coeffs, j, x) -> jax.Array:
    """``Σ_n coeffs[j, n] x^n / n!`` by Horner's rule (non-negative terms in our use)."""

    def body(i, total):
        n = BLOCK - 1 - i
        return jnp.take(coeffs[:, n - 1], j) + total * (x / n)

    return jax.lax.fori_loop(0, BLOCK - 1, body, jnp.take(coeffs[:, BLOCK - 1], j))


@jax.custom_jvp
def _mixture(coeffs, j, x) -> jax.Array:
    """``e^{-x} Σ_n coeffs[j, n] x^n / n!``: the Poisson mixture of interval ``j``'s
    coefficients at ``x = λ_j (t - t_j)``, one exponential per time (the tangent rule
    keeps derivatives, forward and reverse, as cheap as the value)."""
    return _horner(coeffs, j, x) * jnp.exp(-x)


@_mixture.defjvp
def _mixture_jvp(primals, tangents):
    coeffs, j, x = primals
    d_coeffs, _, dx = tangents
    # d/dx of a Poisson mixture is the mixture of the forward differences
    diff = jnp.concatenate([coeffs[:, 1:], jnp.zeros_like(coeffs[:, :1])], axis=1) - coeffs
    decay = jnp.exp(-x)
    slope = _horner(diff, j, x) * decay
    # the coefficients' tangent is a Poisson mixture too: Horner again, O(T) memory (a
    # (T, BLOCK) table of weights took ~7 kB per time: 14 GB for 2e6 rows in one call)
    tangent = slope * dx + _horner(d_coeffs, j, x) * decay
    return _mixture(coeffs, j, x), tangent


def _assemble(starts, lams, coeffs, end, t) -> jax.Array:
    """Each time's values ``(k, T)`` from its interval's coefficients ``(J, BLOCK, k)``;
    NaN outside ``[0, end]``."""
    j = jnp.clip(jnp.searchsorted(starts, t, side="right") - 1, 0, starts.shape[0] - 1)
    x = lams[j] * jnp.maximum(t - starts[j], 0.0)
    inside = (t >= 0) & (t <= end)
    return jnp.stack(
        [
            jnp.where(inside, _mixture(coeffs[:, :, c], j, x), jnp.nan)
            for c in range(coeffs.shape[2])
        ]
    )


def _setup(data: SeriesData, theta, kind: str, n_levels: int):
    out = data.out_coef @ theta
    level_rate = jax.ops.segment_max(out, data.level, n_levels, indices_are_sorted=True)
    cap = jax.lax.cummax(jnp.maximum(level_rate, 0.0))  # largest rate at or below a level
    columns = {"pdf": data.exit_coef @ theta, "survival": data.transient}
    reward = jnp.stack([columns[k] for k in KINDS[kind]], axis=1)  # (V, 1 or 2)
    return out, cap, reward


def series(
    data: SeriesData,
    theta,
    t,
    *,
    kind: str,
    n_levels: int,
    n_intervals: int | None = None,
    limit: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Density (``kind="pdf"``), survival (``kind="survival"``) or both stacked (``kind=
    "both"``, shape ``(2, T)``, from one pass) at times ``t``, and the number of intervals
    used.

    With ``n_intervals`` the work is fixed (traceable, reverse-differentiable); without it
    the intervals run until ``max(t)`` is covered, at most ``limit`` of them (see
    :func:`interval_limit`; a forward-only ``while`` loop).
    """
    out, cap, reward = _setup(data, theta, kind, n_levels)
    advance = lambda s: _interval(data, theta, out, cap, reward, n_levels, s)  # noqa: E731
    first = _Interval(data.alpha, jnp.zeros((), dtype=theta.dtype))
    if n_intervals is not None:
        t_end = jnp.max(t)
        k = reward.shape[1]

        def idle(state):  # every time is covered: the budget's other intervals cost nothing
            far = jnp.full((), jnp.inf, dtype=theta.dtype)
            return state, (far, jnp.ones((), theta.dtype), jnp.zeros((BLOCK, k), theta.dtype))

        # reverse mode keeps each step's π (BLOCK V-vectors an interval) while the whole
        # budget's take at most RESIDUAL_BYTES; past that the intervals are rematerialised
        # (one π kept per interval, its steps recomputed where the forward pass ran them:
        # one forward pass more, but a budget's unused intervals then cost no memory)
        kept = n_intervals * BLOCK * data.alpha.shape[0] * 8

        def run(state, _):
            return jax.lax.cond(state.start <= t_end, advance, idle, state)

        last, (starts, lams, coeffs) = jax.lax.scan(
            run if kept <= RESIDUAL_BYTES else jax.checkpoint(run),
            first,
            None,
            length=n_intervals,
        )
        values = _assemble(starts, lams, coeffs, last.start, t)
        return _pick(values, kind), jnp.asarray(n_intervals)
    k = reward.shape[1]
    buffers = (jnp.full(limit, jnp.inf), jnp.ones(limit), jnp.zeros((limit, BLOCK, k)))

    def body(carry):
        j, state, (starts, lams, coeffs) = carry
        state, (s0, lam, c) = advance(state)
        return j + 1, state, (starts.at[j].set(s0), lams.at[j].set(lam), coeffs.at[j].set(c))

    def cond(carry):
        j, state, _ = carry
        return (j < limit) & (state.start <= jnp.max(t))

    used, last, (starts, lams, coeffs) = jax.lax.while_loop(cond, body, (0, first, buffers))
    return _pick(_assemble(starts, lams, coeffs, last.start, t), kind), used


def _pick(values, kind: str) -> jax.Array:
    return values if kind == "both" else values[0]


def interval_limit(max_rate: float, t_max: float) -> int:
    """A bound on the intervals needed to reach ``t_max`` (as if nothing were ever
    truncated), rounded up to a power of two so that few sizes get compiled."""
    bound = max_rate * max(t_max, 0.0) / SPAN + 2
    return 1 << max(3, math.ceil(math.log2(bound)))
