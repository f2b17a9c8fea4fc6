"""The NLSQ reducer: sum the chunk accumulators in order and take one LM step."""

from phasemake.core.joblog import PROGRESS, job_log
from phasemake.fit.analysis import step_nlsq
from phasemake.fit.nlsq import LMSettings

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "step_nlsq") as log:
    state = step_nlsq(
        list(snakemake.input.chunks),
        snakemake.output.state,
        previous_state=snakemake.input.get("previous"),
        settings=LMSettings.from_config(snakemake.params.nlsq),
    )
    last = state["history"][-1]
    log.info(
        "pass %d: chi2 %.12g %s, damping %.3g, best chi2 %.12g; %s %s",
        state["iteration"],
        last["chi2"],
        "accepted" if last["accepted"] else "rejected",
        state["damping"],
        state["best"]["chi2"],
        state["status"],
        state["reason"],
        extra=PROGRESS,
    )
