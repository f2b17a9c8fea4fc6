"""The NLSQ result of an analysis: estimates, standard errors, covariance, convergence."""

from phasemake.core.joblog import job_log
from phasemake.fit.analysis import enable_compilation_cache, model_from_files, write_fit

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "summarise_nlsq") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    model = model_from_files(
        snakemake.params.analysis, trace=snakemake.input.trace, graph=snakemake.input.graph
    )
    fit = write_fit(
        model,
        snakemake.input.state,
        snakemake.output.fit,
        profile=snakemake.input.get("profile"),
        analysis=snakemake.wildcards.analysis,
    )
    for name, p in fit["parameters"].items():
        log.info("%s = %.6g ± %.3g%s", name, p["estimate"], p["se"], " (fixed)" * p["fixed"])
    for warning in fit["warnings"]:
        log.warning("%s", warning)
    log.info("%s after %d passes: %s", fit["status"], fit["passes"], fit["reason"])
