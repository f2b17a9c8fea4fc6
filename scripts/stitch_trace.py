"""Stitch one graph's work units into its trace (re-recording any corrupt unit)."""

import logging

from phasemake import read_graph, read_plan, stitch_trace_files, write_trace

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)
logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
log = logging.getLogger("stitch_trace")

try:
    graph = read_graph(snakemake.input.graph)
    units, _ = read_plan(snakemake.input.plan)
    arrays, meta = stitch_trace_files(graph, units, list(snakemake.input.units))
    write_trace(arrays, meta, snakemake.output.trace)
    log.info("wrote %s from %d units", snakemake.output.trace, len(units))
except Exception:
    log.exception("stitch_trace failed")
    raise
