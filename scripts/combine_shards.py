"""The consensus posterior of an analysis from its shard posterior files, refined against
the full-data posterior when cmc.refine asks for it."""

from phasemake.core.joblog import job_log
from phasemake.fit.analysis import enable_compilation_cache, model_from_files, read_fit
from phasemake.posterior.combination import combine_shards
from phasemake.posterior.shardplan import read_shard_plan

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "combine_shards") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    plan = read_shard_plan(snakemake.input.plan)
    model = model_from_files(
        snakemake.params.model, trace=snakemake.input.trace, graph=snakemake.input.graph
    )
    summary = combine_shards(
        list(snakemake.input.shards),
        snakemake.output.draws,
        snakemake.output.summary,
        cmc=snakemake.params.cmc,
        model=model,
        observations=snakemake.input.observations,
        truth=snakemake.params.truth,
        fit=read_fit(snakemake.input.fit),
        analysis=snakemake.wildcards.analysis,
        plan=plan,
    )
    for name, p in summary["parameters"].items():
        q = p["quantiles"]
        log.info(
            "%s: mean %.6g, sd %.3g, 90%% interval [%.6g, %.6g]",
            name,
            p["mean"],
            p["sd"],
            q["0.05"],
            q["0.95"],
        )
    for name, t in summary.get("truth", {}).items():
        log.info("%s: true %.6g, posterior mean off by %+.2f sd", name, t["true"], t["z"])
    het = summary["heterogeneity"]
    log.info(
        "%s consensus of %d shards; heterogeneity Q = %.3g on %d df (p = %.3g)",
        summary["rule"],
        summary["shards"],
        het["Q"],
        het["df"],
        het["p_value"],
    )
