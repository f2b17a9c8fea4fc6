"""Bigger state spaces on this machine: block-counting n = 40, 50, 60 and a three-deme
island model with 30 lineages (issue 19).

Each model runs in its own child process (so that its peak memory, ``ru_maxrss``, is its
own): build the graph, record its trace (one process, all units), then evaluate at a new θ
the expected SFS (block counting: all n - 1 classes, checked against the closed form
E[ξ_i] = 2/(i·coal)), also on the block chain of lineage counts that the SFS observation
model uses (lumping found once, then per call), or E[T_MRCA] (the island model, built
from a demes graph: three demes of 1,000 diploids exchanging migrants at 1e-3 per
generation, 10 lineages in each, and checked against the mean TMRCA of 4,000 msprime
simulations of the same samples, whose Monte Carlo error is printed beside it, where
msprime is installed). "first" is the first evaluation (tracing and compilation, with
JAX's persistent cache off), "per call" the median of 5 calls at new θ.

Usage::

    python benchmarks/big_models.py [--sizes 40 50 60] [--island]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, statistics, sys, time
import numpy as np
import phasemake

kind, n = sys.argv[1], int(sys.argv[2])
out = {"model": kind, "n": n}
t = time.perf_counter()
if kind == "block_counting":
    from phasemake.models import block_counting
    graph = phasemake.build_graph(block_counting, n=n)
else:
    import demes
    b = demes.Builder(time_units="generations")
    for name in "ABC":
        b.add_deme(name, epochs=[dict(start_size=1000)])
    b.add_migration(demes=["A", "B", "C"], rate=1e-3)
    dg = b.resolve()
    model = phasemake.from_demes(dg, {"A": n // 3, "B": n // 3, "C": n - 2 * (n // 3)})
    graph = phasemake.build_graph(model.model, **model.params)
out["build_s"] = time.perf_counter() - t
out["states"], out["edges"] = int(graph.n_vertices), int(len(graph.edge_src))
t = time.perf_counter()
trace = phasemake.compile_trace(graph)
out["record_s"] = time.perf_counter() - t
if kind == "block_counting":
    rewards = graph.states[:, : n - 1].astype(float)
    f = lambda c: np.asarray(trace.expectation(np.array([c]), rewards))
    thetas = [1.0, 1.1, 1.3, 0.7, 2.0, 0.5]
    check = lambda c, v: float(np.max(np.abs(v * c / (2.0 / np.arange(1, n)) - 1)))
else:
    from phasemake.trace.epochtrace import EpochTrace
    et = EpochTrace(trace, model.history(graph))
    f = lambda c: float(et.expectation(np.asarray(model.theta0)))
    thetas = [1.0] * 6
    check = None
    try:
        import msprime
        # haploid samples of a diploid population: pairs coalesce at 1/(2N), as in from_demes
        sims = msprime.sim_ancestry(
            samples=[msprime.SampleSet(n // 3, population=p, ploidy=1) for p in "AB"]
            + [msprime.SampleSet(n - 2 * (n // 3), population="C", ploidy=1)],
            ploidy=2, demography=msprime.Demography.from_demes(dg), num_replicates=4000,
            random_seed=1,
        )
        tmrca = np.array([ts.first().time(ts.first().root) for ts in sims])
        want, mc = tmrca.mean(), tmrca.std() / np.sqrt(tmrca.size)
        out["msprime_tmrca"], out["msprime_se"] = float(want), float(mc)
        check = lambda c, v: abs(v / want - 1)
    except ImportError:
        pass
t = time.perf_counter(); v = f(thetas[0]); out["first_s"] = time.perf_counter() - t
times = []
for c in thetas[1:]:
    t = time.perf_counter(); v = f(c); times.append(time.perf_counter() - t)
out["per_call_ms"] = 1e3 * statistics.median(times)
out["rel_error"] = None if check is None else check(thetas[-1], v)
if kind == "block_counting":
    # the SFS observation model's path: the block chain of lineage counts (exact lumping),
    # with the rewards per block computed once
    import jax
    import jax.numpy as jnp
    from phasemake.trace import lumping
    t = time.perf_counter()
    found = lumping.lump(trace._series_data)
    order = np.asarray(trace.data.order)
    per_block = jnp.asarray(lumping.project(found, rewards[order]))
    blocks = lumping.block_arrays(found)
    out["lump_s"] = time.perf_counter() - t
    g = jax.jit(lambda c: lumping.chain_expectation(blocks, c[None, :], jnp.zeros(0), per_block))
    g(jnp.array([thetas[0]])).block_until_ready()
    chain_times = []
    for c in thetas[1:] * 20:
        t = time.perf_counter(); w = g(jnp.array([c])).block_until_ready()
        chain_times.append(time.perf_counter() - t)
    out["chain_ms"] = 1e3 * statistics.median(chain_times)
    out["chain_error"] = check(thetas[-1], np.asarray(w))
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(kind: str, n: int) -> dict:
    env_cmd = [sys.executable, "-c", CHILD, kind, str(n)]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"model": kind, "n": n, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[40, 50, 60])
    parser.add_argument("--no-island", action="store_true")
    args = parser.parse_args()
    rows = [run("block_counting", n) for n in args.sizes]
    if not args.no_island:
        rows.append(run("island", 30))
    print(
        "| model | states | edges | build | record | first evaluation | per call "
        "(new θ) | rel. error | peak memory | block chain: lump | per call | rel. error |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        name = (
            f"block counting n = {r['n']} (E[SFS])"
            if r["model"] == "block_counting"
            else f"3-deme island, {r['n']} lineages (E[T_MRCA])"
        )
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |||||||")
            continue
        err = "–" if r["rel_error"] is None else f"{r['rel_error']:.1e}"
        if "msprime_se" in r:
            err += f" (MC ± {r['msprime_se'] / r['msprime_tmrca']:.1e})"
        print(
            f"| {name} | {r['states']:,} | {r['edges']:,} | {r['build_s']:.1f} s | "
            f"{r['record_s']:.1f} s | {r['first_s']:.1f} s | {r['per_call_ms']:.1f} ms | "
            f"{err} | {r['peak_mb']:,.0f} MB | "
            + (
                f"{r['lump_s']:.1f} s | {r['chain_ms']:.3f} ms | {r['chain_error']:.1e} |"
                if "lump_s" in r
                else "– | – | – |"
            )
        )
    print(
        "\nGoal (issue 19) at n = 50: E[SFS] ≤ 20 ms a call and build ≤ 10 s. The island "
        "model's error is against the mean of msprime simulations (an independent method). "
        "'per call (new θ)' is the level-by-level solve over every state (Trace.expectation); "
        "'block chain' is what the SFS observation model evaluates for a one-deme "
        "coalescent: its exact lumping into lineage counts (found once, with the rewards "
        "per block) and the expected SFS on that chain, both checked against 2/(i·coal)."
    )


if __name__ == "__main__":
    from doc_table import recorded

    with recorded("big_models"):
        t0 = time.perf_counter()
        main()
        print(f"\n(total {time.perf_counter() - t0:.0f} s)")
