"""An island-model coalescent: an example of a user model file.

Lineages live on ``DEMES`` islands; pairs on the same island coalesce at rate ``coal`` and
each lineage migrates to each other island at rate ``mig / (DEMES - 1)``. The spec hash
follows the helper ``moves`` and the constant ``DEMES``: editing either rebuilds the graph;
editing comments or docstrings does not.
"""

import phasemake

DEMES = 3


def moves(counts):
    """Every (next_state, coefficients) pair out of ``counts``."""
    out = []
    for i, k in enumerate(counts):
        if k >= 2:
            new = list(counts)
            new[i] -= 1
            out.append((new, (k * (k - 1) / 2, 0.0)))
        if k >= 1:
            for j in range(DEMES):
                if j != i:
                    new = list(counts)
                    new[i] -= 1
                    new[j] += 1
                    out.append((new, (0.0, k / (DEMES - 1))))
    return out


def start(n):
    """All ``n`` lineages start on island 0."""
    return [n] + [0] * (DEMES - 1)


@phasemake.model(parameters=["coal", "mig"], initial=start)
def island(state, n):
    """Island-model coalescent of ``n`` lineages until their most recent common ancestor."""
    counts = state.tolist()
    if sum(counts) < 2:
        return []
    return moves(counts)
