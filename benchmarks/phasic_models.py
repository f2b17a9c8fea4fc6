"""Models written for phasic's API, for the benchmarks' comparisons (run in phasic's
interpreter, so kept as source text; phasic itself is never imported here)."""

BLOCK_COUNTING = r"""
def block_counting(state, **kw):
    n = len(state)
    out = []
    for i in range(n):
        si = int(state[i])
        if si == 0:
            continue
        for j in range(i, n):
            sj = int(state[j])
            if i == j:
                if si < 2:
                    continue
                rate = si * (si - 1) / 2.0
            else:
                if sj == 0:
                    continue
                rate = float(si * sj)
            new = state.copy()
            new[i] -= 1
            new[j] -= 1
            new[i + j + 1] += 1
            out.append([new, [rate]])
    return out
"""
