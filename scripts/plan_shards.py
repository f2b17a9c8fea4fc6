"""Fix the number of CMC shards of an analysis (config, or the cost-model rule)."""

import time

start = time.perf_counter()

from phasemake.core.compiletime import JobClock  # noqa: E402
from phasemake.core.joblog import job_log  # noqa: E402
from phasemake.fit.analysis import enable_compilation_cache, model_from_files  # noqa: E402
from phasemake.posterior.cmc import plan_shards  # noqa: E402

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "plan_shards") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    clock = JobClock(start)
    model = model_from_files(
        snakemake.params.model, trace=snakemake.input.trace, graph=snakemake.input.graph
    )
    plan = plan_shards(
        model,
        snakemake.input.observations,
        snakemake.input.fit,
        snakemake.output.plan,
        cmc=snakemake.params.cmc,
    )
    choice = plan["choice"]
    log.info(
        "%s: S = %d (%s); %d points, %s per shard; work per shard %.3g (target %.3g)",
        snakemake.wildcards.analysis,
        plan["shards"],
        plan["how"],
        plan["points"],
        sorted(set(plan["points_per_shard"])),
        choice["work_per_shard"] if plan["shards"] == choice["shards"] else float("nan"),
        choice["target_work"],
    )
    log.info("%s", clock.summary())
