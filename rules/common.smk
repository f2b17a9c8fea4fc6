# Config validation (strict JSON Schema, at parse time) and input functions.
import functools
import logging
import os

from snakemake.utils import min_version, validate

from phasemake import claim_path, read_claim, read_plan
from phasemake.nlsqstate import read_state
from phasemake.shardplan import read_shard_plan
from phasemake.workflow import (
    check_analyses,
    discard_invalid_artefacts,
    remember_artefacts,
    resolve_chunks,
    resolve_model_specs,
)

min_version("9.0")


validate(config, "../config/config.schema.yaml")

CACHE = os.path.normpath(config["cache"])
MODELS = resolve_model_specs(config["models"])
# identical models under several names share one spec, hence one graph file
SPEC_MODELS = {}
for _name, _m in MODELS.items():
    SPEC_MODELS.setdefault(_m.spec, _m)

ANALYSES = config["analyses"]
check_analyses(ANALYSES, MODELS)
# chunks: auto -> a number, from the size of the data; and the analyses with one small chunk
SMALL_CHUNK = resolve_chunks(ANALYSES)

if workflow.is_main_process:
    for _problem in discard_invalid_artefacts(CACHE, list(SPEC_MODELS)):
        logging.getLogger("phasemake").warning("phasemake: %s", _problem)


# The graphs and units this run wrote are valid: recorded as verified (by size, mtime and
# inode), the next parse does not read them again (a dry run with 500 units stays fast).
onsuccess:
    remember_artefacts(CACHE, list(SPEC_MODELS))


onerror:
    remember_artefacts(CACHE, list(SPEC_MODELS))


wildcard_constraints:
    spec="[0-9a-f]{32}",
    unit="[0-9a-f]{32}",
    analysis="[A-Za-z][A-Za-z0-9_]*",
    step="[0-9]+",
    chunk="[0-9]+",
    parts="[1-9][0-9]*",
    shard="[0-9]+",


# Only a configured model's graph can be built. The graph of a model that has left the config
# stays in the cache as a plain file: units first claimed by its plan are recorded from it.
CONFIGURED_SPECS = "|".join(SPEC_MODELS)


def _any_of(names):
    """A wildcard constraint matching exactly these names (none: a pattern that matches
    nothing)."""
    return "|".join(sorted(names)) or "(?!)"


# A pass with one small chunk has nothing to run side by side: its chunk job runs in the
# main process (accumulate_sole_chunk, a localrule, like the reducer; at most chunk_rows
# rows, ~12 s by default), so under SLURM a small analysis's NLSQ submits no job of a few
# seconds per pass. Other chunk jobs are submitted (accumulate_chunk). Analysis names are
# plain identifiers (schema).
SOLE_CHUNK = _any_of(SMALL_CHUNK)
SEVERAL_CHUNKS = _any_of(set(ANALYSES) - SMALL_CHUNK)


def graph_files():
    """Every configured model's graph file."""
    return [f"{CACHE}/graphs/{spec}.h5" for spec in SPEC_MODELS]


def trace_files():
    """Every configured model's stitched trace file."""
    return [f"{CACHE}/traces/{spec}.h5" for spec in SPEC_MODELS]


def unit_files():
    """Units of the configured models' existing plans, so the cache stays whole: a unit
    removed as corrupt at parse time is recomputed even when its trace is up to date."""
    files = []
    for spec in SPEC_MODELS:
        plan = f"{CACHE}/traces/{spec}/plan.json"
        if os.path.exists(plan):
            files += [f"{CACHE}/traces/units/{u.key}.h5" for u in read_plan(plan)[0]]
    return sorted(set(files))


@functools.lru_cache(maxsize=None)
def _unit_source(unit):
    """The manifest of the plan that claimed this unit first (see phasemake.claim_unit);
    read once per unit (a manifest is never rewritten), however many of the unit job's
    input, params and resources functions ask."""
    units_dir = f"{CACHE}/traces/units"
    path = str(claim_path(units_dir, unit))
    if not os.path.exists(path):
        raise ValueError(
            f"unit {unit} was claimed by no plan ({path} is missing); request traces "
            f"through `rule all`, or delete the plans under {CACHE}/traces/ to re-plan"
        )
    return path, read_claim(units_dir, unit)


def unit_inputs(wildcards):
    """The unit's claim manifest and the graph it names (the graph of the plan that
    claimed the unit first). The set never changes for a unit, whatever the config, so
    Snakemake's input trigger never re-records a unit that is already in the cache; and a
    rebuild of a configured graph (Snakemake removes the old file first) runs before the
    unit's job, never beside it.

    The graph of a model no longer in the config stays in the cache; if it was deleted,
    the unit cannot be re-recorded from it, and the error says how to re-plan.
    """
    path, source = _unit_source(wildcards.unit)
    graph = source["graph"]
    spec = os.path.splitext(os.path.basename(graph))[0]
    if spec not in SPEC_MODELS and not os.path.exists(graph):
        raise ValueError(
            f"unit {wildcards.unit} was claimed by the plan of a model no longer in the "
            f"config, and that model's graph {graph} is gone; delete {CACHE}/traces/ "
            "(plans, units and claims) so that the configured models are re-planned"
        )
    return {"source": path, "graph": graph}


def unit_plan_entry(wildcards):
    """The plan entry (levels, key) of this unit."""
    return _unit_source(wildcards.unit)[1]["entry"]


def stitch_inputs(wildcards):
    """Graph, plan and every unit file of a spec (after its plan checkpoint)."""
    plan = checkpoints.plan_trace.get(spec=wildcards.spec).output.plan
    return {
        "graph": f"{CACHE}/graphs/{wildcards.spec}.h5",
        "plan": plan,
        "units": [f"{CACHE}/traces/units/{u.key}.h5" for u in read_plan(plan)[0]],
    }


def spec_callback(wildcards):
    """Callback reference of the model with this spec."""
    return _spec_model(wildcards).callback


def spec_params(wildcards):
    """Construction params of the model with this spec."""
    return _spec_model(wildcards).params


def spec_max_states(wildcards):
    """State cap of the model with this spec."""
    return _spec_model(wildcards).max_states


def spec_name(wildcards):
    """Config name of the (first) model with this spec."""
    return _spec_model(wildcards).name


def _spec_model(wildcards):
    try:
        return SPEC_MODELS[wildcards.spec]
    except KeyError:
        raise ValueError(
            f"spec {wildcards.spec} is not the spec of any model in the config; "
            "request graph files through `rule all` or the config's models"
        ) from None


# -- resources: threads, memory (mem_mb, MB) and time (runtime, minutes) of each job ------------
# Read by the local scheduler (--cores, --resources) and by the SLURM profile (sbatch --mem,
# --time, --cpus-per-task). Sized from the files a job reads; memory doubles and time grows
# with Snakemake's `attempt`, so a job that SLURM killed for memory or time is retried with
# more (`retries` in profiles/slurm). Sizes of files that do not exist yet count as 0 MB:
# Snakemake evaluates these again, with the files present, right before it submits the job.
#: What a Python process with JAX and one small model needs (MB).
BASE_MEM_MB = 1000


def _growth(attempt):
    """1, 2, 4, ... on attempt 1, 2, 3, ..."""
    return 2 ** (attempt - 1)


def _size_mb(*paths):
    """Total size in MB of the paths that exist."""
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p)) / 2**20


def build_graph_mem_mb(wildcards, attempt):
    """A graph build (no input files): 2 GB, doubled on each retry."""
    return 2000 * _growth(attempt)


def build_graph_runtime(wildcards, attempt):
    """A graph build: 1 h, longer on each retry."""
    return 60 * attempt


def loaded_mem_mb(wildcards, input, attempt):
    """A job that loads its input files whole (graph, trace, plan, observations): the base
    plus 10× their size on disk (decompressed arrays, working copies)."""
    return int((BASE_MEM_MB + 10 * _size_mb(*input)) * _growth(attempt))


def loaded_runtime(wildcards, input, attempt):
    """A job that reads its inputs once: 10 min plus 1 min per 100 MB."""
    return int((10 + _size_mb(*input) / 100) * attempt)


def unit_mem_mb(wildcards, input, attempt):
    """A trace unit loads its graph (the one its claim manifest names)."""
    return int((BASE_MEM_MB + 10 * _size_mb(input.graph)) * _growth(attempt))


def unit_runtime(wildcards, attempt):
    """A trace unit: the plan's cost (edges + Σ m³) is about 2e6 per second of recording;
    2 min plus 1 min per 1e8, times the attempt."""
    cost = unit_plan_entry(wildcards)["cost"]
    return int((2 + cost / 1e8) * attempt)


def _observations_mb(wildcards):
    return _size_mb(f"results/{wildcards.analysis}/data/observations.h5")


def chunk_mem_mb(wildcards, attempt):
    """A chunk job streams its observations in blocks, so only the trace and one block
    (block_rows rows) are in memory."""
    rows = ANALYSES[wildcards.analysis]["block_rows"]
    block_mb = rows * 256 / 2**20  # columns and derivatives: 250 B a row, measured
    trace_mb = _size_mb(_model_files(wildcards)["trace"])
    return int((BASE_MEM_MB + 10 * trace_mb + block_mb) * _growth(attempt))


def chunk_runtime(wildcards, attempt):
    """A chunk job: 10 min plus 1 min per 10 MB of its share of the observations."""
    share = _observations_mb(wildcards) / ANALYSES[wildcards.analysis]["chunks"]
    return int((10 + share / 10) * attempt)


def shard_mem_mb(wildcards, attempt):
    """A shard job holds its 1/S of the observations and the trace, per chain, and each
    chain's gradient keeps up to 128 MiB of uniformisation steps (RESIDUAL_BYTES in
    phasemake.uniformisation, not imported here: it would load JAX at parse time)."""
    share = _observations_mb(wildcards) / int(wildcards.parts)
    chains = ANALYSES[wildcards.analysis]["cmc"]["chains"]
    per_chain = 10 * (_size_mb(_model_files(wildcards)["trace"]) + share) + 134
    return int((BASE_MEM_MB + chains * per_chain) * _growth(attempt))


def shard_runtime(wildcards, attempt):
    """A shard job: 30 min plus 3 min per 1e7 of sampling work (chains × iterations × rows,
    about 16 bytes a row), some 3× what the default two-deme analysis took (53 s for
    2 × 1,000 × 5,000)."""
    cmc = ANALYSES[wildcards.analysis]["cmc"]
    rows = _observations_mb(wildcards) * 2**20 / 16 / int(wildcards.parts)
    work = cmc["chains"] * (cmc["warmup"] + cmc["samples"]) * rows
    return int((30 + 3 * work / 1e7) * attempt)


def combine_runtime(wildcards, attempt):
    """The combination: 10 min plus 3 min per 1e8 of refinement work (proposals × rows,
    value-only, batched: cheaper per point than a NUTS step)."""
    cmc = ANALYSES[wildcards.analysis]["cmc"]
    proposals = cmc["refine_proposals"] if cmc["refine"] != "none" else 0
    rows = _observations_mb(wildcards) * 2**20 / 16
    return int((10 + 3 * proposals * rows / 1e8) * attempt)


# -- analyses ----------------------------------------------------------------------------------
def fit_files():
    """Every analysis's NLSQ result."""
    return [f"results/{name}/nlsq/fit.json" for name in ANALYSES]


def analysis_settings(wildcards):
    """The analysis's config block up to NLSQ (its `cmc` block is left out: a posterior
    setting must not re-run the data or the fit)."""
    return {k: v for k, v in ANALYSES[wildcards.analysis].items() if k != "cmc"}


def analysis_nlsq(wildcards):
    """The analysis's Levenberg–Marquardt settings."""
    return ANALYSES[wildcards.analysis]["nlsq"]


def analysis_chunks(wildcards):
    """Chunk jobs per pass."""
    return ANALYSES[wildcards.analysis]["chunks"]


def _model_files(wildcards):
    spec = MODELS[ANALYSES[wildcards.analysis]["model"]].spec
    return {"graph": f"{CACHE}/graphs/{spec}.h5", "trace": f"{CACHE}/traces/{spec}.h5"}


def observation_inputs(wildcards):
    """Graph and trace of the analysis's model, and its data file if it has one."""
    files = _model_files(wildcards)
    data = ANALYSES[wildcards.analysis]["data"]
    if "file" in data:
        files["data"] = data["file"]
    return files


def _previous(wildcards):
    step = int(wildcards.step)
    return (
        {}
        if step == 0
        else {
            "previous": f"results/{wildcards.analysis}/nlsq/pass{step - 1}/state.json"
        }
    )


def chunk_inputs(wildcards):
    """Observations, model files and the previous pass's state (which holds the point)."""
    return {
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        **_model_files(wildcards),
        **_previous(wildcards),
    }


def step_inputs(wildcards):
    """This pass's chunk files, in chunk order, and the previous state."""
    n = ANALYSES[wildcards.analysis]["chunks"]
    prefix = f"results/{wildcards.analysis}/nlsq/pass{wildcards.step}"
    return {
        "chunks": [f"{prefix}/chunk{c}.h5" for c in range(n)],
        **_previous(wildcards),
    }


def final_nlsq_state(wildcards):
    """The first pass whose state has stopped: each pass is a checkpoint, so Snakemake
    schedules the next one only after reading this one (a killed run resumes here)."""
    step = 0
    while True:
        state = checkpoints.step_nlsq.get(
            analysis=wildcards.analysis, step=step
        ).output.state
        if read_state(state)["status"] != "running":
            return state
        step += 1


def fit_inputs(wildcards):
    """The final state and the model files."""
    return {"state": final_nlsq_state(wildcards), **_model_files(wildcards)}


# -- posteriors (consensus Monte Carlo) ---------------------------------------------------------
#: The cmc keys that change a shard's draws (the rest only change the plan or the combination).
SAMPLING_KEYS = (
    "seed",
    "chains",
    "warmup",
    "samples",
    "target_accept",
    "dense_mass",
    "max_tree_depth",
    "max_divergence_rate",
    "max_rhat",
    "prior",
)
#: Retries of the sample_shard rule: the largest any analysis asks for (an analysis that
#: asks for fewer stops at its own number, see phasemake.cmc.sample_shard).
SHARD_RETRIES = max([a["cmc"]["retries"] for a in ANALYSES.values()], default=0)


def posterior_files():
    """Every analysis's consensus summary (those with cmc.enabled)."""
    return [
        f"results/{name}/cmc/consensus.json"
        for name, a in ANALYSES.items()
        if a["cmc"]["enabled"]
    ]


def analysis_model(wildcards):
    """What the observation model needs: the kind and the NLSQ initial and fixed values."""
    a = ANALYSES[wildcards.analysis]
    return {
        "observations": a["observations"],
        "nlsq": {k: a["nlsq"][k] for k in ("initial", "fixed")},
    }


#: The cmc keys that choose S (the rest do not change the plan).
PLAN_KEYS = (
    "shards",
    "chains",
    "warmup",
    "samples",
    "target_work",
    "min_points",
    "min_points_per_parameter",
)


def plan_settings(wildcards):
    """The cmc settings the number of shards depends on."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in PLAN_KEYS}


COMBINE_KEYS = ("rule", "seed", "refine", "refine_proposals", "prior")


def combine_settings(wildcards):
    """The cmc settings of the combination: rule, seed (Gaussian draws, refinement
    proposals), refinement, and the prior (the refinement's full-data posterior)."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in COMBINE_KEYS}


def shard_settings(wildcards):
    """The cmc settings a shard's draws depend on (a change re-runs the shards)."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in SAMPLING_KEYS}


def shard_threads(wildcards):
    """One thread per chain (Snakemake lowers it to --cores; the draws do not change)."""
    return ANALYSES[wildcards.analysis]["cmc"]["chains"]


def shard_attempt(wildcards, attempt):
    """Snakemake's attempt number, for the script (a resource: no effect on reruns)."""
    return attempt


def shard_attempts(wildcards, attempt):
    """Attempts this analysis allows: 1 + cmc.retries."""
    return ANALYSES[wildcards.analysis]["cmc"]["retries"] + 1


def analysis_truth(wildcards):
    """The simulated θ (by name), or {} for data from a file."""
    return ANALYSES[wildcards.analysis]["data"].get("simulate", {}).get("theta", {})


def posterior_inputs(wildcards):
    """Observations, the NLSQ fit (warm start) and the model files."""
    return {
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        "fit": f"results/{wildcards.analysis}/nlsq/fit.json",
        **_model_files(wildcards),
    }


def consensus_inputs(wildcards):
    """The plan (after its checkpoint), its S shard files in shard order, and the
    observations and model files (the refinement's full-data posterior)."""
    plan = checkpoints.plan_shards.get(analysis=wildcards.analysis).output.plan
    count = read_shard_plan(plan)["shards"]
    prefix = f"results/{wildcards.analysis}/cmc/S{count}"
    return {
        "plan": plan,
        "shards": [f"{prefix}/shard{s}.h5" for s in range(count)],
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        **_model_files(wildcards),
    }


# -- report (rules/report.smk) ------------------------------------------------------------------
#: Figures and tables of every analysis, and those only an analysis with cmc.enabled has.
REPORT_FILES = (
    "estimates.html",
    "model.html",
    "nlsq.png",
    "fit.png",
    "diagnostics.html",
    "timings.html",
)
POSTERIOR_REPORT_FILES = (
    "posterior_traces.png",
    "posterior_marginals.png",
    "posterior_pairs.png",
)


def report_files():
    """Every analysis's report figures and tables (see rules/report.smk)."""
    files = []
    for name, a in ANALYSES.items():
        names = REPORT_FILES + (POSTERIOR_REPORT_FILES if a["cmc"]["enabled"] else ())
        files += [f"results/{name}/report/{f}" for f in names]
    return files


def _spec(wildcards):
    return MODELS[ANALYSES[wildcards.analysis]["model"]].spec


def _posterior_summary(wildcards):
    a = wildcards.analysis
    enabled = ANALYSES[a]["cmc"]["enabled"]
    return {"posterior": f"results/{a}/cmc/consensus.json"} if enabled else {}


def estimates_inputs(wildcards):
    """The NLSQ fit and, with cmc.enabled, the consensus summary."""
    fit = f"results/{wildcards.analysis}/nlsq/fit.json"
    return {"fit": fit, **_posterior_summary(wildcards)}


def analysis_max_rhat(wildcards):
    """The R-hat gate of the analysis's shards (the diagnostics table shades above it)."""
    return ANALYSES[wildcards.analysis]["cmc"]["max_rhat"]


def analysis_model_config(wildcards):
    """The analysis's model: config name, callback, construction params and spec."""
    m = MODELS[ANALYSES[wildcards.analysis]["model"]]
    return {"model": m.name, "callback": m.callback, "params": m.params, "spec": m.spec}


def model_summary_inputs(wildcards):
    """Graph, trace plan (after its checkpoint) and observations of the analysis."""
    spec = _spec(wildcards)
    return {
        "graph": f"{CACHE}/graphs/{spec}.h5",
        "plan": checkpoints.plan_trace.get(spec=spec).output.plan,
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
    }


def unit_benchmarks(wildcards):
    """Benchmark file of each unit of the analysis's trace plan (absent: a cache hit)."""
    plan = checkpoints.plan_trace.get(spec=_spec(wildcards)).output.plan
    pattern = str(rules.record_trace_unit.benchmark)
    return {u.key: pattern.format(unit=u.key) for u in read_plan(plan)[0]}


def nlsq_states(wildcards):
    """Every NLSQ pass state of the analysis, in pass order (checkpoints)."""
    count = read_state(final_nlsq_state(wildcards))["iteration"] + 1
    prefix = f"results/{wildcards.analysis}/nlsq"
    return [f"{prefix}/pass{k}/state.json" for k in range(count)]


def nlsq_plot_inputs(wildcards):
    """The fit and its pass states."""
    fit = f"results/{wildcards.analysis}/nlsq/fit.json"
    return {"fit": fit, "states": nlsq_states(wildcards)}


def posterior_plot_inputs(wildcards):
    """The shard posterior files, the consensus draws and summary, and the NLSQ fit."""
    a = wildcards.analysis
    return {
        "shards": consensus_inputs(wildcards)["shards"],
        "consensus": f"results/{a}/cmc/consensus.h5",
        "fit": f"results/{a}/nlsq/fit.json",
    }


def fit_plot_inputs(wildcards):
    """Observations, fit, model files and, with cmc.enabled, the consensus draws."""
    a = wildcards.analysis
    files = {
        "observations": f"results/{a}/data/observations.h5",
        "fit": f"results/{a}/nlsq/fit.json",
        **_model_files(wildcards),
    }
    if ANALYSES[a]["cmc"]["enabled"]:
        files["consensus"] = f"results/{a}/cmc/consensus.h5"
    return files


def timing_inputs(wildcards):
    """The analysis's last outputs (so the table comes last) and the checkpoints whose
    outputs decide which jobs ran (trace plan, NLSQ passes, shard plan)."""
    a = wildcards.analysis
    files = {
        "plan": checkpoints.plan_trace.get(spec=_spec(wildcards)).output.plan,
        "state": final_nlsq_state(wildcards),
        "fit": f"results/{a}/nlsq/fit.json",
    }
    if ANALYSES[a]["cmc"]["enabled"]:
        files["shard_plan"] = checkpoints.plan_shards.get(analysis=a).output.plan
        files.update(_posterior_summary(wildcards))
    return files


def timing_benchmarks(wildcards):
    """Rule → benchmark files of every job of the analysis (those of rules that declare
    `benchmark:`), in workflow order; a missing file is a job its outputs came from the
    cache for."""
    a = wildcards.analysis
    cmc = ANALYSES[a]["cmc"]["enabled"]
    spec = _spec(wildcards)
    plan = checkpoints.plan_trace.get(spec=spec).output.plan
    passes = len(nlsq_states(wildcards))
    chunks = ANALYSES[a]["chunks"]
    keys = {
        ("spec",): [{"spec": spec}],
        ("unit",): [{"unit": u.key} for u in read_plan(plan)[0]],
        ("analysis",): [{"analysis": a}],
        ("analysis", "step"): [{"analysis": a, "step": k} for k in range(passes)],
        ("analysis", "chunk", "step"): [
            {"analysis": a, "step": k, "chunk": c}
            for k in range(passes)
            for c in range(chunks)
        ],
    }
    if cmc:
        shard_plan = checkpoints.plan_shards.get(analysis=a).output.plan
        count = read_shard_plan(shard_plan)["shards"]
        keys[("analysis", "parts", "shard")] = [
            {"analysis": a, "parts": count, "shard": s} for s in range(count)
        ]
    files, seen = {}, set()
    for each in workflow.rules:
        names = tuple(sorted(each.wildcard_names))
        if each.benchmark is None or names not in keys:
            continue
        if not cmc and any("/cmc/" in str(o) for o in each.output):
            continue  # a posterior rule of an analysis without posterior
        pattern = str(getattr(rules, each.name).benchmark)  # without the constraints
        if pattern in seen:
            continue  # accumulate_sole_chunk: accumulate_chunk's files, listed once
        seen.add(pattern)
        files[each.name] = [pattern.format(**k) for k in keys[names]]
    return files
