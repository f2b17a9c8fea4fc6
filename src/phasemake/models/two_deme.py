"""A structured coalescent with two demes and symmetric migration (cyclic state space)."""

from __future__ import annotations

from phasemake.graph.model import model


def two_deme_initial(n1: int, n2: int) -> list[int]:
    """``n1`` lineages in deme 1 and ``n2`` in deme 2."""
    for name, value in (("n1", n1), ("n2", n2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"two_deme: {name}={value!r}; expected a non-negative integer")
    if n1 + n2 < 2:
        raise ValueError(f"two_deme: n1 + n2 = {n1 + n2}; expected at least 2 lineages")
    return [n1, n2]


@model(parameters=["coal", "mig"], initial=two_deme_initial)
def two_deme(state, n1, n2, relative_size=1.0):
    """Two-deme structured coalescent until the most recent common ancestor.

    State ``(a, b)``: lineages in deme 1 and deme 2. Within deme 1 pairs coalesce at rate
    ``coal``, within deme 2 at ``coal / relative_size``; each lineage migrates to the
    other deme at rate ``mig``. Absorbing when one lineage is left. Migration makes the
    graph cyclic (strongly connected components of size > 1). For two lineages in the
    same deme with ``relative_size = 1``, ``E[T] = 2 / coal``; in different demes
    ``E[T] = 2 / coal + 1 / (2 mig)``.
    """
    a, b = state.tolist()
    if a + b < 2:
        return []
    out = []
    if a >= 2:
        out.append(([a - 1, b], (a * (a - 1) / 2, 0.0)))
    if b >= 2:
        out.append(([a, b - 1], (b * (b - 1) / 2 / relative_size, 0.0)))
    if a >= 1:
        out.append(([a - 1, b + 1], (0.0, float(a))))
    if b >= 1:
        out.append(([a + 1, b - 1], (0.0, float(b))))
    return out
