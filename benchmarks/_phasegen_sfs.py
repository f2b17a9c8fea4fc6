"""PhaseGen's expected SFS under piecewise-constant sizes (run by benchmarks/epochs.py).

Runs in an environment where PhaseGen imports (``pip install phasegen``; PhaseGen is never
a dependency of phasemake). Arguments: the sample size n and a JSON list of parameter
vectors ``[c_0, c_1, c_2, τ_1, τ_2]`` in phasemake's units (coalescence rates ``c_k`` and
boundaries ``τ_k``). PhaseGen's standard coalescent merges each pair at rate ``1/N(t)``
with ``N(t)`` its population size in coalescent units, so the sizes are ``1/c_k`` from
time 0, ``τ_1`` and ``τ_2``, and ``Coalescent(n, demography=...).sfs.mean[1:n]`` is the same
quantity as phasemake's block-counting rewards ``states[:, :n-1]`` (``2/i`` at ``c = 1``).

A third argument ``block`` turns off PhaseGen's default flattening (by default the mean
SFS of the standard coalescent is computed on the lineage-counting state space, n - 1
states, with fixed weights per bin; ``block`` makes it use the full block-counting state
space, as phasemake does).

Prints one JSON line: the import time, the first vector's time (state space, numba
compilation and the SFS), the median time at each further vector (a fresh ``Coalescent``:
PhaseGen caches its results per object, its state spaces across objects), and every SFS.

Usage::

    /path/to/phasegen/python benchmarks/_phasegen_sfs.py 10 '[[1, 4, 1, 0.5, 1.5], ...]' [block]
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def sfs(pg, n: int, phi: list[float]) -> list[float]:
    c0, c1, c2, t1, t2 = phi
    demography = pg.Demography(pop_sizes={"pop_0": {0.0: 1 / c0, t1: 1 / c1, t2: 1 / c2}})
    mean = pg.Coalescent(n=n, demography=demography).sfs.mean
    return [float(x) for x in list(mean.data)[1:n]]


def main() -> None:
    n = int(sys.argv[1])
    phis = json.loads(sys.argv[2])
    block = sys.argv[3:] == ["block"]
    t = time.perf_counter()
    import phasegen as pg

    imported = time.perf_counter() - t
    pg.Settings.flatten_block_counting = not block
    values, times = [], []
    for phi in phis:
        t = time.perf_counter()
        values.append(sfs(pg, n, phi))
        times.append(time.perf_counter() - t)
    out = {
        "version": pg.__version__,
        "import_s": imported,
        "first_s": times[0],
        "per_call_s": statistics.median(times[1:]),
        "sfs": values,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
