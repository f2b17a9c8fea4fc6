"""Plan the work units of one graph's elimination trace."""

import logging

from phasemake import claim_unit, plan_units, read_graph, write_plan

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)
logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
log = logging.getLogger("plan_trace")

try:
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
    log.info("%s: %d levels in %d units", graph.summary(), meta["levels"], len(units))
    for u in units:
        log.info("unit %s: levels [%d, %d), cost %d", u.key, u.level_start, u.level_stop, u.cost)
except Exception:
    log.exception("plan_trace failed")
    raise
