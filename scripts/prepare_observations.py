"""Read and validate an analysis's data file, or simulate it; write the block file (at
least one block per chunk job)."""

from phasemake import load_trace, read_graph
from phasemake.analysis import prepare_observations
from phasemake.joblog import job_log
from phasemake.observations import write_observations

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "prepare_observations") as log:
    analysis = snakemake.params.analysis
    graph = read_graph(snakemake.input.graph)
    trace = load_trace(snakemake.input.trace)
    obs = prepare_observations(analysis, graph, trace)
    meta = write_observations(
        obs,
        snakemake.output.observations,
        block_rows=min(analysis["block_rows"], -(-obs.n_rows // analysis["chunks"])),
        provenance={"analysis": snakemake.wildcards.analysis, "data": analysis["data"]},
    )
    log.info(
        "%s: %d rows of %s in %d blocks, %s",
        snakemake.wildcards.analysis,
        meta["n_rows"],
        obs.kind,
        len(meta["block_checksums"]),
        meta["checksum"],
    )
