"""Scaling of the workflow: the default config on --cores 1 and --cores 2, each job's fixed
cost with a cold and a warm JAX compilation cache, and `snakemake -n` with 500 work units.

1. **Cores.** Two temporary copies of the workflow with the default config, each from
   nothing (no results, no graphs or traces, an empty JAX cache): one run with
   ``--cores 2``, one with ``--cores 1``. Per stage (graphs, traces, NLSQ, CMC, report),
   its wall time is the time at least one of its jobs was running (from Snakemake's main
   log; stages of different analyses overlap), and the speed-up is the ratio. The
   parallel stages are traces, NLSQ and CMC; their union is the target (≥ 1.6×).
2. **Fixed cost.** In the ``--cores 2`` copy, one job of each kind that runs JAX is forced
   again, first with an empty JAX cache (cold), then with the run's cache (warm); each
   job log's last line splits its fixed cost into the interpreter's start (Snakemake's
   preamble included), imports and compilation (tracing, lowering, XLA compile or cache
   lookup). A tiny JAX program (import, enable the cache, one jit) is timed the same way.
3. **Dry run.** A third copy with the default models plus a Kingman coalescent with one
   work unit per level (``traces.max_unit_cost: 1``), 500 units in all, and the default
   analyses on smaller data, run to completion; then ``snakemake -n`` on the up-to-date
   workflow is timed (the first and later dry runs), and a no-op ``snakemake --cores 2``
   must run no job.

The machine is shared with nothing else while this runs, or the timings say nothing.

Usage::

    python benchmarks/scaling.py                # everything (about 35 min on 2 cores)
    python benchmarks/scaling.py --quick        # a smoke test on small data (about 10 min)
    python benchmarks/scaling.py --only dryrun  # one part: cores, fixed, nlsq or dryrun
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from doc_table import recorded

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from phasemake.core.artefact import read_json_artefact  # noqa: E402

PARTS = ("Snakefile", "rules", "scripts", "config", "envs", "models", "profiles")

#: Stages by rule (rules not named here, e.g. the report's, count as "report").
STAGES = {
    "graphs": {"build_graph"},
    "traces": {"plan_trace", "record_trace_unit", "stitch_trace"},
    "NLSQ": {
        "prepare_observations",
        "accumulate_chunk",
        "fit_sole_nlsq",
        "step_nlsq",
        "summarise_nlsq",
    },
    "CMC": {"plan_shards", "sample_shard", "combine_shards", "compare_full"},
}
PARALLEL = ("traces", "NLSQ", "CMC")
#: The jobs forced again for the fixed cost: rule -> (output, log), in the workflow's order.
FIXED_JOBS = {
    "prepare_observations": (
        "results/{analysis}/data/observations.h5",
        "logs/prepare_observations/{analysis}.log",
    ),
    # the analysis has one chunk: its whole NLSQ fit is one job
    "fit_sole_nlsq": (
        "results/{analysis}/nlsq/passes.json",
        "logs/fit_sole_nlsq/{analysis}.log",
    ),
    "plan_shards": ("results/{analysis}/cmc/plan.json", "logs/plan_shards/{analysis}.log"),
    "sample_shard": (
        "results/{analysis}/cmc/S{parts}/shard0.h5",
        "logs/sample_shard/{analysis}/S{parts}/shard0.log",
    ),
}
FIXED = re.compile(
    r"fixed cost ([0-9.]+) s = Python start ([0-9.]+) s \+ imports ([0-9.]+) s \+ "
    r"compilation ([0-9.]+) CPU s \(tracing ([0-9.]+), lowering ([0-9.]+), XLA or cache "
    r"lookup ([0-9.]+)\); persistent cache (\d+) hits, (\d+) misses; job ([0-9.]+) s"
)
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


# -- workflow copies ------------------------------------------------------------------------
def copy_workflow(config: dict, prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"phasemake-{prefix}-"))
    for part in PARTS:
        src = REPO / part
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    (root / "config/config.yaml").write_text(yaml.safe_dump(config))
    return root


def snakemake(root: Path, *args: str, env: dict | None = None) -> tuple[float, str]:
    """Run snakemake in ``root``; (wall seconds, stdout + stderr)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {root}:\n{out[-4000:]}")
    return wall, out


def default_config(quick: bool) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    if quick:  # small data and short chains: a smoke test of this script, not a measurement
        for a in config["analyses"].values():
            sim = a["data"]["simulate"]
            if "size" in sim:
                sim["size"] = 3000
            if "windows" in sim:
                sim["windows"] = 60
            a.setdefault("cmc", {}).update(
                # 300 draws cannot reach the default 100 ESS a chain: gates for timing only
                {
                    "warmup": 150,
                    "samples": 150,
                    "max_rhat": 1.2,
                    "min_ess_bulk": 30,
                    "min_ess_tail": 30,
                }
            )
    return config


# -- stage times ----------------------------------------------------------------------------
def job_intervals(root: Path) -> list[tuple[str, float, float]]:
    """(rule, start, end) of every job of the last run, from Snakemake's main log."""
    log = sorted((root / ".snakemake/log").glob("*.snakemake.log"))[-1]
    stamp, rule, starts, jobs = None, None, {}, []
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := START.match(line):
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule is not None:
            starts[m.group(1)] = (rule, stamp)
            rule = None
        elif m := FINISHED.match(line):
            name, begin = starts.pop(m.group(1), (m.group(2), stamp))
            jobs.append((name, begin, stamp))
    return jobs


def union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals (a stage's wall time)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def stage_times(root: Path) -> dict[str, float]:
    jobs = job_intervals(root)
    named = set().union(*STAGES.values())
    out = {s: union([(a, b) for r, a, b in jobs if r in rules]) for s, rules in STAGES.items()}
    out["report"] = union([(a, b) for r, a, b in jobs if r not in named and r != "all"])
    out["parallel"] = union([(a, b) for r, a, b in jobs if any(r in STAGES[s] for s in PARALLEL)])
    return out


def cores_part(quick: bool, *, compare: bool = True) -> Path:
    """Run the default workflow on --cores 2 (and --cores 1 when ``compare``); returns the
    --cores 2 copy."""
    config = default_config(quick)
    runs, roots = {}, {}
    for cores in (2, 1) if compare else (2,):
        root = copy_workflow(config, f"cores{cores}")
        wall, _ = snakemake(root, "--cores", str(cores))
        runs[cores] = (wall, stage_times(root))
        roots[cores] = root
    if not compare:
        print(f"1. default workflow, --cores 2: {runs[2][0]:.0f} s ({roots[2]})")
        return roots[2]
    print(f"1. default workflow from nothing ({roots[2]}, {roots[1]})")
    print(f"   {'stage':<16} {'--cores 1':>10} {'--cores 2':>10} {'speed-up':>9}")
    for stage in (*STAGES, "report", "parallel"):
        one, two = runs[1][1][stage], runs[2][1][stage]
        ratio = f"{one / two:8.2f}x" if two > 0 else "       -"
        label = "traces+NLSQ+CMC" if stage == "parallel" else stage
        print(f"   {label:<16} {one:9.0f}s {two:9.0f}s {ratio}")
    total = f"{runs[1][0] / runs[2][0]:8.2f}x"
    print(f"   {'total':<16} {runs[1][0]:9.0f}s {runs[2][0]:9.0f}s {total}")
    same = all(
        (roots[1] / p.relative_to(roots[2])).read_bytes() == p.read_bytes()
        for p in (roots[2] / "results").rglob("*.h5")
        if "/cmc/" in str(p) or "/nlsq/" in str(p)
    )
    print(f"   NLSQ and CMC result files identical for --cores 1 and 2: {same}")
    shutil.rmtree(roots[1], ignore_errors=True)
    return roots[2]


# -- fixed cost -----------------------------------------------------------------------------
def last_fixed(log: Path) -> dict[str, float]:
    m = FIXED.findall(log.read_text())[-1]
    keys = ("fixed", "start", "imports", "compile", "tracing", "lowering", "backend")
    row = dict(zip(keys, map(float, m[:7]), strict=True))
    row.update(hits=int(m[7]), misses=int(m[8]), job=float(m[9]))
    return row


def tiny_jax(cache: Path) -> float:
    """Wall seconds of a fresh interpreter that imports phasemake's JAX side, enables the
    cache and runs one jitted program."""
    code = (
        "from phasemake.fit.analysis import enable_compilation_cache\n"
        "import jax, sys\n"
        "enable_compilation_cache(sys.argv[1])\n"
        "jax.block_until_ready(jax.jit(lambda x: x * 2 + 1)(1.0))\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(cache)], check=True)
    return time.perf_counter() - start


def import_seconds(module: str) -> float:
    """Median cumulative import time of ``module`` in a fresh interpreter (``-X importtime``)."""
    runs = []
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        own = [ln for ln in proc.stderr.splitlines() if ln.rstrip().endswith(f"| {module}")]
        runs.append(int(own[-1].split("|")[1]) / 1e6)
    return statistics.median(runs)


def fixed_part(root: Path) -> None:
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    analysis = next(n for n, a in config["analyses"].items() if a["observations"] != "sfs")
    plan = read_json_artefact(
        root / f"results/{analysis}/cmc/plan.json", kind="phasemake.shard_plan", versions=(1,)
    )
    cache = root / "cache/jax"
    print(f"2. per-job fixed cost, analysis {analysis} ({root}), cold / warm JAX cache")
    print(
        f"   {'job':<21} {'cache':<5} {'fixed':>6} = {'start':>5} + {'imports':>7} + "
        f"{'compile':>7} (trace, lower, XLA/lookup) {'hits':>5} {'misses':>6} "
        f"{'script':>7} {'fixed':>5} {'snakemake':>9}"
    )
    rows = {}
    # downstream first: forcing a job makes its output newer than what depends on it
    for rule, (target, log) in reversed(list(FIXED_JOBS.items())):
        target = target.format(analysis=analysis, parts=plan["shards"])
        log = root / log.format(analysis=analysis, parts=plan["shards"])
        bench = log.with_name(log.name.replace(".log", ".benchmark.tsv"))
        for label in ("cold", "warm"):
            if label == "cold":
                shutil.move(cache, cache.with_name("jax.kept"))
            snakemake(root, "--cores", "2", "--force", target)
            if label == "cold":
                shutil.rmtree(cache, ignore_errors=True)
                shutil.move(cache.with_name("jax.kept"), cache)
            r = last_fixed(log)
            # Snakemake's wall time of the job (benchmark file), when the rule keeps one
            r["wall"] = (
                float(bench.read_text().splitlines()[1].split()[0])
                if bench.exists()
                else float("nan")
            )
            rows[rule, label] = r
    for rule in FIXED_JOBS:
        for label in ("cold", "warm"):
            r = rows[rule, label]
            print(
                f"   {rule:<21} {label:<5} {r['fixed']:5.2f}s = {r['start']:5.2f} + "
                f"{r['imports']:7.2f} + {r['compile']:7.2f} ({r['tracing']:.2f}, "
                f"{r['lowering']:.2f}, {r['backend']:.2f}) {r['hits']:5d} {r['misses']:6d} "
                f"{r['job']:6.1f}s {r['fixed'] / r['job']:5.0%} {r['wall']:8.1f}s"
            )
    print(
        "   (script: the job's Python process, from its start; snakemake: the job's wall "
        "time in its benchmark file, which adds writing the script and starting the shell)"
    )
    tiny = Path(tempfile.mkdtemp(prefix="phasemake-jax-"))
    cold = tiny_jax(tiny)
    warm = statistics.median(tiny_jax(tiny) for _ in range(3))
    shutil.rmtree(tiny, ignore_errors=True)
    print(f"   tiny JAX job (start, imports, one jit): cold {cold:.2f} s, warm {warm:.2f} s")
    import ml_dtypes

    print(
        f"   imports: jax {import_seconds('jax'):.2f} s, of which ml_dtypes "
        f"{ml_dtypes.__version__} {import_seconds('ml_dtypes'):.2f} s "
        "(pyproject.toml: ml_dtypes < 0.7)"
    )


# -- one-chunk NLSQ: one job against fit_in_memory ----------------------------------------
IN_MEMORY = r"""
import glob, json, sys, time
import h5py
from phasemake.fit.analysis import enable_compilation_cache, model_from_files, streamed_evaluator
from phasemake.fit.nlsq import LMSettings, fit_in_memory, fit_summary
from phasemake.fit.state import read_passes, read_state
root, name, cache = sys.argv[1], sys.argv[2], sys.argv[3]
enable_compilation_cache(cache)
# the analysis settings and model files the job used: its resume fingerprint names them
with open(f"{root}/results/{name}/nlsq/passes.resume.json") as fh:
    used = json.load(fh)["payload"]
analysis = used["analysis"]
def by_checksum(kind, checksum):
    for path in glob.glob(f"{root}/cache/{kind}/*.h5"):
        with h5py.File(path, "r") as f:
            if f.attrs["checksum"] == checksum:
                return path
files = {k: by_checksum(f"{k}s", used[k]) for k in ("graph", "trace")}
obs = f"{root}/results/{name}/data/observations.h5"
t = time.perf_counter()
model = model_from_files(analysis, observations=obs, **files)
fit = fit_in_memory(
    model, [streamed_evaluator(model, obs, chunks=1)],
    settings=LMSettings.from_config(analysis["nlsq"]),
)
seconds = time.perf_counter() - t
final = read_passes(f"{root}/results/{name}/nlsq/passes.json")
flow = fit_summary(model_from_files(analysis, **files), read_state(f"{root}/{final['state']}"))
print(json.dumps({"seconds": seconds, "passes": fit["passes"], "same": flow == fit}))
"""


def nlsq_part(root: Path) -> None:
    """Each one-chunk analysis's NLSQ fit, redone as the workflow's one job (its benchmark
    file's wall time, and the `snakemake` command's), against ``fit_in_memory`` on the same
    observations in a fresh process (model load and fit, after the imports; its second
    run, so that both find their programs in the JAX cache); the fit summaries (estimates,
    covariance, history) must be equal."""
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    print(f"2b. one-chunk NLSQ: the workflow's one job against fit_in_memory ({root})")
    print(
        f"   {'analysis':<16} {'passes':>6} {'job':>7} {'snakemake':>9} {'in memory':>9} "
        f"{'job/in memory':>13} {'same fit':>8}"
    )
    for name in config["analyses"]:
        if not (root / f"results/{name}/nlsq/passes.json").exists():
            continue  # several chunks: per-pass jobs
        shutil.rmtree(root / f"results/{name}/nlsq")
        command, _ = snakemake(root, "--cores", "2", f"results/{name}/nlsq/passes.json")
        bench = root / f"logs/fit_sole_nlsq/{name}.benchmark.tsv"
        job = float(bench.read_text().splitlines()[1].split()[0])
        # twice, the second timed: a job's programs are compiled under its thread settings,
        # so fit_in_memory's own compilations are cache entries of their own
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", IN_MEMORY, str(root), name, str(root / "cache/jax")],
                capture_output=True,
                text=True,
                check=True,
            )
        mem = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"   {name:<16} {mem['passes']:6d} {job:6.1f}s {command:8.1f}s "
            f"{mem['seconds']:8.1f}s {job / mem['seconds']:12.2f}x {mem['same']!s:>8}"
        )
    print(
        "   (job: the fit_sole_nlsq job's wall time, Python start and imports included; in "
        "memory: model load and fit in a fresh process, warm cache; goal: <= 2x)"
    )


# -- dry run with 500 units -----------------------------------------------------------------
def level_units(config: dict) -> int:
    """Work units of the configured models at one unit per level."""
    from phasemake import build_graph, load_model, plan_units

    total = 0
    for entry in config["models"].values():
        graph = build_graph(load_model(entry["callback"], base_dir=REPO), **entry["params"])
        total += len(plan_units(graph, max_unit_cost=1)[1])
    return total


def dryrun_part(units: int) -> None:
    config = default_config(True)  # small data: the point is the DAG, not the fit
    config["traces"] = {"max_unit_cost": 1}  # one unit per level
    # a Kingman coalescent of n lineages has n levels (absorption included), n units
    config["models"]["kingman"] = {
        "callback": "phasemake.models:kingman",
        "params": {"n": max(2, units - level_units(config))},
    }
    root = copy_workflow(config, "dryrun")
    wall, _ = snakemake(root, "--cores", "2")
    count = len(list((root / "cache/traces/units").glob("*.h5")))
    dry = []
    for _ in range(3):
        seconds, out = snakemake(root, "-n", "--cores", "2")
        dry.append((seconds, "Nothing to be done" in out))
    noop, out = snakemake(root, "--cores", "2")
    ran = len(re.findall(r"^Finished jobid", out, flags=re.M))
    empty = Path(tempfile.mkdtemp(prefix="phasemake-empty-"))
    (empty / "Snakefile").write_text("rule all:\n    input: []\n")
    baseline = statistics.median(snakemake(empty, "-n", "--cores", "2")[0] for _ in range(3))
    hidden = None
    if shutil.which("sinfo"):
        # the SLURM plugin asks `scontrol show config` at import (10 s timeout) when SLURM's
        # client is installed; time the dry runs again with a PATH that lacks it
        bin_dir = Path(tempfile.mkdtemp(prefix="phasemake-bin-"))
        for tool in ("which", "bash", "sh", "env"):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        env = {**os.environ, "PATH": str(bin_dir)}
        hidden = (
            statistics.median(snakemake(root, "-n", "--cores", "2", env=env)[0] for _ in range(3)),
            statistics.median(snakemake(empty, "-n", "--cores", "2", env=env)[0] for _ in range(3)),
        )
        shutil.rmtree(bin_dir, ignore_errors=True)
    shutil.rmtree(empty, ignore_errors=True)
    print(f"3. snakemake -n on the up-to-date workflow with {count} work units ({root})")
    print(f"   full run {wall:.0f} s (--cores 2)")
    print(
        "   snakemake -n: "
        + ", ".join(f"{s:.2f} s" + ("" if ok else " (jobs planned!)") for s, ok in dry)
        + " (the first after the run, then twice again)"
    )
    print(f"   no-op snakemake --cores 2: {noop:.2f} s, {ran} jobs run")
    print(f"   snakemake -n of an empty Snakefile: {baseline:.2f} s (Snakemake's own start)")
    if hidden is not None:
        print(
            f"   SLURM's client is installed: with it off the PATH, snakemake -n takes "
            f"{hidden[0]:.2f} s here and {hidden[1]:.2f} s on an empty Snakefile (with it, "
            "the SLURM plugin's `scontrol show config` at import waits up to 10 s when no "
            "controller answers)"
        )
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data: a smoke test")
    parser.add_argument("--only", choices=("cores", "fixed", "nlsq", "dryrun"), default=None)
    parser.add_argument("--units", type=int, default=500, help="work units of the dry run")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs")
    started = time.perf_counter()
    if args.only in (None, "cores", "fixed", "nlsq"):
        root = cores_part(args.quick, compare=args.only not in ("fixed", "nlsq"))
        if args.only in (None, "nlsq"):
            nlsq_part(root)
        if args.only in (None, "fixed"):
            fixed_part(root)
        shutil.rmtree(root, ignore_errors=True)
    if args.only in (None, "dryrun"):
        dryrun_part(args.units)
    print(f"load average after: {os.getloadavg()}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    with recorded("scaling"):  # also docs/performance/scaling.md
        main()
