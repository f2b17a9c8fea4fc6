"""Dense linear-algebra reference computations on a graph (for tests and small models).

These build the full sub-intensity matrix, so they are O(V²) in memory and O(V³) in time:
use them to check results on graphs of up to a few thousand vertices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from phasemake.graph.build import Graph

__all__ = ["expected_rewards", "expected_time", "sub_intensity"]


def sub_intensity(graph: Graph, theta: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The phase-type representation ``(alpha, S, transient)`` of a graph at ``theta``.

    ``transient`` are the indices of the non-absorbing vertices, ``S`` the ``(T, T)``
    sub-intensity matrix among them and ``alpha`` the initial probabilities restricted to
    them (mass on absorbing vertices is immediate absorption).

    Examples
    --------
    >>> from phasemake import build_graph
    >>> from phasemake.models import kingman
    >>> alpha, S, _ = sub_intensity(build_graph(kingman, n=3), [1.0])
    >>> S.tolist()
    [[-3.0, 3.0], [0.0, -1.0]]
    """
    rates = graph.rates(theta)
    n = graph.n_vertices
    q = np.zeros((n, n))
    np.add.at(q, (graph.edge_src, graph.edge_tgt), rates)
    q[np.diag_indices(n)] = -q.sum(axis=1)
    transient = np.flatnonzero(~graph.absorbing)
    alpha_full = np.zeros(n)
    np.add.at(alpha_full, graph.init_index, graph.init_prob)
    return alpha_full[transient], q[np.ix_(transient, transient)], transient


def expected_rewards(graph: Graph, theta: Any, rewards: Any = None) -> np.ndarray:
    """``E[∫ r(X_t) dt]`` until absorption, by a dense solve of ``(-S) x = r``.

    Parameters
    ----------
    graph, theta
        The graph and a parameter vector.
    rewards
        ``(V,)`` or ``(V, k)`` rewards per vertex (default: ones, giving E[T]).

    Returns
    -------
    numpy.ndarray
        A scalar array for ``(V,)`` rewards, else shape ``(k,)``.
    """
    alpha, s, transient = sub_intensity(graph, theta)
    r = np.ones(graph.n_vertices) if rewards is None else np.asarray(rewards, dtype=float)
    if r.shape[0] != graph.n_vertices:
        raise ValueError(
            f"rewards have {r.shape[0]} rows; expected one per vertex ({graph.n_vertices})"
        )
    x = scipy.linalg.solve(-s, r[transient])
    return alpha @ x


def expected_time(graph: Graph, theta: Any) -> float:
    """Expected time to absorption ``E[T]``."""
    return float(expected_rewards(graph, theta))
