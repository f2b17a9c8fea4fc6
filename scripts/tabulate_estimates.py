"""The estimates table of an analysis: NLSQ estimates and the posterior, against the truth."""

from phasemake.core.joblog import job_log
from phasemake.report.tables import estimates_table, read_fit, read_posterior_summary, write_html

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "tabulate_estimates") as log:
    fit = read_fit(snakemake.input.fit)
    summary = snakemake.input.get("posterior")
    posterior = read_posterior_summary(summary) if summary else None
    page = estimates_table(
        snakemake.wildcards.analysis, fit, posterior=posterior, truth=snakemake.params.truth
    )
    write_html(page, snakemake.output.table)
    log.info("wrote %s (posterior: %s)", snakemake.output.table, summary or "none")
