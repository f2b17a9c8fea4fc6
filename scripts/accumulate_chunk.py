"""One NLSQ chunk job: JᵀJ, Jᵀr and χ² of one chunk of rows at this pass's point."""

import time

start = time.perf_counter()

from phasemake.core.compiletime import JobClock  # noqa: E402
from phasemake.core.joblog import job_log  # noqa: E402
from phasemake.data.obsmodel import ObservationModel  # noqa: E402, F401  (the JAX side)
from phasemake.fit.analysis import accumulate_chunk, enable_compilation_cache, model_from_files  # noqa: E402

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "accumulate_chunk") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    clock = JobClock(start)
    previous = snakemake.input.get("previous")
    model = model_from_files(  # the first pass starts at the data's scale
        snakemake.params.analysis,
        trace=snakemake.input.trace,
        graph=snakemake.input.graph,
        observations=None if previous else snakemake.input.observations,
    )
    acc = accumulate_chunk(
        model,
        snakemake.input.observations,
        snakemake.output.chunk,
        chunk=int(snakemake.wildcards.chunk),
        chunks=snakemake.params.chunks,
        previous_state=previous,
        data=snakemake.params.analysis["data"],
    )
    log.info(
        "chunk %s of pass %s: chi2 %.10g over %g rows; imports %.2f s",
        snakemake.wildcards.chunk,
        snakemake.wildcards.step,
        acc.chi2,
        acc.count,
        clock.imports,
    )
    log.info("%s", clock.summary())
