"""Stage 3 (``rules/data.smk``): observations and the observation models.

:mod:`~phasemake.data.datafiles` reads users' data files,
:mod:`~phasemake.data.simulation` and :mod:`~phasemake.data.epochsim` simulate data,
:mod:`~phasemake.data.observations` validates them and writes the block-checksummed
observation files; :mod:`~phasemake.data.obsmodel` turns a trace and a
block of rows into log-likelihoods and the residuals NLSQ accumulates.
"""
