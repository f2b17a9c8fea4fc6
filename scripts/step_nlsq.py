"""The NLSQ reducer: sum the chunk accumulators in order and take one LM step."""

from phasemake.core.joblog import job_log
from phasemake.fit.analysis import step_nlsq
from phasemake.fit.nlsq import LMSettings
from phasemake.fit.onejob import log_pass

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "step_nlsq") as log:
    state = step_nlsq(
        list(snakemake.input.chunks),
        snakemake.output.state,
        previous_state=snakemake.input.get("previous"),
        settings=LMSettings.from_config(snakemake.params.nlsq),
    )
    log_pass(log, state)
