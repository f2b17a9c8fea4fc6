"""The fit-vs-data figure of an analysis: density and survival against the absorption
times, or the expected against the observed SFS; at the NLSQ estimate and posterior draws."""

import numpy as np

from phasemake.core.joblog import job_log
from phasemake.data.observations import iter_blocks, read_header
from phasemake.fit.analysis import enable_compilation_cache, model_from_files
from phasemake.posterior.consensus import read_consensus
from phasemake.report.figures import save_figure
from phasemake.report.fitfigures import (
    absorption_fit_figure,
    predict,
    sfs_fit_figure,
    time_histogram,
)
from phasemake.report.tables import read_fit

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "plot_fit") as log:
    enable_compilation_cache(snakemake.params.compilation_cache)
    inp = snakemake.input
    model = model_from_files(snakemake.params.model, trace=inp.trace, graph=inp.graph)
    fit = read_fit(inp.fit)
    nlsq_phi = np.log([fit["parameters"][n]["estimate"] for n in fit["free"]])
    draws = None
    if inp.get("consensus"):
        phi = read_consensus(inp.consensus)[0].reshape(-1, len(fit["free"]))
        pick = np.linspace(0, len(phi) - 1, snakemake.params.posterior_draws).astype(int)
        draws = phi[pick]  # evenly spaced draws: a deterministic subsample
    header = read_header(inp.observations)
    if model.kind == "sfs":
        observed, sites = 0.0, 0.0
        for block in iter_blocks(inp.observations):
            observed = observed + block.columns["counts"].sum(axis=0)
            sites += float(block.columns["sites"].sum())
        figure = sfs_fit_figure(
            observed,
            sites=sites,
            windows=header["n_rows"],
            nlsq=predict(model, nlsq_phi)[0],
            posterior=None if draws is None else predict(model, draws),
        )
    else:
        hist = time_histogram(iter_blocks(inp.observations), t_max=header["t_max"])
        grid = np.linspace(0.0, header["t_max"], 200)
        pdf, surv = predict(model, nlsq_phi, grid=grid)
        post = None if draws is None else predict(model, draws, grid=grid)
        figure = absorption_fit_figure(hist, grid=grid, nlsq=(pdf[0], surv[0]), posterior=post)
    save_figure(figure, snakemake.output.figure)
    log.info("wrote %s (%s, %d rows)", snakemake.output.figure, model.kind, header["n_rows"])
