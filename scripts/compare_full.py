"""A consensus posterior against full-data NUTS on the same data (on request)."""

from phasemake.core.joblog import job_log
from phasemake.posterior.cmc import compare_full

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "compare_full") as log:
    result = compare_full(
        snakemake.input.consensus, snakemake.input.full, snakemake.output.comparison
    )
    for name, r in result["parameters"].items():
        log.info(
            "%s: consensus mean off by %+.3f full-data sd, sd ratio %.3f",
            name,
            r["mean_diff_in_sd"],
            r["sd_ratio"],
        )
    log.info(
        "largest correlation difference %.3f; agreement %s",
        result["max_correlation_diff"],
        result["agreement"],
    )
