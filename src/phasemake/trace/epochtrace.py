"""Evaluation of a model under a history of epochs (:func:`phasemake.epochs`).

For any callback model, exact up to stated truncations:

- **finite epochs** by uniformisation: with ``λ`` the epoch's largest exit rate and
  ``P = I + S/λ``, ``π exp(S d) = Σ_n Pois(n; λd) π P^n`` and
  ``∫_0^d π exp(S s) ds = λ⁻¹ Σ_n P(N_{λd} > n) π P^n``; the series stops after ``n``
  sparse products, ``n`` the smallest multiple of :data:`TERM_STEP` whose Poisson tail
  ``P(N_{λd} ≥ n)`` is below :data:`TAIL` (1e-15, relative to the epoch's mass);
- **the last epoch** by the trace's exact level-by-level solve ``x = (-S)⁻¹ r`` from the
  distribution at ``τ_{K-1}``: E[T], the expected SFS or any reward cost one solve more
  than the finite epochs' series;
- **events** at a boundary move each listed vertex's mass to its targets in proportion to
  the event's weights (a split, a merger, an admixture pulse);
- **density, survival and cdf** of the absorption time from the same series started at
  each epoch's start (the last epoch's series as long as the largest time asked for needs);
- **E[T²]** from the epochs' integrals ``∫ π(s) ds`` and ``∫ s π(s) ds`` and two solves in
  the last epoch.

All of it is one pure function of the flat parameters φ per budget (the numbers of terms
are static), so it compiles once per trace and budget, is differentiable in every rate,
boundary and event weight, and ``jax.vmap``-able over φ with a fixed budget.

Examples
--------
A bottleneck on the coalescent of 4 lineages: rate 4 (a quarter of the size) until τ = 0.5,
then 1.

>>> import phasemake
>>> from phasemake.models import kingman
>>> graph = phasemake.build_graph(kingman, n=4)
>>> history = phasemake.epochs(
...     ["c_recent", "c_ancient", "tau"],
...     rates=[{"coal": "c_recent"}, {"coal": "c_ancient"}],
...     times=["tau"],
...     graph=graph,
... )
>>> et = phasemake.EpochTrace(phasemake.compile_trace(graph), history)
>>> round(float(et.expectation([4.0, 1.0, 0.5])), 6)
0.557083
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammainc, gammaln

from phasemake.core.errors import PhasemakeError
from phasemake.trace.epochs import Epochs
from phasemake.trace.uniformisation import _poisson_tail, _span

__all__ = ["TAIL", "TERM_STEP", "EpochTrace"]

#: Poisson tail mass left out of each epoch's series.
TAIL = 1e-15
#: Numbers of terms are multiples of this (few sizes get compiled).
TERM_STEP = 32


def terms_for(mu: float) -> int:
    """The smallest multiple of :data:`TERM_STEP` with ``P(Poisson(mu) ≥ n) ≤ TAIL``.

    Examples
    --------
    >>> terms_for(0.0), terms_for(10.0), terms_for(1000.0)
    (32, 64, 1280)
    """
    n = TERM_STEP * max(1, math.floor((mu + 6.0 * math.sqrt(mu)) / TERM_STEP))
    while mu > 0 and _poisson_tail(mu, n) > TAIL:
        n += TERM_STEP
    return n


class _Arrays(NamedTuple):
    src: jax.Array  # edges sorted by target (trace order)
    tgt: jax.Array
    coef: jax.Array
    out_coef: jax.Array
    exit_coef: jax.Array
    transient: jax.Array
    alpha: jax.Array


def _series(a: _Arrays, theta, pi, n: int, cols):
    """``v_m = π P^m`` for ``m < n`` (``P = I + S/λ``): λ and the dot products
    ``v_m · cols`` (n, c), with the sequence kept only through those products."""
    rate = a.coef @ theta
    out = a.out_coef @ theta
    lam = jnp.maximum(jnp.max(out), 1e-300)

    def step(v, _):
        flow = jax.ops.segment_sum(rate * v[a.src], a.tgt, v.shape[0], indices_are_sorted=True)
        return v + (flow - out * v) / lam, v

    _end, vs = jax.lax.scan(step, pi, None, length=n)
    return lam, vs, vs @ cols


def _poisson(mu, n: int):
    m = jnp.arange(n, dtype=jnp.float64)
    return jnp.exp(jax.scipy.special.xlogy(m, mu) - mu - gammaln(m + 1.0))


def _weights(x, m):
    """``Pois(m; x)`` (T, M) for ``x >= 0`` (T,), exact at ``x = 0``."""
    safe = jnp.where(x > 0, x, 1.0)[:, None]
    w = jnp.exp(jax.scipy.special.xlogy(m, safe) - safe - gammaln(m + 1.0))
    return jnp.where(x[:, None] > 0, w, (m == 0).astype(w.dtype))


@jax.custom_jvp
def _mixture(table, x):
    """``Σ_m Pois(m; x_t) table[t, m, :]`` (C, T): the series of each time's epoch at
    ``x = λ (t - τ)`` (its derivative in ``x`` is the mixture of forward differences, also
    at ``x = 0``, where the log-space weights have none)."""
    m = jnp.arange(table.shape[1], dtype=x.dtype)
    return jnp.einsum("tm,tmc->ct", _weights(x, m), table)


@_mixture.defjvp
def _mixture_jvp(primals, tangents):
    table, x = primals
    d_table, dx = tangents
    m = jnp.arange(table.shape[1], dtype=x.dtype)
    w = _weights(x, m)
    diff = jnp.concatenate([table[:, 1:], jnp.zeros_like(table[:, :1])], axis=1) - table
    slope = jnp.einsum("tm,tmc->ct", w, diff) * dx[None, :]
    return _mixture(table, x), slope + jnp.einsum("tm,tmc->ct", w, d_table)


def _finite(a: _Arrays, theta, d, pi, n: int):
    """One finite epoch of length ``d`` from ``pi``: the distribution at its end, the
    integrals ``∫ π`` and ``∫ s π`` (V,), λ, and the series coefficients (n, 2) of the
    density and the survival."""
    cols = jnp.stack([a.exit_coef @ theta, a.transient], axis=1)
    lam, vs, coeffs = _series(a, theta, pi, n, cols)
    mu = lam * d
    m = jnp.arange(n, dtype=jnp.float64)
    end = _poisson(mu, n) @ vs
    first = (gammainc(m + 1.0, mu) / lam) @ vs  # ∫_0^d π(s) ds
    second = ((m + 1.0) * gammainc(m + 2.0, mu) / lam**2) @ vs  # ∫_0^d s π(s) ds
    return end, first, second, lam, coeffs


def _apply(event, weight, pi):
    src, tgt = event
    moved = jax.ops.segment_sum(pi[src] * weight, tgt, pi.shape[0])
    return pi.at[src].set(0.0) + moved


class EpochTrace:
    """A compiled trace under a history of epochs (see the module docstring).

    Parameters
    ----------
    trace
        The model's :class:`phasemake.Trace` (one epoch's rates: the model's parameters).
    history
        An :class:`~phasemake.trace.epochs.Epochs` from :func:`phasemake.epochs` for the
        same graph.
    """

    def __init__(self, trace, history: Epochs) -> None:
        if tuple(history.model_parameters) != tuple(trace.parameters):
            raise PhasemakeError(
                f"the history's model rates {list(history.model_parameters)} are not the "
                f"trace's parameters {list(trace.parameters)}"
            )
        self.trace, self.history = trace, history
        self.parameters = tuple(history.parameters)
        sd = trace._series_data
        self._a = _Arrays(
            sd.src, sd.tgt, sd.coef, sd.out_coef, sd.exit_coef, sd.transient, sd.alpha
        )
        position = np.asarray(trace.data.position)
        self._events = tuple(
            None
            if e is None
            else (jnp.asarray(position[e.src].astype(np.int32)), jnp.asarray(position[e.tgt]))
            for e in history.events
        )
        self._order = trace.data.order
        self._expect = jax.jit(self._expect_impl, static_argnames=("n",))
        self._dist = jax.jit(self._dist_impl, static_argnames=("n", "n_last"))
        self._second = jax.jit(self._second_impl, static_argnames=("n",))

    def graph_state(self, vertex: int) -> list[int] | int:
        """The graph state of a vertex (its index when the trace keeps no states)."""
        states = self.history.states
        return vertex if states is None else np.asarray(states)[vertex].tolist()

    # -- inputs -----------------------------------------------------------------------------
    def _phi(self, phi: Any) -> jax.Array:
        phi = jnp.asarray(phi, dtype=jnp.float64)
        if phi.shape != (len(self.parameters),):
            raise ValueError(
                f"theta has shape {phi.shape}; expected ({len(self.parameters)},) for "
                f"parameters {list(self.parameters)} (use jax.vmap for batches)"
            )
        return phi

    def _check(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Concrete rates and boundaries, validated (eager calls only)."""
        rates = np.asarray(self.history.rates(jnp.asarray(phi)))
        times = np.asarray(self.history.times(jnp.asarray(phi)))
        if not np.all(np.isfinite(rates)) or np.any(rates < 0):
            raise ValueError(f"epoch rates {rates.tolist()}; expected finite and >= 0")
        if times.size and (
            not np.all(np.isfinite(times)) or times[0] <= 0 or np.any(np.diff(times) <= 0)
        ):
            raise ValueError(f"epoch boundaries {times.tolist()}; expected 0 < τ_1 < τ_2 < …")
        # the last epoch is solved: every transient state must reach absorption there
        out = np.asarray(self.trace._out_coef) @ rates[-1]
        trapped = np.flatnonzero((out <= 0) & (np.asarray(self._a.transient) > 0))
        if trapped.size:
            state = self.graph_state(int(np.asarray(self._order)[trapped[0]]))
            raise ValueError(
                f"state {state} cannot reach absorption in the last epoch (its rates "
                f"{rates[-1].tolist()} give it no exit): give every deme positive rates in "
                "the last epoch, even one that holds no lineages then"
            )
        for i, e in enumerate(self.history.events):
            if e is None:
                continue
            w = np.asarray(e.weight(jnp.asarray(phi)))
            sums = np.zeros(self.trace.n_vertices)
            np.add.at(sums, e.src, w)
            bad = np.flatnonzero((np.abs(sums - 1) > 1e-12) & np.isin(np.arange(sums.size), e.src))
            if np.any(w < 0) or bad.size:
                raise ValueError(
                    f"event {i}: weights {w.tolist()} must be >= 0 and sum to 1 per state"
                )
        return rates, times

    def n_terms(self, phi: Any, t_max: float | None = None) -> tuple[int, int]:
        """Static budget at ``phi``: terms for the finite epochs (the largest of them) and
        for the last epoch's series up to ``t_max`` (0 without times)."""
        rates, times = self._check(np.asarray(phi, dtype=np.float64))
        out = np.asarray(self.trace._out_coef) @ rates.T  # (V, K)
        lam = np.max(out, axis=0)
        lengths = np.diff(np.concatenate([[0.0], times]))
        n = max([terms_for(float(lam[k] * lengths[k])) for k in range(len(lengths))] or [0])
        last = 0
        if t_max is not None:
            span = max(float(t_max) - (times[-1] if times.size else 0.0), 0.0)
            last = terms_for(float(lam[-1] * span))
        return n, last

    # -- the forward pass ---------------------------------------------------------------------
    def _forward(self, phi, n: int):
        a = self._a
        rates, times = self.history.rates(phi), self.history.times(phi)
        starts = jnp.concatenate([jnp.zeros((1,), phi.dtype), times])
        pi = a.alpha
        firsts, seconds, lams, coeffs = [], [], [], []
        for k in range(self.history.n_epochs - 1):
            end, first, sec, lam, c = _finite(a, rates[k], starts[k + 1] - starts[k], pi, n)
            firsts.append(first)
            seconds.append(sec)
            lams.append(lam)
            coeffs.append(c)
            pi = end
            if self._events[k] is not None:
                pi = _apply(self._events[k], self.history.events[k].weight(phi), pi)
        return rates, starts, pi, firsts, seconds, lams, coeffs

    @staticmethod
    def _covered(starts, lams, n: int):
        """Whether ``n`` terms cover every finite epoch (else the result is NaN)."""
        if not lams:
            return jnp.asarray(True)
        mu = jnp.stack(lams) * jnp.diff(starts)
        return jnp.all(mu <= _span(n, TAIL))

    def _expect_impl(self, phi, r, n: int):
        rates, starts, pi, firsts, _, lams, _ = self._forward(phi, n)
        r = r[self._order] * self._a.transient[:, None]
        total = sum((f @ r for f in firsts), jnp.zeros(r.shape[1]))
        x = self.trace._solve(self.trace.data, rates[-1], r)
        return jnp.where(self._covered(starts, lams, n), total + pi @ x, jnp.nan)

    def _dist_impl(self, phi, t, n: int, n_last: int):
        rates, starts, pi, _, _, lams, coeffs = self._forward(phi, n)
        cols = jnp.stack([self._a.exit_coef @ rates[-1], self._a.transient], axis=1)
        lam, _, last = _series(self._a, rates[-1], pi, n_last, cols)
        width = max(n, n_last)
        pad = [jnp.pad(c, ((0, width - c.shape[0]), (0, 0))) for c in [*coeffs, last]]
        table, lam_all = jnp.stack(pad), jnp.stack([*lams, lam])
        k = jnp.clip(jnp.searchsorted(starts, t, side="right") - 1, 0, starts.shape[0] - 1)
        x = lam_all[k] * jnp.maximum(t - starts[k], 0.0)
        values = _mixture(table[k], x)
        # beyond what the static numbers of terms cover: NaN, never a silently wrong value
        limit = jnp.where(k == len(lams), _span(max(n_last, 1), TAIL), _span(max(n, 1), TAIL))
        return jnp.where((t >= 0) & (x <= limit), values, jnp.nan)

    def _second_impl(self, phi, n: int):
        rates, starts, pi, firsts, seconds, lams, _ = self._forward(phi, n)
        live = self._a.transient
        total = sum(
            (
                starts[k] * (f @ live) + s @ live
                for k, (f, s) in enumerate(zip(firsts, seconds, strict=True))
            ),
            jnp.zeros(()),
        )
        mean = sum((f @ live for f in firsts), jnp.zeros(()))
        h = self.trace._solve(self.trace.data, rates[-1], jnp.stack([live], axis=1))
        h2 = self.trace._solve(self.trace.data, rates[-1], h * live[:, None])
        mean = mean + pi @ h[:, 0]
        second = 2.0 * (total + starts[-1] * (pi @ h[:, 0]) + pi @ h2[:, 0])
        return jnp.where(self._covered(starts, lams, n), jnp.stack([mean, second]), jnp.nan)

    # -- public -------------------------------------------------------------------------------
    def _budget(self, phi, n_terms, t_max=None) -> tuple[int, int]:
        if n_terms is not None:
            return (n_terms, n_terms) if isinstance(n_terms, int) else tuple(n_terms)
        if isinstance(phi, jax.core.Tracer):
            raise ValueError(
                "inside jit, grad or vmap give n_terms= (from EpochTrace.n_terms at a "
                "concrete theta): the series' lengths are static"
            )
        return self.n_terms(phi, t_max)

    def expectation(self, theta: Any, rewards: Any = None, *, n_terms=None) -> jax.Array:
        """``E[∫ r(X_t) dt]`` to absorption under the history; ``rewards=None`` gives
        ``E[T]``. Rewards are ``(V,)`` or ``(V, k)`` in graph vertex order."""
        phi = self._phi(theta)
        n, _ = self._budget(phi, n_terms)
        if rewards is None:
            return self._expect(phi, jnp.ones((self.trace.n_vertices, 1)), n=n)[0]
        r = jnp.asarray(rewards, dtype=jnp.float64)
        if r.ndim not in (1, 2) or r.shape[0] != self.trace.n_vertices:
            raise ValueError(
                f"rewards have shape {r.shape}; expected ({self.trace.n_vertices},) or "
                f"({self.trace.n_vertices}, k)"
            )
        e = self._expect(phi, r[:, None] if r.ndim == 1 else r, n=n)
        return e[0] if r.ndim == 1 else e

    def moments(self, theta: Any, *, n_terms=None) -> jax.Array:
        """``[E[T], E[T²]]`` of the absorption time under the history."""
        phi = self._phi(theta)
        n, _ = self._budget(phi, n_terms)
        return self._second(phi, n=n)

    def _distribution(self, theta, t, n_terms):
        phi = self._phi(theta)
        t = jnp.atleast_1d(jnp.asarray(t, dtype=jnp.float64))
        t_max = None if isinstance(t, jax.core.Tracer) else float(jnp.max(t))
        n, n_last = self._budget(phi, n_terms, t_max)
        return self._dist(phi, t, n=n, n_last=n_last)

    def pdf(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """Density of the absorption time at times ``t``."""
        return self._distribution(theta, t, n_terms)[0]

    def survival(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """``P(T > t)``."""
        return self._distribution(theta, t, n_terms)[1]

    def cdf(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """``P(T ≤ t)``."""
        return 1.0 - self.survival(theta, t, n_terms=n_terms)
