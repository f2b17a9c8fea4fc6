"""Kingman's coalescent, tracked by the number of lineages."""

from __future__ import annotations

from phasemake.graph.model import model


def kingman_initial(n: int) -> list[int]:
    """Start with ``n`` lineages."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"kingman: n={n!r}; expected an integer sample size >= 2")
    return [n]


@model(parameters=["coal"], initial=kingman_initial)
def kingman(state, n):
    """Kingman's coalescent: ``k`` lineages coalesce at rate ``coal * k (k - 1) / 2``.

    State ``(k,)``; absorbing at ``k = 1``. With ``coal = 1`` the time to the most recent
    common ancestor has ``E[T_MRCA] = 2 (1 - 1/n)``.
    """
    k = int(state[0])
    if k < 2:
        return []
    return [([k - 1], (k * (k - 1) / 2,))]
