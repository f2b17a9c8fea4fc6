"""Plan the work units of one graph's elimination trace and claim the new ones."""

from phasemake import claim_unit, plan_units, read_graph, write_plan
from phasemake.core.joblog import job_log

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "plan_trace") as log:
    graph = read_graph(snakemake.input.graph)
    layout, units = plan_units(graph, max_unit_cost=snakemake.params.max_unit_cost)
    meta = {"spec": snakemake.wildcards.spec, "levels": int(layout.level_vptr.size - 1)}
    write_plan(units, meta, snakemake.output.plan)
    for unit in units:
        claim_unit(
            unit,
            units_dir=snakemake.params.units_dir,
            graph=snakemake.input.graph,
            plan=snakemake.output.plan,
        )
        log.info(
            "unit %s: levels [%d, %d), cost %d",
            unit.key,
            unit.level_start,
            unit.level_stop,
            unit.cost,
        )
    log.info("%s: %d levels in %d units", graph.summary(), meta["levels"], len(units))
