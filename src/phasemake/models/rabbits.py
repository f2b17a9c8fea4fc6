"""The rabbits model from phasic's documentation: rabbits on two islands that flood."""

from __future__ import annotations

from phasemake.graph.model import model


def rabbits_initial(nr_rabbits: int) -> list[int]:
    """All rabbits start on the left island."""
    if not isinstance(nr_rabbits, int) or isinstance(nr_rabbits, bool) or nr_rabbits < 1:
        raise ValueError(f"rabbits: nr_rabbits={nr_rabbits!r}; expected a positive integer")
    return [nr_rabbits, 0]


@model(parameters=["jump", "flood_left", "flood_right"], initial=rabbits_initial)
def rabbits(state, nr_rabbits):
    """Rabbits jumping between two islands until floods have drowned them all.

    State ``(left, right)``: rabbits on each island. Each rabbit jumps to the other island
    at rate ``jump``; the left (right) island floods at rate ``flood_left``
    (``flood_right``), drowning every rabbit on it. Absorbing at ``(0, 0)``.
    """
    left, right = state.tolist()
    out = []
    if left:
        out.append(([left - 1, right + 1], (float(left), 0.0, 0.0)))
        out.append(([0, right], (0.0, 1.0, 0.0)))
    if right:
        out.append(([left + 1, right - 1], (float(right), 0.0, 0.0)))
        out.append(([left, 0], (0.0, 0.0, 1.0)))
    return out
