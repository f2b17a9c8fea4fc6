"""The 95% profile-likelihood interval of every free parameter of an NLSQ fit."""

from phasemake.core.joblog import PROGRESS, job_log
from phasemake.fit.analysis import enable_compilation_cache, model_from_files, profile_fit
from phasemake.fit.nlsq import LMSettings

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "profile_nlsq") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    model = model_from_files(
        snakemake.params.analysis, trace=snakemake.input.trace, graph=snakemake.input.graph
    )
    profile = profile_fit(
        model,
        snakemake.input.observations,
        snakemake.input.state,
        snakemake.output.profile,
        range_factor=snakemake.params.range,
        settings=LMSettings.from_config(snakemake.params.analysis["nlsq"]),
        chunks=snakemake.params.chunks,
    )
    for name, p in profile["parameters"].items():
        low, high = p["profile"]
        log.info(
            "%s: 95%% profile interval [%s, %s]",
            name,
            "open" if low is None else f"{low:.6g}",
            "open" if high is None else f"{high:.6g}",
            extra=PROGRESS,
        )
    log.info("%d evaluations over the data", profile["evaluations"])
