"""Stage 3 (``rules/data.smk``): observations and the observation models.

:mod:`~phasemake.data.observations` reads, validates and simulates data and writes the
block-checksummed observation files; :mod:`~phasemake.data.obsmodel` turns a trace and a
block of rows into log-likelihoods and the residuals NLSQ accumulates.
"""
