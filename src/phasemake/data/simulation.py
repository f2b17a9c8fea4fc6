"""Exact simulation of observations under one epoch: absorption times by Gillespie paths
through the graph, and Poisson random field SFS counts (histories:
:mod:`phasemake.data.epochsim`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasemake.data.observations import Observations

__all__ = ["simulate_absorption_times", "simulate_sfs", "times_observed"]


def simulate_absorption_times(
    graph, theta: Any, *, size: int, seed: int, censor_at: float | None = None
) -> Observations:
    """Exact (Gillespie) absorption times of ``size`` independent paths through ``graph``.

    Deterministic for a given ``seed``. With ``censor_at``, times beyond it are reported
    as ``censor_at`` with ``censored = 1``.

    Examples
    --------
    >>> from phasemake import build_graph
    >>> from phasemake.models import kingman
    >>> obs = simulate_absorption_times(build_graph(kingman, n=2), [1.0], size=20000, seed=1)
    >>> round(float(obs.columns["time"].mean()), 1)   # Exp(1)
    1.0
    """
    rng = np.random.default_rng(seed)
    rates = graph.rates(theta)
    n = graph.n_vertices
    out = np.bincount(graph.edge_src, weights=rates, minlength=n)
    start = np.searchsorted(graph.edge_src, np.arange(n + 1))
    cum = np.zeros_like(rates)
    for v in np.flatnonzero(out > 0):  # per-vertex cumulative jump probabilities
        a, b = start[v], start[v + 1]
        cum[a:b] = np.cumsum(rates[a:b]) / out[v]
    probs = np.asarray(graph.init_prob, dtype=np.float64)
    where = graph.init_index[rng.choice(probs.size, size=size, p=probs / probs.sum())]
    time = np.zeros(size)
    alive = out[where] > 0
    while alive.any():
        idx = np.flatnonzero(alive)
        v = where[idx]
        time[idx] += rng.exponential(1.0 / out[v])
        u = rng.random(idx.size)
        where[idx] = graph.edge_tgt[_pick(cum, start[v], start[v + 1], u)]
        alive[idx] = out[where[idx]] > 0
    return times_observed(time, censor_at)


def times_observed(time: np.ndarray, censor_at: float | None) -> Observations:
    """Simulated absorption times as observations: times beyond ``censor_at`` reported as
    ``censor_at`` with ``censored = 1``; every weight 1."""
    censored = np.zeros(time.size)
    if censor_at is not None:
        censored = (time > censor_at).astype(np.float64)
        time = np.minimum(time, censor_at)
    return Observations(
        "absorption_times", {"time": time, "censored": censored, "weight": np.ones(time.size)}
    )


def _pick(cum: np.ndarray, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Vectorised: for each walker, the edge in ``[a, b)`` where ``cum`` first exceeds ``u``."""
    width = int((b - a).max())
    offsets = np.arange(width)
    pos = np.minimum(a[:, None] + offsets[None, :], (b - 1)[:, None])
    passed = (cum[pos] <= u[:, None]) & (offsets[None, :] < (b - a - 1)[:, None])
    return a + passed.sum(axis=1)


def simulate_sfs(expected: np.ndarray, *, sites: np.ndarray, seed: int) -> Observations:
    """Poisson random field counts: ``xi_i ~ Poisson(sites_w · expected_i)`` per window.

    ``expected`` is the per-site expected SFS, ``mutation · E[ξ_i](θ)``.
    """
    rng = np.random.default_rng(seed)
    sites = np.asarray(sites, dtype=np.float64)
    counts = rng.poisson(sites[:, None] * np.asarray(expected)[None, :]).astype(np.float64)
    return Observations("sfs", {"sites": sites, "counts": counts})
