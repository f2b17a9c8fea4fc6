"""Consensus Monte Carlo through the workflow: S shards on --cores 2 vs --cores 1, against
full-data NUTS, and each shard job's fixed overhead.

In one run, on a temporary copy of the workflow with one analysis of the default config
(``two_deme_times``: 20,000 two-deme coalescence times, n1 = n2 = 6):

1. the data, traces and NLSQ fit are made first (not timed below);
2. full-data NUTS (S = 1, ``results/{analysis}/cmc/S1/shard0.h5``) with ``--cores 2``;
   as the first NUTS job it also compiles with a cold JAX cache;
3. the consensus (S from the config, ``auto`` by default) with ``--cores 2``, then, after
   deleting the CMC outputs and the JAX compilation cache, with ``--cores 1`` (both runs
   start cold: the first shard job compiles the NUTS programs, which take the data as
   arguments, and the other shards load them from the cache);
4. the consensus against full-data NUTS (``compare_full.json``);
5. a simulated cluster with one node per shard: the slowest shard job's wall time plus
   the combine job's (their ``benchmark:`` files), against full-data NUTS;
6. per shard job: Snakemake's wall time (``benchmark:`` file), the Python start before
   the script, imports, JAX compile seconds (all chains, from ``jax.monitoring``), warm-up
   (adaptation, compile included) and the draws (the sampling phase less its own
   compilation), all from the job's log. The fixed overhead is everything but the draws.

Usage::

    python benchmarks/cmc.py [--analysis two_deme_times] [--shards auto]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from doc_table import recorded

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from phasemake.core.artefact import read_json_artefact  # noqa: E402

PATTERNS = {
    "imports": re.compile(r"imports ([0-9.]+) s"),
    "compile": re.compile(r"compile ([0-9.]+) s \(all chains\); total ([0-9.]+) s with (\d+) thr"),
    "warmup": re.compile(r"chain \d+: warm-up ([0-9.]+) s \(compile ([0-9.]+) s\)"),
    "sampling": re.compile(r"chain \d+: \d+ draws in ([0-9.]+) s \(compile ([0-9.]+) s\)"),
}


def snakemake(root: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=root, check=True, capture_output=True
    )
    return time.perf_counter() - start


def shard_costs(root: Path, analysis: str, parts: int) -> list[dict[str, float]]:
    """Per shard job of ``S{parts}``: the timings of the module docstring (seconds)."""
    rows = []
    folder = root / f"logs/sample_shard/{analysis}/S{parts}"
    for s in range(parts):
        text = (folder / f"shard{s}.log").read_text()
        wall = float((folder / f"shard{s}.benchmark.tsv").read_text().splitlines()[1].split()[0])
        compile_s, total, threads = map(float, PATTERNS["compile"].findall(text)[-1])
        warmup = [tuple(map(float, m)) for m in PATTERNS["warmup"].findall(text)]
        sampling = [tuple(map(float, m)) for m in PATTERNS["sampling"].findall(text)]
        # with threads, chains overlap: a phase's wall time is its slowest chain's; with one
        # thread they run one after the other and the phases add up. The draws proper are
        # the sampling phase without the sampling loop's compilation
        phase = max if threads > 1 else sum
        draws = phase(w - k for w, k in sampling)
        rows.append(
            {
                "wall": wall,
                "start": wall - total,
                "imports": float(PATTERNS["imports"].findall(text)[-1]),
                "compile": compile_s,
                "warmup": phase(w for w, _ in warmup),
                "draws": draws,
                "fixed": wall - draws,
            }
        )
    return rows


def report(label: str, rows: list[dict[str, float]]) -> None:
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    print(
        f"  {label:<36} wall {mean['wall']:6.1f} s: Python start {mean['start']:.1f}, imports "
        f"{mean['imports']:.1f}, warm-up {mean['warmup']:.1f} (adaptation; all compilation: "
        f"{mean['compile']:.1f} CPU s), draws {mean['draws']:.1f}; fixed overhead (all but "
        f"the draws) {mean['fixed']:.1f} s = {mean['fixed'] / mean['wall']:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--analysis", default="two_deme_times")
    parser.add_argument("--shards", default=None, help="override cmc.shards (an int or auto)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="phasemake-cmc-"))
    for part in ("Snakefile", "rules", "scripts", "config", "envs", "models"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    analysis = config["analyses"][args.analysis]
    config["analyses"] = {args.analysis: analysis}
    config["models"] = {analysis["model"]: config["models"][analysis["model"]]}
    if args.shards is not None:
        shards = args.shards if args.shards == "auto" else int(args.shards)
        analysis.setdefault("cmc", {})["shards"] = shards
    (root / "config/config.yaml").write_text(yaml.safe_dump(config))
    cmc = root / f"results/{args.analysis}/cmc"

    prep = snakemake(root, "--cores", "2", f"results/{args.analysis}/nlsq/fit.json")
    full = snakemake(root, "--cores", "2", str((cmc / "S1/shard0.h5").relative_to(root)))
    full_rows = shard_costs(root, args.analysis, 1)
    target = str((cmc / "consensus.json").relative_to(root))
    two = snakemake(root, "--cores", "2", target)
    plan = read_json_artefact(cmc / "plan.json", kind="phasemake.shard_plan", versions=(1,))
    parts = plan["shards"]
    rows_two = shard_costs(root, args.analysis, parts)
    summary = read_json_artefact(
        cmc / "consensus.json", kind="phasemake.consensus_summary", versions=(1,)
    )
    combine_bench = root / f"logs/combine_shards/{args.analysis}.benchmark.tsv"
    combine = float(combine_bench.read_text().splitlines()[1].split()[0])
    # a cluster with one node per shard: the slowest shard job, then the combine job
    cluster = max(r["wall"] for r in rows_two) + combine
    snakemake(root, "--cores", "2", str((cmc / "compare_full.json").relative_to(root)))
    comparison = read_json_artefact(
        cmc / "compare_full.json", kind="phasemake.posterior_comparison", versions=(1,)
    )
    shutil.copytree(cmc / f"S{parts}", root / "cores2", dirs_exist_ok=True)
    for path in [cmc / f"S{parts}", cmc / "consensus.h5", cmc / "consensus.json"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    # both runs start from a cold cache, so that they pay the same compilation
    shutil.rmtree(root / "cache/jax")
    one = snakemake(root, "--cores", "1", target)
    rows_one = shard_costs(root, args.analysis, parts)
    same = all(
        (root / "cores2" / f"shard{s}.h5").read_bytes()
        == (cmc / f"S{parts}/shard{s}.h5").read_bytes()
        for s in range(parts)
    )

    print(f"workflow copy: {root}")
    print(
        f"{args.analysis}: {plan['points']:,} points, S = {parts} ({plan['how']}), "
        f"{plan['points_per_shard'][0]:,} points per shard"
    )
    print(f"  data + graph + trace + NLSQ (not timed below)  {prep:8.1f} s")
    print(f"  full-data NUTS (S = 1), --cores 2               {full:8.1f} s")
    print(f"  CMC, S = {parts} shards + combine, --cores 2        {two:8.1f} s")
    print(f"  CMC, S = {parts} shards + combine, --cores 1        {one:8.1f} s")
    print(f"  speed-up --cores 2 over --cores 1               {one / two:8.2f}x")
    print(f"  full-data NUTS / CMC --cores 2                  {full / two:8.2f}x")
    print(f"  CMC / full-data NUTS --cores 2                  {two / full:8.2f}x")
    print(
        f"  one node per shard (slowest shard {max(r['wall'] for r in rows_two):.1f} s + "
        f"combine {combine:.1f} s)  {cluster:8.1f} s = {cluster / full:.2f}x full-data NUTS"
    )
    print(f"  shard files identical for --cores 1 and 2       {same}")
    report("full-data job (cold JAX cache)", full_rows)
    report(f"shard jobs, --cores 2 (mean of {parts})", rows_two)
    report(f"shard jobs, --cores 1 (mean of {parts})", rows_one)
    print("  consensus vs full-data NUTS:")
    for name, row in comparison["parameters"].items():
        print(
            f"    {name:<8} mean off by {row['mean_diff_in_sd']:+.3f} full-data sd, "
            f"sd ratio {row['sd_ratio']:.3f}"
        )
    print(f"    largest correlation difference {comparison['max_correlation_diff']:.3f}")
    print(f"    agreement {comparison['agreement']}")
    print("  truth against the consensus posterior:")
    for name, row in summary.get("truth", {}).items():
        print(
            f"    {name:<8} true {row['true']:.4g}, posterior mean {row['mean']:.4g} ± "
            f"{row['sd']:.2g} ({row['z']:+.2f} sd), inside the 90% interval: {row['in_90']}"
        )


if __name__ == "__main__":
    with recorded("cmc"):  # also docs/performance/cmc.md
        main()
