# Config validation (strict JSON Schema, at parse time), the resolved models and analyses,
# and what every stage shares. Each stage's own input, params and resources functions are
# in its rules/<stage>.smk, beside its rules.
import logging
import os
import sys

from snakemake.utils import min_version, validate

from phasemake.configcheck import check_config
from phasemake.report.summary import closing_lines, find_results
from phasemake.workflow import (
    GraphRecipe,
    attach_histories,
    check_analyses,
    discard_invalid_artefacts,
    remember_artefacts,
    resolve_chunks,
    resolve_model_specs,
)

min_version("9.0")


# Size and depth limits first (a YAML alias bomb is refused in milliseconds instead of hanging
# jsonschema), then the schema with one short message (config path, did-you-mean; never the
# schema itself); Snakemake's validate() then only fills in the defaults.
check_config(config, os.path.join(workflow.basedir, "config", "config.schema.yaml"))
validate(config, "../config/config.schema.yaml")

CACHE = os.path.normpath(config["cache"])
MODELS = resolve_model_specs(config["models"])
# identical models under several names share one spec, hence one graph file
SPEC_MODELS = {}
for _name, _m in MODELS.items():
    SPEC_MODELS.setdefault(_m.spec, _m)

ANALYSES = config["analyses"]
check_analyses(ANALYSES, MODELS)
attach_histories(
    ANALYSES, MODELS
)  # an analysis of a model with a history fits the history
# chunks: auto -> a number, from the size of the data; and the analyses with one small chunk
SMALL_CHUNK = resolve_chunks(ANALYSES)

_NO_JOB_OPTIONS = (
    "dryrun",
    "lint",
    "summary",
    "detailed_summary",
    "list_rules",
    "list_target_rules",
    "dag",
    "rulegraph",
    "filegraph",
    "d3dag",
    "unlock",
    "cleanup_metadata",
    "list_changes",
    "list_untracked",
    "report",
    "archive",
    "containerize",
    "generate_unit_tests",
)


def reporting_only() -> bool:
    """Whether this process parses the Snakefile for ``snakemake -n`` (or ``--summary``,
    ``--lint``, ``--dag`` and other options that run no job): then the parse-time checks
    report problems and delete nothing.

    Snakemake 9 tells the executor (``workflow.dryrun``) only after the Snakefile is
    parsed, so this reads the options its command line parsed (the ``args`` of
    ``snakemake.cli.args_to_api``, profiles included) from the call stack. Called from the
    Python API instead, it answers ``False`` (a real run: invalid files are removed).
    """
    import inspect

    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "args_to_api":
            args = frame.f_locals.get("args")
            return any(getattr(args, name, None) for name in _NO_JOB_OPTIONS)
        frame = frame.f_back
    return False


# `snakemake -n` (and --summary, --lint, ...) must change nothing: it only reports what a
# real run removes and rebuilds (Snakemake 9 sets workflow.dryrun only after the parse).
DRY_RUN = reporting_only()

# A corrupt, truncated or foreign cache file (a valid file of another spec or unit at this
# path) is removed here, before Snakemake looks at the files, so that it is rebuilt.
if workflow.is_main_process:
    for _problem in discard_invalid_artefacts(
        CACHE, list(SPEC_MODELS), dry_run=DRY_RUN
    ):
        logging.getLogger("phasemake").warning("phasemake: %s", _problem)


# Snakemake's job total grows during a run: trace plans and NLSQ passes are checkpoints
# whose results add the jobs after them. Say so once, before the counter starts.
onstart:
    print(
        "phasemake: the job total grows as trace plans and NLSQ passes (checkpoints) "
        "finish and add the jobs after them (docs/limits.md)",
        file=sys.stderr,
    )


# The graphs, traces and units this run wrote are valid: recorded as verified (by size,
# mtime, inode and ctime), the next parse does not read them again (a dry run with 500
# units stays fast). A dry run verified nothing it did not read, so it records nothing.
onsuccess:
    if not DRY_RUN:
        remember_artefacts(CACHE, list(SPEC_MODELS))
        # one closing line per fitted analysis (phasemake summary prints the whole table)
        _done = [
            a for a in ANALYSES if os.path.exists(f"results/{a}/nlsq/fit.json")
        ]
        for _line in closing_lines(find_results("results", analyses=_done)):
            print(f"phasemake: {_line}", file=sys.stderr)


onerror:
    if not DRY_RUN:
        remember_artefacts(CACHE, list(SPEC_MODELS))


wildcard_constraints:
    spec="[0-9a-f]{32}",
    unit="[0-9a-f]{32}",
    analysis="[A-Za-z][A-Za-z0-9_]*",
    step="[0-9]+",
    chunk="[0-9]+",
    parts="[1-9][0-9]*",
    shard="[0-9]+",
    region="region[0-9]+",


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


def loaded_mem_mb(wildcards, input, attempt):
    """A job that loads its input files whole (graph, trace, plan, observations): the base
    plus 10× their size on disk (decompressed arrays, working copies)."""
    return int((BASE_MEM_MB + 10 * _size_mb(*input)) * _growth(attempt))


def loaded_runtime(wildcards, input, attempt):
    """A job that reads its inputs once: 10 min plus 1 min per 100 MB."""
    return int((10 + _size_mb(*input) / 100) * attempt)


def _observations_mb(wildcards):
    """Size in MB of the analysis's observations file (0 before it exists)."""
    return _size_mb(f"results/{wildcards.analysis}/data/observations.h5")


def _model_files(wildcards):
    """Graph and trace files of the analysis's model. Not ancient(): with Snakemake 9.27 an
    ancient() input made by a job of the same run can drop the jobs that read it from the
    DAG (the run ends "done" without them); a file rewritten with the same content is
    not re-run anyway, since Snakemake compares input checksums (docs/cache.md)."""
    spec = MODELS[ANALYSES[wildcards.analysis]["model"]].spec
    return {"graph": f"{CACHE}/graphs/{spec}.h5", "trace": f"{CACHE}/traces/{spec}.h5"}


def _spec(wildcards):
    """Spec of the analysis's model."""
    return MODELS[ANALYSES[wildcards.analysis]["model"]].spec
