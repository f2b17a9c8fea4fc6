"""The NLSQ figure of an analysis: objective per pass, evaluated points, estimates."""

from phasemake.core.joblog import job_log
from phasemake.fit.state import read_state
from phasemake.report.figures import nlsq_figure, pass_points, save_figure
from phasemake.report.tables import read_fit

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "plot_nlsq") as log:
    fit = read_fit(snakemake.input.fit)
    points = pass_points([read_state(path) for path in snakemake.input.states])
    figure = nlsq_figure(fit, points=points, truth=snakemake.params.truth)
    save_figure(figure, snakemake.output.figure)
    log.info("wrote %s: %d passes, %s", snakemake.output.figure, len(points), fit["reason"])
