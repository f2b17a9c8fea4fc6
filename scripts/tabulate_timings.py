"""The timings table of an analysis, from the benchmark files of its jobs."""

from phasemake.core.joblog import job_log
from phasemake.report.tables import timings_table, write_html

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "tabulate_timings") as log:
    benchmarks = snakemake.params.benchmarks
    write_html(timings_table(snakemake.wildcards.analysis, benchmarks), snakemake.output.table)
    log.info(
        "wrote %s from %d benchmark files of %d rules",
        snakemake.output.table,
        sum(len(v) for v in benchmarks.values()),
        len(benchmarks),
    )
