# Config validation (strict JSON Schema, at parse time) and input functions.
import json
import logging
import os

from snakemake.utils import min_version, validate

from phasemake import read_plan
from phasemake.nlsqstate import read_state
from phasemake.shardplan import read_shard_plan
from phasemake.workflow import (
    check_analyses,
    discard_invalid_artefacts,
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

if workflow.is_main_process:
    for _problem in discard_invalid_artefacts(CACHE, list(SPEC_MODELS)):
        logging.getLogger("phasemake").warning("phasemake: %s", _problem)


wildcard_constraints:
    spec="[0-9a-f]{32}",
    unit="[0-9a-f]{32}",
    analysis="[A-Za-z][A-Za-z0-9_]*",
    step="[0-9]+",
    chunk="[0-9]+",
    parts="[1-9][0-9]*",
    shard="[0-9]+",


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


def _unit_source(unit):
    """The manifest of the plan that claimed this unit first (see phasemake.claim_unit)."""
    path = f"{CACHE}/traces/units/{unit}.source.json"
    if not os.path.exists(path):
        raise ValueError(
            f"unit {unit} was claimed by no plan ({path} is missing); request traces "
            "through `rule all`, or delete the plans under {CACHE}/traces/ to re-plan"
        )
    with open(path) as fh:
        return path, json.load(fh)


def unit_inputs(wildcards):
    """The unit's claim manifest, which names the graph it is recorded from.

    The graph is not declared as an input: it may belong to a model no longer in the
    config (its graph stays in the cache), and it exists whenever the manifest does.
    """
    return {"source": _unit_source(wildcards.unit)[0]}


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


def build_graph_mem_mb(wildcards, attempt):
    """Memory for a graph build: 2 GB, doubled on each retry."""
    return 2000 * 2 ** (attempt - 1)


# -- analyses ----------------------------------------------------------------------------------
def fit_files():
    """Every analysis's NLSQ result."""
    return [f"results/{name}/nlsq/fit.json" for name in ANALYSES]


def analysis_settings(wildcards):
    """The analysis's config block (all of it reaches the scripts through params)."""
    return ANALYSES[wildcards.analysis]


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


def combine_settings(wildcards):
    """The cmc settings of the combination (rule, and the seed of the Gaussian draws)."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in ("rule", "seed")}


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
    """The plan (after its checkpoint) and its S shard files, in shard order."""
    plan = checkpoints.plan_shards.get(analysis=wildcards.analysis).output.plan
    count = read_shard_plan(plan)["shards"]
    prefix = f"results/{wildcards.analysis}/cmc/S{count}"
    return {"plan": plan, "shards": [f"{prefix}/shard{s}.h5" for s in range(count)]}
