"""Exact simulation of absorption times under a history of epochs (Gillespie, epoch by
epoch): the data a model with a history generates, for ``data.simulate`` and for tests.

Each path jumps with its current epoch's rates; a waiting time that would cross the next
boundary stops at the boundary instead (memorylessness makes that exact), where the
boundary's event moves the path to one of its targets with the event's probabilities and
the next epoch's rates take over. A path ends in an absorbing vertex of the graph (one
without transitions), whatever the epoch.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from phasemake.data.observations import Observations
from phasemake.data.simulation import _pick, times_observed

__all__ = ["simulate_epoch_times"]


def _jump_tables(graph, rates: np.ndarray):
    """Per-vertex total rate and cumulative jump probabilities of one epoch."""
    r = graph.rates(rates)
    n = graph.n_vertices
    out = np.bincount(graph.edge_src, weights=r, minlength=n)
    start = np.searchsorted(graph.edge_src, np.arange(n + 1))
    cum = np.zeros_like(r)
    for v in np.flatnonzero(out > 0):
        a, b = start[v], start[v + 1]
        cum[a:b] = np.cumsum(r[a:b]) / out[v]
    return out, start, cum


def _event_tables(event, phi, n: int):
    """The event as (per-vertex start, targets, cumulative probabilities), or None."""
    if event is None:
        return None
    weight = np.asarray(event.weight(jnp.asarray(phi)), dtype=np.float64)
    order = np.argsort(event.src, kind="stable")
    src, tgt, w = event.src[order], event.tgt[order], weight[order]
    start = np.searchsorted(src, np.arange(n + 1))
    cum = np.zeros_like(w)
    for v in np.unique(src):
        a, b = start[v], start[v + 1]
        cum[a:b] = np.cumsum(w[a:b]) / w[a:b].sum()
    return start, tgt, cum


def simulate_epoch_times(
    graph, history, phi: Any, *, size: int, seed: int, censor_at: float | None = None
) -> Observations:
    """Exact absorption times of ``size`` independent paths under ``history`` at ``phi``.

    Deterministic for a given ``seed``. With ``censor_at``, times beyond it are reported
    as ``censor_at`` with ``censored = 1``.

    Examples
    --------
    >>> import phasemake
    >>> from phasemake.models import kingman
    >>> g = phasemake.build_graph(kingman, n=2)
    >>> h = phasemake.epochs(["c", "t"], rates=[{"coal": 0}, {"coal": "c"}], times=["t"],
    ...                      graph=g)
    >>> obs = simulate_epoch_times(g, h, [1.0, 3.0], size=20000, seed=1)
    >>> round(float(obs.columns["time"].min()), 2), round(float(obs.columns["time"].mean()), 1)
    (3.0, 4.0)
    """
    rng = np.random.default_rng(seed)
    phi = np.asarray(phi, dtype=np.float64)
    rates = np.asarray(history.rates(jnp.asarray(phi)), dtype=np.float64)
    bounds = np.append(np.asarray(history.times(jnp.asarray(phi)), dtype=np.float64), np.inf)
    n = graph.n_vertices
    tables = [_jump_tables(graph, r) for r in rates]
    events = [_event_tables(e, phi, n) for e in history.events]
    absorbing = np.asarray(graph.absorbing)
    probs = np.asarray(graph.init_prob, dtype=np.float64)
    where = graph.init_index[rng.choice(probs.size, size=size, p=probs / probs.sum())]
    time, epoch = np.zeros(size), np.zeros(size, dtype=np.int64)
    alive = ~absorbing[where]
    while alive.any():
        for k, (out, start, cum) in enumerate(tables):
            idx = np.flatnonzero(alive & (epoch == k))
            if idx.size == 0:
                continue
            v = where[idx]
            rate = out[v]
            wait = np.full(idx.size, np.inf)
            moving = rate > 0
            wait[moving] = rng.exponential(1.0 / rate[moving])
            cross = time[idx] + wait >= bounds[k]
            jump = idx[~cross]
            if jump.size:
                time[jump] += wait[~cross]
                u = rng.random(jump.size)
                vj = where[jump]
                where[jump] = graph.edge_tgt[_pick(cum, start[vj], start[vj + 1], u)]
            over = idx[cross]
            if over.size:
                if not np.isfinite(bounds[k]):
                    raise ValueError(
                        f"a path is stuck in state {graph.states[where[over[0]]].tolist()} in "
                        "the last epoch (no transitions at its rates)"
                    )
                time[over] = bounds[k]
                epoch[over] = k + 1
                if events[k] is not None:
                    e_start, e_tgt, e_cum = events[k]
                    vo = where[over]
                    has = e_start[vo + 1] > e_start[vo]
                    moved = over[has]
                    if moved.size:
                        vm = where[moved]
                        u = rng.random(moved.size)
                        where[moved] = e_tgt[_pick(e_cum, e_start[vm], e_start[vm + 1], u)]
            alive = ~absorbing[where]
    return times_observed(time, censor_at)
