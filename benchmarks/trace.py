"""Trace recording and evaluation vs phasic, on the block-counting and two-deme models.

Prints, with the target from the traces issue beside each figure:
- n=40 block-counting: record time (all units, one core), jit compile time, all 39 SFS
  expectations at a new θ, E[T] at a new θ, the gradients of E[T], of the first three
  moments and of the 39 x 39 SFS covariance with their cost ratios,
  batched throughput (θ per second at batch 64);
- n=30: the density at 100 time points, with its max abs. error against SciPy's
  ``expm_multiply`` on the sparse generator (an independent method), and the gradient of
  ``Σ log f`` against its forward cost under fixed budgets 1, 2, 8 and 64 times what θ
  needs (the intervals past ``max(t)`` are skipped; past ``RESIDUAL_BYTES`` of kept steps
  reverse mode recomputes them);
- two-deme n = 50, 100 and 200 (n/2 lineages per deme): record; compile and E[T] of the
  stacked walk (one program per padded shape, the default there) and of the unrolled one
  (one program per level), side by side; the stacked gradient;
- phasic 0.32.1 on the same problems (``--phasic-python``: an interpreter where phasic,
  installed with ``pip install --no-deps phasic``, imports), in the same run.

Timings at a "new θ" are medians over 20 distinct θ values after one warm-up call.

Usage::

    python benchmarks/trace.py [--phasic-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
from doc_table import recorded
from phasic_models import BLOCK_COUNTING

PHASIC_SCRIPT = r"""
import json, sys, time
import numpy as np
import phasic

{block_counting}

res = {}
g = phasic.Graph(block_counting, ipv=[40] + [0] * 39, theta_dim=1, graph_cache=False)
states = np.asarray(g.states())
rewards = [states[:, i].astype(float) for i in range(39)]
g.update_weights([1.0]); g.expectation()
ts = []
for k in range(5):
    t = time.perf_counter(); g.update_weights([1.0 + 0.01 * (k + 1)]); g.expectation()
    ts.append(time.perf_counter() - t)
res["et40"] = float(np.median(ts))
ts = []
for k in range(3):
    t = time.perf_counter(); g.update_weights([1.0 + 0.01 * (k + 1)])
    [g.expectation(r) for r in rewards]
    ts.append(time.perf_counter() - t)
res["sfs40"] = float(np.median(ts))
g30 = phasic.Graph(block_counting, ipv=[30] + [0] * 29, theta_dim=1, graph_cache=False)
grid = np.asarray(json.loads(sys.argv[1]))
g30.update_weights([1.0])
t = time.perf_counter(); pdf = np.asarray(g30.pdf(grid)); res["pdf30"] = time.perf_counter() - t
res["pdf30_values"] = pdf.tolist()
print(json.dumps(res))
"""


def timed(fn, thetas) -> float:
    fn(thetas[0]).block_until_ready()
    times = []
    for th in thetas[1:]:
        t = time.perf_counter()
        fn(th).block_until_ready()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reference_pdf(graph, theta, grid) -> np.ndarray:
    """α exp(S t) s at an evenly spaced grid by scipy.sparse.linalg.expm_multiply."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import expm_multiply

    rates = graph.rates(theta)
    n = graph.n_vertices
    q = csr_matrix((rates, (graph.edge_src, graph.edge_tgt)), shape=(n, n)).tolil()
    out = np.asarray(q.sum(axis=1)).ravel()
    q.setdiag(-out)
    q = q.tocsr()
    transient = np.flatnonzero(~graph.absorbing)
    s_mat = q[transient][:, transient]
    exit_rate = np.asarray(q[transient][:, np.flatnonzero(graph.absorbing)].sum(axis=1)).ravel()
    alpha = np.zeros(n)
    np.add.at(alpha, graph.init_index, graph.init_prob)
    rows = expm_multiply(
        s_mat.T, alpha[transient], start=grid[0], stop=grid[-1], num=grid.size, endpoint=True
    )
    return rows @ exit_rate


def row(what: str, value: str, target: str, phasic: str = "") -> None:
    print(f"  {what:<46} {value:>14}   target {target:<10} {phasic}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phasic-python", default=None)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import phasemake
    from phasemake.models import block_counting, two_deme
    from phasemake.trace.units import record_trace_arrays

    grid = np.linspace(0.01, 5.0, 100)
    phasic: dict = {}
    script = PHASIC_SCRIPT.replace("{block_counting}", BLOCK_COUNTING)
    cmd = [args.phasic_python or sys.executable, "-c", script, json.dumps(grid.tolist())]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        phasic = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"phasic not run: {last}")

    def ph(key: str, ours: float) -> str:
        if key not in phasic:
            return ""
        return f"phasic {phasic[key] * 1e3:.1f} ms ({phasic[key] / ours:.0f}x ours)"

    thetas = [jnp.array([1.0 + 0.01 * k]) for k in range(21)]
    print("block-counting n=40")
    g40 = phasemake.build_graph(block_counting, n=40)
    t = time.perf_counter()
    arrays, units = record_trace_arrays(g40)
    record = time.perf_counter() - t
    trace = phasemake.Trace(arrays, parameters=g40.parameters)
    print(
        f"  {g40.n_vertices} vertices, {g40.n_edges} edges, {trace.n_levels} levels, "
        f"{len(units)} unit(s)"
    )
    row("record trace (all units, one core)", f"{record:.2f} s", "<= 5 s")
    sfs_rewards = jnp.asarray(g40.states[:, :39], dtype=jnp.float64)
    t = time.perf_counter()
    trace.expectation(thetas[0], sfs_rewards).block_until_ready()
    compile_s = time.perf_counter() - t
    row("jit compile (first call)", f"{compile_s:.2f} s", "<= 10 s")
    sfs = timed(lambda th: trace.expectation(th, sfs_rewards), thetas)
    row("39 SFS expectations at a new θ", f"{sfs * 1e3:.2f} ms", "<= 10 ms", ph("sfs40", sfs))
    et = timed(lambda th: trace.expectation(th), thetas)
    row("E[T] at a new θ", f"{et * 1e3:.2f} ms", "<= 2 ms", ph("et40", et))
    grad = jax.jit(jax.grad(lambda th: trace.expectation(th)))
    g_time = timed(grad, thetas)
    row("grad of E[T] (cost / forward)", f"{g_time * 1e3:.2f} ms ({g_time / et:.1f}x)", "<= 3x")
    for name, fn in (
        ("E[T], E[T^2], E[T^3]", lambda th: jnp.sum(trace.moments(th, 3))),
        ("39 x 39 SFS covariance", lambda th: jnp.sum(trace.covariance(th, sfs_rewards))),
    ):
        fwd, rev = timed(jax.jit(fn), thetas), timed(jax.jit(jax.grad(fn)), thetas)
        row(
            f"{name}: grad (cost / forward)",
            f"{rev * 1e3:.2f} ms ({rev / fwd:.1f}x its {fwd * 1e3:.2f} ms)",
            "<= 3x",
        )
    batch = jnp.linspace(0.5, 2.0, 64)[:, None]
    vm = jax.jit(jax.vmap(lambda th: trace.expectation(th)))
    b_time = timed(vm, [batch * (1 + 0.01 * k) for k in range(6)])
    row("batched E[T], batch 64", f"{64 / b_time:,.0f} θ/s", "(report)")

    print("block-counting n=30, density at 100 time points in [0.01, 5]")
    g30 = phasemake.build_graph(block_counting, n=30)
    t30 = phasemake.compile_trace(g30)
    t30.pdf([1.0], grid).block_until_ready()
    times = []
    for th in (1.01, 1.02, 1.03):
        t = time.perf_counter()
        t30.pdf([th], grid).block_until_ready()
        times.append(time.perf_counter() - t)
    pdf_time = statistics.median(times)
    ref = reference_pdf(g30, [1.0], grid)
    err = float(np.max(np.abs(np.asarray(t30.pdf([1.0], grid)) - ref)))
    row("density, new θ", f"{pdf_time:.3f} s", "<= 0.2 s", ph("pdf30", pdf_time))
    row("max abs error vs expm_multiply", f"{err:.1e}", "<= 1e-9")
    if "pdf30_values" in phasic:
        ph_err = float(np.max(np.abs(np.asarray(phasic["pdf30_values"]) - ref)))
        row("phasic max abs error vs expm_multiply", f"{ph_err:.1e}", "-")

    # samplers fix a budget for the fastest θ they may visit; the unused intervals are skipped
    need = t30.n_terms([1.0], grid)

    def loglik(budget, grad):
        f = lambda th: jnp.sum(jnp.log(t30.pdf(th, grid, n_terms=budget)))  # noqa: E731
        return jax.jit(jax.grad(f) if grad else f)

    thetas30 = [jnp.array([1.0 + 0.01 * k]) for k in range(11)]
    for times_need in (1, 2, 8, 64):
        budget = times_need * need
        fwd, rev = (timed(loglik(budget, grad), thetas30) for grad in (False, True))
        row(
            f"grad of Σ log f, budget {times_need}x the need",
            f"{rev * 1e3:.1f} ms ({rev / fwd:.2f}x its forward {fwd * 1e3:.1f} ms)",
            "<= 3x" if times_need == 1 else "(report)",
        )

    for n in (50, 100, 200):
        two_deme_row(n, jax, jnp, phasemake, two_deme)


def two_deme_row(n, jax, jnp, phasemake, two_deme) -> None:
    """Two-deme n lineages (n/2 per deme): every level below the top is one cyclic
    component (sizes 3 to n + 1). The stacked walk (the default above 8 such levels)
    against the unrolled one, in the same run."""
    print(f"two-deme n1 = n2 = {n // 2} (n = {n})")
    graph = phasemake.build_graph(two_deme, n1=n // 2, n2=n // 2)
    t = time.perf_counter()
    trace = phasemake.compile_trace(graph)
    record = time.perf_counter() - t
    cyclic = sum(1 for lv in trace._levels if lv.groups)
    print(f"  {graph.n_vertices} vertices, {graph.n_edges} edges, {trace.n_levels} levels")
    row("record trace", f"{record:.2f} s", "(report)")
    thetas = [jnp.array([1.0 + 0.01 * k, 0.5]) for k in range(21)]
    unrolled = phasemake.Trace(trace.arrays, parameters=graph.parameters, walk="unrolled")
    figures = {}
    for name, tr in (("stacked", trace), ("unrolled", unrolled)):
        t = time.perf_counter()
        tr.expectation(thetas[0]).block_until_ready()
        figures[name] = (time.perf_counter() - t, timed(tr.expectation, thetas))
    (c_s, e_s), (c_u, e_u) = figures["stacked"], figures["unrolled"]
    programs = len(trace.data.stacked.buckets)
    print(f"  {cyclic} levels hold a cyclic component; the stacked walk has {programs} programs")
    row("jit compile, stacked", f"{c_s:.2f} s", "<= 3 s" if n == 100 else "(report)")
    row("jit compile, unrolled (one program per level)", f"{c_u:.2f} s", "(report)")
    row("E[T] at a new θ, stacked", f"{e_s * 1e3:.2f} ms", "(report)")
    row(
        "E[T] at a new θ, unrolled",
        f"{e_u * 1e3:.2f} ms (stacked / unrolled {e_s / e_u:.2f})",
        "<= 1.2",
    )
    grad = jax.jit(jax.grad(lambda th: trace.expectation(th)))
    t = time.perf_counter()
    grad(thetas[0]).block_until_ready()
    compile_grad = time.perf_counter() - t
    g = timed(grad, thetas)
    row("grad of E[T], stacked: compile", f"{compile_grad:.2f} s", "(report)")
    row("grad of E[T], stacked (cost / forward)", f"{g * 1e3:.2f} ms ({g / e_s:.1f}x)", "<= 3x")
    same = abs(float(trace.expectation(thetas[3])) - float(unrolled.expectation(thetas[3])))
    row("|E[T] stacked - unrolled|", f"{same:.1e}", "rounding")


if __name__ == "__main__":
    with recorded("trace"):  # also docs/performance/trace.md
        main()
