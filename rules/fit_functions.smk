# Input, params and resources functions of rules/fit.smk (Snakemake's linter keeps
# functions and rules in separate files).
from phasemake.fit.analysis import discard_foreign_observations
from phasemake.fit.state import check_passes, check_sole_passes, read_passes, read_state
from phasemake.resultcheck import discard_invalid_results


def _any_of(names):
    """A wildcard constraint matching exactly these names (none: a pattern that matches
    nothing)."""
    return "|".join(sorted(names)) or "(?!)"


# An analysis with one small chunk (at most chunk_rows rows) runs all its passes in one
# job in the main process (fit_sole_nlsq, a localrule, like the reducer: seconds of work a
# pass), so under SLURM a small analysis's NLSQ submits no job. Other analyses' chunk
# jobs are submitted (accumulate_chunk). Analysis names are plain identifiers (schema).
SOLE_CHUNK = _any_of(SMALL_CHUNK)
SEVERAL_CHUNKS = _any_of(set(ANALYSES) - SMALL_CHUNK)


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


def _manifest(analysis):
    """The manifest of a one-job fit (rules/fit.smk: fit_sole_nlsq)."""
    return f"results/{analysis}/nlsq/passes.json"


def sole_fit_runtime(wildcards, attempt):
    """A one-job fit: a chunk job's time for each of up to 10 passes, then 1 min a pass
    (one small chunk: seconds of work a pass)."""
    passes = ANALYSES[wildcards.analysis]["nlsq"].get("max_iterations", 100)
    return chunk_runtime(wildcards, attempt) + passes * attempt


def sole_fit_inputs(wildcards):
    """Observations and model files of a one-job fit."""
    return {
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        **_model_files(wildcards),
    }


# Observations that are corrupt or not made from the configured data are rebuilt; a pass
# whose chunk or state file went missing or bad (deleted as an error said) is redone, with
# every later pass, before Snakemake walks the passes (a one-job fit: its manifest is
# removed, so fit_sole_nlsq runs again and resumes after the last valid pass); a corrupt
# fit, profile, shard plan, shard or consensus file is removed so that it is recomputed
# (a dry run only reports).
if workflow.is_main_process:
    for _name in ANALYSES:
        for _problem in discard_foreign_observations(
            f"results/{_name}/data/observations.h5",
            ANALYSES[_name]["data"],
            dry_run=DRY_RUN,
        ):
            logging.getLogger("phasemake").warning("phasemake: %s", _problem)
        if _name in SMALL_CHUNK:
            _problems = check_sole_passes(
                f"results/{_name}/nlsq", _manifest(_name), dry_run=DRY_RUN
            )
        else:
            _problems = check_passes(
                f"results/{_name}/nlsq", ANALYSES[_name]["chunks"], dry_run=DRY_RUN
            )
        for _problem in _problems:
            logging.getLogger("phasemake").warning("phasemake: %s", _problem)
        for _problem in discard_invalid_results(f"results/{_name}", dry_run=DRY_RUN):
            logging.getLogger("phasemake").warning("phasemake: %s", _problem)


# -- analyses ----------------------------------------------------------------------------------
def fit_files():
    """Every analysis's NLSQ result."""
    return [f"results/{name}/nlsq/fit.json" for name in ANALYSES]


def analysis_nlsq(wildcards):
    """The analysis's Levenberg–Marquardt settings (less the profile's: they do not change
    the passes)."""
    return without_profile(ANALYSES[wildcards.analysis]["nlsq"])


def analysis_chunks(wildcards):
    """Chunk jobs per pass."""
    return ANALYSES[wildcards.analysis]["chunks"]


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
    """The first pass whose state has stopped. A one-job fit (fit_sole_nlsq, a checkpoint)
    names it in its manifest. Otherwise each pass is a checkpoint, so Snakemake schedules
    the next one only after reading this one (a killed run resumes here)."""
    a = wildcards.analysis
    if a in SMALL_CHUNK:
        manifest = checkpoints.fit_sole_nlsq.get(analysis=a).output.manifest
        return f"results/{a}/nlsq/pass{read_passes(manifest)['passes'] - 1}/state.json"
    step = 0
    while True:
        state = checkpoints.step_nlsq.get(
            analysis=wildcards.analysis, step=step
        ).output.state
        if read_state(state)["status"] != "running":
            return state
        step += 1


def final_state_inputs(wildcards):
    """The final NLSQ state and, for a one-job fit, the manifest of the job that wrote it
    (the pass files are not its declared outputs: Snakemake orders by the manifest)."""
    files = {"state": final_nlsq_state(wildcards)}
    if wildcards.analysis in SMALL_CHUNK:
        files["passes"] = _manifest(wildcards.analysis)
    return files


def fit_inputs(wildcards):
    """The final state, the model files and the profile intervals (unless
    `nlsq.profile: false`)."""
    files = {**final_state_inputs(wildcards), **_model_files(wildcards)}
    if ANALYSES[wildcards.analysis]["nlsq"]["profile"]:
        files["profile"] = f"results/{wildcards.analysis}/nlsq/profile.json"
    return files


def profile_inputs(wildcards):
    """The final state, the model files and the observations."""
    return {
        **final_state_inputs(wildcards),
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
        **_model_files(wildcards),
    }


def profile_range(wildcards):
    """How far (a factor from the estimate) the profiles are followed."""
    return ANALYSES[wildcards.analysis]["nlsq"]["profile_range"]


def profile_runtime(wildcards, attempt):
    """A profile: about 100 passes over the observations (2 per free parameter and side
    dozens of refit evaluations), 10 min plus 10 min per 10 MB."""
    return int((10 + _observations_mb(wildcards)) * attempt)
