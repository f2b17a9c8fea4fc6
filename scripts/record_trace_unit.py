"""Record one work unit of an elimination trace."""

from phasemake import UnitPlan, read_graph, record_unit, write_unit
from phasemake.core.joblog import job_log
from phasemake.trace.files import unit_is_recorded

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "record_trace_unit") as log:
    unit = UnitPlan(**snakemake.params.plan_entry)
    if unit_is_recorded(snakemake.output.unit):  # complete, though Snakemake marked it not
        log.info("unit %s is recorded and valid already: kept", unit.key)
    else:
        graph = read_graph(snakemake.input.graph)  # named by the unit's claim manifest
        log.info(
            "recording unit %s (levels [%d, %d)) of %s",
            unit.key,
            unit.level_start,
            unit.level_stop,
            graph.summary(),
        )
        write_unit(record_unit(graph, unit), snakemake.output.unit)
        log.info("wrote %s", snakemake.output.unit)
