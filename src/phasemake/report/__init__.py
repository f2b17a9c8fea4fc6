"""Stage 6 (``rules/report.smk``): the figures and tables of the HTML report.

:mod:`~phasemake.report.figures` (NLSQ convergence and posteriors),
:mod:`~phasemake.report.fitfigures` (model against data) and :mod:`~phasemake.report.tables`
(estimates, model summary, diagnostics, timings).
"""
