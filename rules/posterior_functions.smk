# Input, params and resources functions of rules/posterior.smk (Snakemake's linter keeps
# functions and rules in separate files).
from phasemake.posterior.shardplan import read_shard_plan


def shard_mem_mb(wildcards, attempt):
    """A shard job holds its 1/S of the observations and the trace, per chain, and each
    chain's gradient keeps up to 128 MiB of uniformisation steps (RESIDUAL_BYTES in
    phasemake.trace.uniformisation, not imported here: it would load JAX at parse time).
    """
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
    "min_ess_bulk",
    "min_ess_tail",
    "prior",
)
#: Retries of the sample_shard rule: the largest any analysis asks for (an analysis that
#: asks for fewer stops at its own number, see phasemake.posterior.cmc.sample_shard).
SHARD_RETRIES = max([a["cmc"]["retries"] for a in ANALYSES.values()], default=0)


def posterior_files():
    """Every analysis's consensus summary (those with cmc.enabled)."""
    return [
        f"results/{name}/cmc/consensus.json"
        for name, a in ANALYSES.items()
        if a["cmc"]["enabled"]
    ]


def analysis_model(wildcards):
    """What the observation model needs: the kind, the NLSQ initial and fixed values, and
    the model's history if it has one."""
    a = ANALYSES[wildcards.analysis]
    model = {
        "observations": a["observations"],
        "nlsq": {k: a["nlsq"][k] for k in ("initial", "fixed")},
    }
    if a.get("history"):
        model["history"] = a["history"]
    return model


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


COMBINE_KEYS = ("rule", "seed", "refine", "refine_proposals", "grid", "prior")


def combine_settings(wildcards):
    """The cmc settings of the combination: rule, seed (Gaussian draws, refinement
    proposals), refinement, the grid check, and the prior (the refinement's and the
    grid's full-data posterior)."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in COMBINE_KEYS}


def shard_settings(wildcards):
    """The cmc settings a shard's draws depend on (a change re-runs the shards)."""
    return {k: ANALYSES[wildcards.analysis]["cmc"][k] for k in SAMPLING_KEYS}


def shard_threads(wildcards):
    """One thread per chain (Snakemake lowers it to --cores; the draws do not change)."""
    return ANALYSES[wildcards.analysis]["cmc"]["chains"]


def shard_attempt(wildcards, attempt):
    """Snakemake's attempt number, for the script (a resource: no effect on reruns). The
    script makes attempt 1 + the gate failures recorded in the shard's `history` (1 when
    Snakemake's is 1: a fresh job), so a killed job's retry keeps its seed and settings
    (phasemake.posterior.cmc.shard_attempt)."""
    return attempt


def shard_attempts(wildcards, attempt):
    """Attempts this analysis allows: 1 + cmc.retries."""
    return ANALYSES[wildcards.analysis]["cmc"]["retries"] + 1


def analysis_truth(wildcards):
    """The true θ (by name): the simulated `theta`, the `truth` given for file data, or {}."""
    data = ANALYSES[wildcards.analysis]["data"]
    return data["simulate"]["theta"] if "simulate" in data else data.get("truth", {})


def posterior_inputs(wildcards):
    """Observations, the NLSQ fit (warm start) and the model files."""
    return {
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        "fit": f"results/{wildcards.analysis}/nlsq/fit.json",
        **_model_files(wildcards),
    }


def consensus_inputs(wildcards):
    """The plan (after its checkpoint), its S shard files in shard order, the
    observations and model files (the refinement's full-data posterior), and the NLSQ fit
    (the adjustment of linked rows)."""
    plan = checkpoints.plan_shards.get(analysis=wildcards.analysis).output.plan
    count = read_shard_plan(plan)["shards"]
    prefix = f"results/{wildcards.analysis}/cmc/S{count}"
    return {
        "plan": plan,
        "shards": [f"{prefix}/shard{s}.h5" for s in range(count)],
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        "fit": f"results/{wildcards.analysis}/nlsq/fit.json",  # linked rows: the sandwich
        **_model_files(wildcards),
    }
