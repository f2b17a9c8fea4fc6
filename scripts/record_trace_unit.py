"""Record one work unit of an elimination trace."""

import json

from phasemake import UnitPlan, read_graph, record_unit, write_unit
from phasemake.joblog import job_log

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "record_trace_unit") as log:
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
