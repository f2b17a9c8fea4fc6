"""Record one work unit of an elimination trace."""

import json
import logging

from phasemake import UnitPlan, read_graph, record_unit, write_unit

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)
logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
log = logging.getLogger("record_trace_unit")

try:
    with open(snakemake.input.source) as fh:
        source = json.load(fh)
    graph = read_graph(source["graph"])  # named by the manifest of the unit's first plan
    unit = UnitPlan(**snakemake.params.plan_entry)
    log.info(
        "recording unit %s (levels [%d, %d)) of %s",
        unit.key,
        unit.level_start,
        unit.level_stop,
        graph.summary(),
    )
    write_unit(record_unit(graph, unit), snakemake.output.unit)
    log.info("wrote %s", snakemake.output.unit)
except Exception:
    log.exception("record_trace_unit failed")
    raise
