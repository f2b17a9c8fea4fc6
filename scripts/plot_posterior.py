"""The posterior figures of an analysis: trace plots, marginal densities, pair plot."""

from phasemake.core.joblog import job_log
from phasemake.posterior.consensus import read_consensus
from phasemake.posterior.sampling import read_shard
from phasemake.report.figures import marginals_figure, pair_figure, save_figure, trace_figure
from phasemake.report.tables import read_fit

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "plot_posterior") as log:
    shards = [read_shard(path).phi for path in snakemake.input.shards]
    consensus, meta = read_consensus(snakemake.input.consensus)  # equally weighted draws
    names, truth = meta["free"], snakemake.params.truth
    fit = read_fit(snakemake.input.fit)
    out = snakemake.output
    save_figure(trace_figure(shards, consensus, names), out.traces)
    save_figure(marginals_figure(shards, consensus, names, truth=truth, fit=fit), out.marginals)
    save_figure(pair_figure(consensus, names, shards=shards, truth=truth), out.pairs)
    log.info("wrote %s, %s, %s from %d shards", out.traces, out.marginals, out.pairs, len(shards))
