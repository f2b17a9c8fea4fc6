# Input, params and resources functions of rules/trace.smk (Snakemake's linter keeps
# functions and rules in separate files).
import functools

from phasemake import ArtefactError, claim_path, read_claim, read_plan


def trace_files():
    """Every configured model's stitched trace file."""
    return [f"{CACHE}/traces/{spec}.h5" for spec in SPEC_MODELS]


def unit_files():
    """Units of the configured models' existing plans, so the cache stays whole: a unit
    removed as corrupt at parse time is recomputed even when its trace is up to date."""
    files = []
    for spec in SPEC_MODELS:
        plan = f"{CACHE}/traces/{spec}/plan.json"
        try:
            files += [f"{CACHE}/traces/units/{u.key}.h5" for u in read_plan(plan)[0]]
        except ArtefactError:  # missing; or invalid in a dry run (a real run re-plans)
            pass
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


class _UnitModel:
    """``"{UNIT_MODEL:{wildcards.unit}}"`` in a job message: the models of the plan that
    claimed the unit (see :data:`MODEL_OF`)."""

    def __format__(self, unit):
        graph = _unit_source(unit)[1]["graph"]
        spec = os.path.splitext(os.path.basename(graph))[0]
        if spec in SPEC_MODELS:
            return MODEL_OF.__format__(spec)
        return f"the plan of spec {spec} (a model no longer in the config)"


UNIT_MODEL = _UnitModel()


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
    try:
        units = read_plan(plan)[0]
    except ArtefactError:
        if not DRY_RUN:  # a real run removed an invalid plan at parse time
            raise
        units = []  # reported at parse time; the real run re-plans
    return {
        "graph": f"{CACHE}/graphs/{wildcards.spec}.h5",
        "plan": plan,
        "units": [f"{CACHE}/traces/units/{u.key}.h5" for u in units],
    }


def unit_mem_mb(wildcards, input, attempt):
    """A trace unit loads its graph (the one its claim manifest names)."""
    return int((BASE_MEM_MB + 10 * _size_mb(input.graph)) * _growth(attempt))


def unit_runtime(wildcards, attempt):
    """A trace unit: the plan's cost (edges + Σ m³) is about 2e6 per second of recording;
    2 min plus 1 min per 1e8, times the attempt."""
    cost = unit_plan_entry(wildcards)["cost"]
    return int((2 + cost / 1e8) * attempt)
