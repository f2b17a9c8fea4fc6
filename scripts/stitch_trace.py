"""Stitch one graph's work units into its trace (re-recording any corrupt unit)."""

from phasemake import read_graph, read_plan, stitch_trace_files, write_trace
from phasemake.core.joblog import job_log

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "stitch_trace") as log:
    graph = read_graph(snakemake.input.graph)
    units, _ = read_plan(snakemake.input.plan)
    arrays, meta = stitch_trace_files(graph, units, list(snakemake.input.units))
    write_trace(arrays, meta, snakemake.output.trace)
    log.info("wrote %s from %d units", snakemake.output.trace, len(units))
