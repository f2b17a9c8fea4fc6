"""Read and validate an analysis's data file, or simulate it; write the block file (at
least one block per chunk job)."""

import time

start = time.perf_counter()

from phasemake import load_trace, read_graph  # noqa: E402
from phasemake.core.compiletime import JobClock  # noqa: E402
from phasemake.core.joblog import job_log  # noqa: E402
from phasemake.data.observations import write_observations  # noqa: E402
from phasemake.data.obsmodel import ObservationModel  # noqa: E402, F401  (the JAX side)
from phasemake.fit.analysis import enable_compilation_cache, prepare_observations  # noqa: E402

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "prepare_observations") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    clock = JobClock(start)
    analysis = snakemake.params.analysis
    graph = read_graph(snakemake.input.graph)
    trace = load_trace(  # the graph's own trace, else a clear error
        snakemake.input.trace, spec=graph.provenance.get("spec"), parameters=graph.parameters
    )
    obs = prepare_observations(analysis, graph, trace, regions=snakemake.input.get("regions"))
    provenance = {"analysis": snakemake.wildcards.analysis, "data": analysis["data"]}
    if "regions" in analysis:  # the contig column indexes these
        provenance["contigs"] = list(dict.fromkeys(r["contig"] for r in analysis["regions"]))
    meta = write_observations(
        obs,
        snakemake.output.observations,
        block_rows=min(analysis["block_rows"], -(-obs.n_rows // analysis["chunks"])),
        provenance=provenance,
    )
    log.info(
        "%s: %d rows of %s in %d blocks, %s",
        snakemake.wildcards.analysis,
        meta["n_rows"],
        obs.kind,
        len(meta["block_checksums"]),
        meta["checksum"],
    )
    log.info("%s", clock.summary())
