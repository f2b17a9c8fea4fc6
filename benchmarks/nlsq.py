"""Streaming NLSQ through the workflow vs in-memory SciPy: 10^6 two-deme absorption times.

In one run, on the same simulated data (the two-deme model of the default config,
n1 = n2 = 6, θ = (coal 1.0, mig 0.5), 10^6 exact times, censored at t = 12):

1. the workflow (real snakemake on a temporary copy, ``--cores`` as given): data and
   traces are prepared first, then the NLSQ passes are timed on their own: chunk jobs
   and reducer checkpoints until convergence;
2. SciPy in memory: ``scipy.optimize.minimize`` (L-BFGS-B, analytic-free: SciPy's own
   finite-difference gradient) of the negative log-likelihood computed by an
   eigendecomposition of the dense sub-intensity matrix, from the same initial point;
3. the fixed cost of a chunk job: its wall time (Snakemake's ``benchmark:`` file, Python
   start included) minus its compute time (logged by the job), for the first pass (cold
   JAX compilation cache) and the later ones (warm).

Usage::

    python benchmarks/nlsq.py [--size 1000000] [--cores 2] [--chunks 4]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import yaml
from doc_table import recorded

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from phasemake import read_graph  # noqa: E402
from phasemake.core.artefact import read_json_artefact  # noqa: E402
from phasemake.data.observations import read_observations  # noqa: E402
from phasemake.trace.dense import sub_intensity  # noqa: E402

COMPUTE = re.compile(r"([0-9.]+) s of compute so far")


def snakemake(root: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=root, check=True, capture_output=True
    )
    return time.perf_counter() - start


def dense_nll(graph, theta, t, cens):
    alpha, s, _ = sub_intensity(graph, theta)
    exits = -s.sum(axis=1)
    w, v = np.linalg.eig(s)
    left = alpha @ v
    pdf_c, surv_c = left * np.linalg.solve(v, exits), left * np.linalg.solve(v, np.ones_like(exits))
    total = 0.0
    for a in range(0, t.size, 100_000):  # bounded memory
        e = np.exp(np.outer(t[a : a + 100_000], w))
        c = cens[a : a + 100_000] > 0
        total += np.log(np.real(e[~c] @ pdf_c)).sum() + np.log(np.real(e[c] @ surv_c)).sum()
    return -total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="phasemake-nlsq-"))
    for part in ("Snakefile", "rules", "scripts", "config", "envs", "models"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    initial = {"coal": 0.7, "mig": 1.0}
    config = {
        "cache": "cache",
        "models": {
            "two_deme": {"callback": "phasemake.models:two_deme", "params": {"n1": 6, "n2": 6}}
        },
        "analyses": {
            "bench": {
                "model": "two_deme",
                "observations": "absorption_times",
                "data": {
                    "simulate": {
                        "theta": {"coal": 1.0, "mig": 0.5},
                        "size": args.size,
                        "censor_at": 12.0,
                        "seed": 1,
                    }
                },
                "chunks": args.chunks,
                "nlsq": {"initial": initial},
                "cmc": {"enabled": False},  # NLSQ only: benchmarks/cmc.py times the posterior
            }
        },
    }
    (root / "config/config.yaml").write_text(yaml.safe_dump(config))
    obs_file = "results/bench/data/observations.h5"
    prep = snakemake(root, "--cores", str(args.cores), obs_file)
    wall = snakemake(root, "--cores", str(args.cores))
    fit = read_json_artefact(
        root / "results/bench/nlsq/fit.json", kind="phasemake.fit", versions=(1,)
    )
    est = np.array([fit["parameters"][n]["estimate"] for n in ("coal", "mig")])
    se = np.array([fit["parameters"][n]["se"] for n in ("coal", "mig")])

    cold, warm = [], []
    for bench in sorted((root / "logs/accumulate_chunk/bench").rglob("*.benchmark.tsv")):
        job_s = float(bench.read_text().splitlines()[1].split("\t")[0])
        step = bench.parent.name
        job_log = bench.with_name(bench.name.replace(".benchmark.tsv", ".log")).read_text()
        compute = float(COMPUTE.findall(job_log)[-1])  # the job's last progress line
        (cold if step == "pass0" else warm).append(job_s - compute)

    graph = read_graph(next((root / "cache/graphs").glob("*.h5")))
    obs = read_observations(root / obs_file)
    t, cens = obs.columns["time"], obs.columns["censored"]
    start = time.perf_counter()
    ref = scipy.optimize.minimize(
        lambda x: dense_nll(graph, np.exp(x), t, cens),
        np.log([initial["coal"], initial["mig"]]),
        method="L-BFGS-B",
        options={"ftol": 1e-12, "gtol": 1e-8},
    )
    scipy_s = time.perf_counter() - start

    print(json.dumps({"root": str(root)}))
    print(
        f"two-deme n1=n2=6 ({graph.n_vertices} vertices), {obs.n_rows:,} absorption times "
        f"({int(cens.sum()):,} censored), {args.chunks} chunks, --cores {args.cores}"
    )
    print(f"  data + graph + trace (not timed below)      {prep:8.1f} s")
    print(f"  workflow NLSQ: {fit['passes']} passes, {fit['status']} ({fit['reason'][:40]}...)")
    print(f"  workflow NLSQ wall time                     {wall:8.1f} s")
    print(f"  SciPy L-BFGS-B in memory: {ref.nfev} NLL evaluations")
    print(f"  SciPy wall time                             {scipy_s:8.1f} s")
    print(f"  ratio SciPy / workflow                      {scipy_s / wall:8.2f}x")
    print(
        f"  estimates workflow  coal {est[0]:.6f}  mig {est[1]:.6f}  (se {se[0]:.2g}, {se[1]:.2g})"
    )
    print(f"  estimates SciPy     coal {np.exp(ref.x[0]):.6f}  mig {np.exp(ref.x[1]):.6f}")
    gap = float(np.max(np.abs(est - np.exp(ref.x)) / se))
    print(f"  max |difference| / se                       {gap:8.2g}")
    print(
        f"  chunk-job fixed cost, pass 0 (cold cache)   {statistics.mean(cold):8.2f} s "
        f"(n={len(cold)})"
    )
    if warm:
        print(
            f"  chunk-job fixed cost, later passes (warm)   {statistics.mean(warm):8.2f} s "
            f"(median {statistics.median(warm):.2f}, n={len(warm)})"
        )


if __name__ == "__main__":
    with recorded("nlsq"):  # also docs/performance/nlsq.md
        main()
