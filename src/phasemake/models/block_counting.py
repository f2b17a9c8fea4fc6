"""The block-counting coalescent, whose rewards give the site frequency spectrum."""

from __future__ import annotations

from phasemake.graph.model import model


def block_counting_initial(n: int) -> list[int]:
    """``n`` singleton lineages: ``state[0] = n``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"block_counting: n={n!r}; expected an integer sample size >= 2")
    return [n] + [0] * (n - 1)


@model(parameters=["coal"], initial=block_counting_initial)
def block_counting(state, n):
    """Block-counting coalescent for ``n`` samples.

    ``state[i]`` is the number of lineages subtending ``i + 1`` samples (length ``n``).
    Any two lineages coalesce at rate ``coal``: lineages of sizes ``i + 1`` and ``j + 1``
    merge at rate ``s_i s_j`` (``s_i (s_i - 1) / 2`` when ``i == j``) into one of size
    ``i + j + 2``. With reward ``state[i - 1]`` the expected accumulated reward is the
    expected total length of branches subtending ``i`` samples, ``2 / i`` at ``coal = 1``,
    so the expected SFS is proportional to ``1 / i``.
    """
    s = state.tolist()
    nonzero = [i for i, count in enumerate(s) if count]
    out = []
    for pos, i in enumerate(nonzero):
        si = s[i]
        for j in nonzero[pos:]:
            if i == j:
                if si < 2:
                    continue
                rate = si * (si - 1) / 2
            else:
                rate = si * s[j]
            new = s.copy()
            new[i] -= 1
            new[j] -= 1
            new[i + j + 1] += 1
            out.append((new, (rate,)))
    return out
