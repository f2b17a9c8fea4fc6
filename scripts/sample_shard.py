"""NUTS on one CMC shard (all the data when S = 1): the shard posterior file."""

import time

start = time.perf_counter()

from phasemake.core.compiletime import JobClock, compile_seconds  # noqa: E402
from phasemake.core.joblog import job_log  # noqa: E402
from phasemake.fit.analysis import enable_compilation_cache, model_from_files  # noqa: E402
from phasemake.posterior.cmc import sample_shard  # noqa: E402

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "sample_shard") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    clock = JobClock(start)
    log.info("imports %.2f s", clock.imports)
    model = model_from_files(
        snakemake.params.model, trace=snakemake.input.trace, graph=snakemake.input.graph
    )
    sample_shard(
        model,
        snakemake.input.observations,
        snakemake.input.fit,
        snakemake.output.shard,
        cmc=snakemake.params.cmc,
        index=int(snakemake.wildcards.shard),
        shards=int(snakemake.wildcards.parts),
        attempt=int(snakemake.resources.attempt),
        attempts=int(snakemake.resources.attempts),
        threads=snakemake.threads,
        label=f"analysis {snakemake.wildcards.analysis}, ",
        history=snakemake.params.history,
    )
    log.info(
        "compile %.2f s (all chains); total %.2f s with %d threads",
        compile_seconds(),
        clock.fixed()["total"] - clock.python_start,
        snakemake.threads,
    )
    log.info("%s", clock.summary())
