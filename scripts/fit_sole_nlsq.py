"""Every NLSQ pass of a one-chunk analysis in one job: the per-pass chunk and state files
(bit-identical to the per-pass jobs'), then the manifest; a killed job resumes."""

import os
import time

start = time.perf_counter()

from phasemake.core.compiletime import JobClock  # noqa: E402
from phasemake.core.joblog import job_log  # noqa: E402
from phasemake.data.obsmodel import ObservationModel  # noqa: E402, F401  (the JAX side)
from phasemake.fit.analysis import enable_compilation_cache  # noqa: E402
from phasemake.fit.nlsq import LMSettings  # noqa: E402
from phasemake.fit.onejob import fit_sole_passes  # noqa: E402

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "fit_sole_nlsq") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    clock = JobClock(start)
    state = fit_sole_passes(
        snakemake.params.analysis,
        observations=snakemake.input.observations,
        trace=snakemake.input.trace,
        graph=snakemake.input.graph,
        folder=os.path.dirname(snakemake.output.manifest),  # results/{analysis}/nlsq
        manifest=snakemake.output.manifest,
        settings=LMSettings.from_config(snakemake.params.nlsq),
    )
    log.info(
        "%s after %d passes: %s; imports %.2f s",
        state["status"],
        state["iteration"] + 1,
        state["reason"],
        clock.imports,
    )
    log.info("%s", clock.summary())
