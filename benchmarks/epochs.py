"""Expected SFS under a three-epoch history: phasemake's EpochTrace against PhaseGen.

The history is the block-counting coalescent with sizes 1 → 0.25 → 1 (relative to the
first) changing at 0.5 and 1.5 coalescent units: coalescence rates ``coal`` = 1, 4, 1 with
boundaries 0.5, 1.5, all five of them parameters. For n = 10, 20, 30 it prints:

- phasemake: graph build + trace record; the first call of the jit-compiled expected SFS
  (compilation included); the median per call at a new θ; the gradient of
  ``Σ SFS · w`` with respect to all five parameters (rates and boundaries) by ``jax.grad``.
  The block-counting coalescent lumps exactly into its lineage counts
  (:mod:`phasemake.trace.lumping`), so ``EpochTrace`` evaluates the epochs on that block
  chain by dense matrix exponentials; the general path (uniformisation over all states,
  ``lump=False``, one fixed ``n_terms`` covering every θ used) is timed beside it, with
  the largest difference between the two;
- the one-epoch cost at the same n (``trace.expectation(θ, rewards)``, jit-compiled) and
  the ratio epoch / one-epoch (the epochs issue's goal: at most K + 1 = 4);
- PhaseGen (``--phasegen-python``: an interpreter where ``phasegen`` imports; never a
  dependency of phasemake) at the same θ values, in its own process per n: first call
  (state space included, import not) and median per call, both with its default (the
  mean SFS of the standard coalescent computed on the lineage-counting state space,
  "flattened") and on the full block-counting state space (``block``), as phasemake does;
- the largest relative difference between the two expected SFS over all bins and all θ.

Units: phasemake's ``coal`` is the pairwise coalescence rate (``E[ξ_i] = 2/i`` at
``coal = 1``); PhaseGen's standard coalescent merges each pair at rate ``1/N(t)``, its
``sfs.mean`` bin i is the expected length of branches subtending i samples (``2/i`` at
N = 1), so PhaseGen's sizes are ``1/coal`` and no rescaling is needed.

"New θ" timings are medians over 20 θ values after the first call (all five parameters
change from one θ to the next), cycled 10 times for phasemake's sub-millisecond calls.

Usage::

    python benchmarks/epochs.py [--phasegen-python /path/to/python] [--sizes 10 20 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from doc_table import recorded

HELPER = Path(__file__).resolve().parent / "_phasegen_sfs.py"
#: coalescence rates of the three epochs and the two boundaries
PHI0 = (1.0, 4.0, 1.0, 0.5, 1.5)
N_THETA = 21  # the first call, then 20 new θ


def thetas() -> list[list[float]]:
    """PHI0, then N_THETA - 1 nearby vectors in which every parameter moves."""
    out = []
    for k in range(N_THETA):
        c0, c1, c2, t1, t2 = PHI0
        out.append(
            [
                c0 * (1 + 0.010 * k),
                c1 * (1 - 0.005 * k),
                c2 * (1 + 0.020 * k),
                t1 * (1 + 0.010 * k),
                t2 * (1 + 0.005 * k),
            ]
        )
    return out


def timed(fn, args, repeat: int = 10) -> tuple[float, float]:
    """(first call, median of the later calls: the other θ, ``repeat`` rounds), each to
    block_until_ready. Sub-millisecond calls need many to give a stable median."""
    t = time.perf_counter()
    fn(args[0]).block_until_ready()
    first = time.perf_counter() - t
    times = []
    for a in args[1:] * repeat:
        t = time.perf_counter()
        fn(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def three_epochs(graph):
    """The benchmark's history: coalescence rates c0, c1, c2 with boundaries t1, t2."""
    import phasemake

    return phasemake.epochs(
        ["c0", "c1", "c2", "t1", "t2"],
        rates=[{"coal": "c0"}, {"coal": "c1"}, {"coal": "c2"}],
        times=["t1", "t2"],
        graph=graph,
    )


def first_use(n: int, cache: str) -> None:
    """Child process: graph build, trace record and the first expected SFS, timed from
    after the imports, with JAX's persistent compilation cache in ``cache`` (as every
    workflow job has it); prints a JSON line."""
    import jax
    import jax.numpy as jnp

    from phasemake.fit.analysis import enable_compilation_cache

    enable_compilation_cache(cache)
    import phasemake
    from phasemake.models import block_counting

    t = time.perf_counter()
    graph = phasemake.build_graph(block_counting, n=n)
    history = three_epochs(graph)
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), history)
    rewards = jnp.asarray(graph.states[:, : n - 1], dtype=jnp.float64)
    jax.block_until_ready(et.expectation(jnp.asarray(PHI0), rewards))
    print(json.dumps({"seconds": time.perf_counter() - t}))


def first_use_seconds(n: int, cache: str) -> float:
    """Seconds of :func:`first_use` in a fresh process."""
    cmd = [sys.executable, __file__, "--first-use", str(n), cache]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def phasegen(python: str, n: int, phis: list[list[float]], block: bool) -> dict:
    """Run the helper; a dict with first_s, per_call_s, sfs, or ``error``."""
    cmd = [python, str(HELPER), str(n), json.dumps(phis)] + (["block"] if block else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phasegen-python", default=sys.executable)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--first-use", nargs=2, metavar=("N", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_use:
        first_use(int(args.first_use[0]), args.first_use[1])
        return

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    import phasemake
    from phasemake.models import block_counting

    phis = thetas()
    rows, notes = [], []
    cache = tempfile.mkdtemp(prefix="phasemake-epochs-bench-")
    for n in args.sizes:
        t = time.perf_counter()
        graph = phasemake.build_graph(block_counting, n=n)
        trace = phasemake.compile_trace(graph)
        build = time.perf_counter() - t
        history = three_epochs(graph)
        et = phasemake.EpochTrace(trace, history)
        rewards = jnp.asarray(graph.states[:, : n - 1], dtype=jnp.float64)
        budget = max(et.n_terms(p) for p in phis)
        weights = jnp.arange(1.0, n)

        args_phi = [jnp.asarray(p, dtype=jnp.float64) for p in phis]
        sfs = jax.jit(lambda p: et.expectation(p, rewards, n_terms=budget))  # noqa: B023
        first, per_call = timed(sfs, args_phi)
        grad = jax.jit(
            jax.grad(lambda p: jnp.sum(et.expectation(p, rewards, n_terms=budget) * weights))  # noqa: B023
        )
        _, grad_s = timed(grad, args_phi)
        one = jax.jit(lambda th: trace.expectation(th, rewards))  # noqa: B023
        _, one_s = timed(one, [jnp.asarray(p[:1], dtype=jnp.float64) for p in phis])
        # the general path (uniformisation over every state), which the block chain
        # replaces when the model lumps: the same numbers, for reference
        general = phasemake.EpochTrace(trace, history, lump=False)
        series = jax.jit(lambda p: general.expectation(p, rewards, n_terms=budget))  # noqa: B023
        _, series_s = timed(series, args_phi, repeat=1)
        series_diff = max(
            float(np.max(np.abs(np.asarray(series(p)) - np.asarray(sfs(p))) / np.asarray(sfs(p))))
            for p in args_phi
        )
        ours = np.stack([np.asarray(sfs(p)) for p in args_phi])
        g0 = np.asarray(grad(args_phi[0]))
        if not np.all(np.isfinite(ours)) or not np.all(np.isfinite(g0)):
            raise RuntimeError(f"n={n}: non-finite SFS or gradient (n_terms={budget})")

        # one epoch at coal = 1 against the exact 2/i (the units phasemake's SFS is in)
        exact = 2.0 / np.arange(1, n)
        one_err = float(np.max(np.abs(np.asarray(one(jnp.array([1.0]))) - exact) / exact))

        row = {
            "n": n,
            "states": graph.n_vertices,
            "build": build,
            "first": first,
            "per": per_call,
            "grad": grad_s,
            "one": one_s,
            "budget": budget,
            "blocks": et.lumping.n_blocks if et.lumping is not None else None,
            # a fresh process with an empty, then a warm persistent compilation cache
            "cold": first_use_seconds(n, cache),
            "warm": first_use_seconds(n, cache),
            "series": series_s,
        }
        for key, block in (("pg", False), ("pgb", True)):
            res = phasegen(args.phasegen_python, n, phis, block)
            if "error" in res:
                notes.append(f"PhaseGen ({key}, n={n}): not available ({res['error']})")
                continue
            theirs = np.asarray(res["sfs"])
            rel = float(np.max(np.abs(theirs - ours) / np.abs(ours)))
            row[key] = (res["first_s"], res["per_call_s"], rel, res["version"])
        rows.append(row)
        notes.append(
            f"n={n}: block chain of {row['blocks']} blocks; general path (n_terms={budget}) "
            f"{series_s * 1e3:.2f} ms per call, max rel. difference {series_diff:.1e}; "
            f"one-epoch SFS at coal=1 vs 2/i: max rel. error {one_err:.1e}; "
            f"gradient at θ0 = {np.array2string(g0, precision=4)}"
        )

    def pg_cols(row, key):
        if key not in row:
            return ["n/a", "n/a", "n/a", "n/a"]
        first, per, rel, _ = row[key]
        return [f"{first:.2f}", f"{per * 1e3:.2f}", f"{per / row['per']:.2f}", f"{rel:.1e}"]

    version = next((r[k][3] for r in rows for k in ("pg", "pgb") if k in r), None)
    print(
        "Expected SFS, block-counting coalescent, sizes 1 -> 0.25 -> 1 (coal = 1, 4, 1; "
        "boundaries 0.5, 1.5)"
    )
    print(f"PhaseGen {version}" if version else "PhaseGen: not available (see notes)")
    print("pm = phasemake (jit; the block chain of lineage counts, found by exact lumping),")
    print("PG = PhaseGen default (lineage-counting),")
    print("PGb = PhaseGen on the block-counting state space; 'per call' = median at a new θ;")
    print("rel. diff = max over bins and 21 θ of |PG - pm| / pm. Timings are indicative.")
    print("'first use' = a fresh process's build, record and first expected SFS (imports")
    print("excluded), with JAX's persistent compilation cache empty, then warm (as the")
    print("workflow's jobs run); PhaseGen's 'first call' includes its state space likewise.")
    print()
    head = [
        "n",
        "states",
        "pm build+record s",
        "pm first call s",
        "pm first use s (cold / warm cache)",
        "pm per call ms",
        "pm grad ms",
        "grad/value",
        "one-epoch ms",
        "epoch/one-epoch",
        "PG first call s",
        "PG per call ms",
        "PG/pm",
        "PG rel. diff",
        "PGb first call s",
        "PGb per call ms",
        "PGb/pm",
        "PGb rel. diff",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" for _ in head) + "|")
    for r in rows:
        cells = [
            str(r["n"]),
            str(r["states"]),
            f"{r['build']:.2f}",
            f"{r['first']:.2f}",
            f"{r['cold']:.2f} / {r['warm']:.2f}",
            f"{r['per'] * 1e3:.2f}",
            f"{r['grad'] * 1e3:.2f}",
            f"{r['grad'] / r['per']:.1f}",
            f"{r['one'] * 1e3:.2f}",
            f"{r['per'] / r['one']:.2f}",
        ]
        first, per, ratio, rel = pg_cols(r, "pg")
        firstb, perb, ratiob, relb = pg_cols(r, "pgb")
        cells += [first, per, ratio, rel, firstb, perb, ratiob, relb]
        print("| " + " | ".join(cells) + " |")
    print()
    for note in notes:
        print(note)


if __name__ == "__main__":
    with recorded("epochs"):  # also docs/performance/epochs.md
        main()
