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
- **density, survival and cdf** of the absorption time by the trace's own adaptive series
  (:mod:`phasemake.trace.uniformisation`) started from the distribution entering each
  time's epoch (the last epoch's series as long as the largest time asked for needs);
- **E[T²]** from the epochs' integrals ``∫ π(s) ds`` and ``∫ s π(s) ds`` and two solves in
  the last epoch.

All of it is one pure function of the flat parameters φ per budget (the numbers of terms
are static), so it compiles once per trace and budget, is differentiable in every rate,
boundary and event weight, and ``jax.vmap``-able over φ with a fixed budget.

A trace that **lumps exactly** into a small chain of blocks (no events; see
:mod:`phasemake.trace.lumping`: the one-deme coalescents, so every size history of one
deme) has its expectations and E[T²] computed on that block chain instead, one dense
matrix exponential per finite epoch and a triangular solve for the last: no series and
no budget (``EpochTrace.lumping`` says whether it does; ``lump=False`` turns it off).

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
from phasemake.trace import lumping, uniformisation
from phasemake.trace.epochs import Epochs
from phasemake.trace.evaluator import parameter_vector
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


#: Steps per block of a finite epoch's series: blocks past what the epoch needs are skipped.
STEP_BLOCK = 128


def _finite(a: _Arrays, theta, d, pi, n: int):
    """One finite epoch of length ``d`` from ``pi``: the distribution at its end, the
    integrals ``∫ π`` and ``∫ s π`` over it (V,), and λ.

    The series runs in blocks of :data:`STEP_BLOCK` steps, accumulating each term as it
    goes (one V-vector kept a step); a block that starts beyond ``μ + 12√μ + 40`` terms
    (``μ = λd``: the Poisson weights there are below 1e-30) is skipped, so a budget sized
    for the fastest θ a sampler may visit costs each θ only what it needs."""
    rate = a.coef @ theta
    out = a.out_coef @ theta
    lam = jnp.maximum(jnp.max(out), 1e-300)
    mu = lam * d
    need = mu + 12.0 * jnp.sqrt(mu) + 40.0
    zero = jnp.zeros_like(pi)

    def step(carry, m):
        v, end, first, second = carry
        w = jnp.exp(jax.scipy.special.xlogy(m, mu) - mu - gammaln(m + 1.0))
        end = end + w * v
        first = first + gammainc(m + 1.0, mu) / lam * v  # ∫_0^d π(s) ds
        second = second + (m + 1.0) * gammainc(m + 2.0, mu) / lam**2 * v  # ∫_0^d s π(s) ds
        flow = jax.ops.segment_sum(rate * v[a.src], a.tgt, v.shape[0], indices_are_sorted=True)
        return (v + (flow - out * v) / lam, end, first, second), None

    def block(carry, b):
        ms = b * STEP_BLOCK + jnp.arange(STEP_BLOCK, dtype=jnp.float64)
        run = lambda c: jax.lax.scan(step, c, ms)[0]  # noqa: E731
        return jax.lax.cond(b * STEP_BLOCK <= need, run, lambda c: c, carry), None

    blocks = jnp.arange(max(1, -(-n // STEP_BLOCK)), dtype=jnp.float64)
    (_, end, first, second), _ = jax.lax.scan(block, (pi, zero, zero, zero), blocks)
    return end, first, second, lam


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

    def __init__(self, trace, history: Epochs, *, lump: bool = True) -> None:
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
        found = None
        if lump and all(e is None for e in history.events):
            found = trace.lumping  # found once per trace (or stored in its trace file)
        #: the block chain when the trace lumps exactly (see :mod:`phasemake.trace.lumping`)
        self.lumping = found
        if found is None:
            self._expect = jax.jit(self._expect_impl, static_argnames=("n",))
            self._second = jax.jit(self._second_impl, static_argnames=("n",))
        else:
            self._blocks = lumping.block_arrays(found)
            self._expect = jax.jit(self._lumped_expect, static_argnames=("n",))
            self._second = jax.jit(self._lumped_second, static_argnames=("n",))
        self._dist = jax.jit(self._dist_impl, static_argnames=("n", "n_last"))
        # the history's values at φ in one program (not one small program per operation)
        self._values = jax.jit(
            lambda phi: (
                history.rates(phi),
                history.times(phi),
                [None if e is None else e.weight(phi) for e in history.events],
            )
        )

    @property
    def n_vertices(self) -> int:
        """Number of vertices V of the graph (rewards have V rows)."""
        return self.trace.n_vertices

    @property
    def n_edges(self) -> int:
        """Number of edges of the graph."""
        return self.trace.n_edges

    def graph_state(self, vertex: int) -> list[int] | int:
        """The graph state of a vertex (its index when the trace keeps no states)."""
        states = self.history.states
        return vertex if states is None else np.asarray(states)[vertex].tolist()

    # -- inputs -----------------------------------------------------------------------------
    def _phi(self, phi: Any) -> jax.Array:
        return parameter_vector(phi, self.parameters)

    def _check(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Concrete rates and boundaries, validated (eager calls only)."""
        rates, times, weights = jax.device_get(self._values(jnp.asarray(phi)))
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
            w = weights[i]
            sums = np.zeros(self.n_vertices)
            np.add.at(sums, e.src, w)
            bad = np.flatnonzero((np.abs(sums - 1) > 1e-12) & np.isin(np.arange(sums.size), e.src))
            if np.any(w < 0) or bad.size:
                raise ValueError(
                    f"event {i}: weights {w.tolist()} must be >= 0 and sum to 1 per state"
                )
        return rates, times

    def n_terms(self, theta: Any, t: Any = None) -> int:
        """Terms that every series at ``theta`` needs, up to the largest of the times ``t``
        (a number or an array; ``None``: the expectations only). Pass it (or a tuple from
        :meth:`terms`) as ``n_terms=`` inside ``jit``, ``grad`` or ``vmap``; what it does
        not cover comes back NaN. The same signature as :meth:`phasemake.Trace.n_terms`."""
        t_max = None if t is None else float(np.max(np.asarray(t, dtype=np.float64)))
        return max(self.terms(theta, t_max))

    def terms(self, phi: Any, t_max: float | None = None) -> tuple[int, int]:
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
        """Rates, epoch starts, the distribution entering each epoch (after its event), and
        the finite epochs' integrals ``∫π``, ``∫sπ`` and rates λ."""
        a = self._a
        rates, times = self.history.rates(phi), self.history.times(phi)
        starts = jnp.concatenate([jnp.zeros((1,), phi.dtype), times])
        pi = a.alpha
        entries, firsts, seconds, lams = [pi], [], [], []
        for k in range(self.history.n_epochs - 1):
            end, first, sec, lam = _finite(a, rates[k], starts[k + 1] - starts[k], pi, n)
            firsts.append(first)
            seconds.append(sec)
            lams.append(lam)
            pi = end
            if self._events[k] is not None:
                pi = _apply(self._events[k], self.history.events[k].weight(phi), pi)
            entries.append(pi)
        return rates, starts, entries, firsts, seconds, lams

    @staticmethod
    def _covered(starts, lams, n: int):
        """Whether ``n`` terms cover every finite epoch (else the result is NaN)."""
        if not lams:
            return jnp.asarray(True)
        mu = jnp.stack(lams) * jnp.diff(starts)
        return jnp.all(mu <= _span(n, TAIL))

    def _expect_impl(self, phi, r, n: int):
        rates, starts, entries, firsts, _, lams = self._forward(phi, n)
        pi = entries[-1]
        r = r[self._order] * self._a.transient[:, None]
        total = sum((f @ r for f in firsts), jnp.zeros(r.shape[1]))
        x = self.trace._solve(self.trace.data, rates[-1], r)
        return jnp.where(self._covered(starts, lams, n), total + pi @ x, jnp.nan)

    def _dist_impl(self, phi, t, n: int, n_last: int):
        """Each time's density and survival from its epoch: the trace's own adaptive series
        (level truncation; intervals of ``BLOCK`` steps whose rate falls as the process
        leaves the crowded top levels) started from the distribution entering that epoch,
        at ``t - τ_k``. A finite epoch's series needs at most ``n`` steps, the last one's
        ``n_last``; times they do not reach are NaN, never a wrong value."""
        rates, starts, entries, _, _, lams = self._forward(phi, n)
        k = jnp.clip(jnp.searchsorted(starts, t, side="right") - 1, 0, starts.shape[0] - 1)
        values = None
        for e, pi in enumerate(entries):
            last = e == len(entries) - 1
            steps = n_last if last else n
            here, _ = uniformisation.series(
                self.trace._series_data._replace(alpha=pi),
                rates[e],
                jnp.where(k == e, t - starts[e], 0.0),
                kind="both",
                n_levels=self.trace.n_levels,
                n_intervals=max(1, -(-steps // uniformisation.BLOCK)),
            )
            values = here if values is None else jnp.where((k == e)[None, :], here, values)
        covered = self._covered(starts, lams, n)
        return jnp.where((t >= 0) & covered, values, jnp.nan)

    def _second_impl(self, phi, n: int):
        rates, starts, entries, firsts, seconds, lams = self._forward(phi, n)
        pi = entries[-1]
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

    # -- the block chain (a lumpable trace without events) ----------------------------------------
    def _lumped_expect(self, phi, r, n: int):
        r = r[self._order] * self._a.transient[:, None]
        rates, times = self.history.rates(phi), self.history.times(phi)
        return lumping.block_expectation(self._blocks, rates, times, r)

    def _lumped_second(self, phi, n: int):
        rates, times = self.history.rates(phi), self.history.times(phi)
        return lumping.block_moments(self._blocks, rates, times)

    # -- public -------------------------------------------------------------------------------
    def _budget(self, phi, n_terms, t_max=None, *, series: bool = True) -> tuple[int, int]:
        """The static numbers of terms; ``series=False`` for expectations and moments, which
        the block chain of a lumped trace computes without a series (and without a budget,
        even inside ``jit``)."""
        if self.lumping is not None and not series:
            if not isinstance(phi, jax.core.Tracer):
                self._check(np.asarray(phi))
            return 0, 0
        if n_terms is not None:
            return (n_terms, n_terms) if isinstance(n_terms, int) else tuple(n_terms)
        if isinstance(phi, jax.core.Tracer):
            raise ValueError(
                "inside jit, grad or vmap give n_terms= (from EpochTrace.n_terms at a "
                "concrete theta): the series' lengths are static"
            )
        return self.terms(phi, t_max)

    def expectation(self, theta: Any, rewards: Any = None, *, n_terms=None) -> jax.Array:
        """``E[∫ r(X_t) dt]`` to absorption under the history; ``rewards=None`` gives
        ``E[T]``. Rewards are ``(V,)`` or ``(V, k)`` in graph vertex order."""
        phi = self._phi(theta)
        n, _ = self._budget(phi, n_terms, series=False)
        if rewards is None:
            return self._expect(phi, jnp.ones((self.n_vertices, 1)), n=n)[0]
        r = jnp.asarray(rewards, dtype=jnp.float64)
        if r.ndim not in (1, 2) or r.shape[0] != self.n_vertices:
            raise ValueError(
                f"rewards have shape {r.shape}; expected ({self.n_vertices},) or "
                f"({self.n_vertices}, k)"
            )
        e = self._expect(phi, r[:, None] if r.ndim == 1 else r, n=n)
        return e[0] if r.ndim == 1 else e

    def moments(self, theta: Any, *, n_terms=None) -> jax.Array:
        """``[E[T], E[T²]]`` of the absorption time under the history."""
        phi = self._phi(theta)
        n, _ = self._budget(phi, n_terms, series=False)
        return self._second(phi, n=n)

    def _distribution(self, theta, t, n_terms):
        phi = self._phi(theta)
        t = jnp.atleast_1d(jnp.asarray(t, dtype=jnp.float64))
        t_max = None if isinstance(t, jax.core.Tracer) else float(jnp.max(t))
        n, n_last = self._budget(phi, n_terms, t_max)
        return self._dist(phi, t, n=n, n_last=n_last)

    def pdf_and_survival(self, theta: Any, t: Any, *, n_terms=None):
        """Density and ``P(T > t)`` at times ``t`` from one pass."""
        values = self._distribution(theta, t, n_terms)
        return values[0], values[1]

    def pdf(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """Density of the absorption time at times ``t``."""
        return self._distribution(theta, t, n_terms)[0]

    def survival(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """``P(T > t)``."""
        return self._distribution(theta, t, n_terms)[1]

    def cdf(self, theta: Any, t: Any, *, n_terms=None) -> jax.Array:
        """``P(T ≤ t)``."""
        return 1.0 - self.survival(theta, t, n_terms=n_terms)
