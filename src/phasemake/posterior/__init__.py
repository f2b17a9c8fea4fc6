"""Stage 5 (``rules/posterior.smk``): posteriors by consensus Monte Carlo.

:mod:`~phasemake.posterior.priors` (priors on log θ), :mod:`~phasemake.posterior.shards`
(how many shards, which rows), :mod:`~phasemake.posterior.shardplan` (the plan file),
:mod:`~phasemake.posterior.sampling` (NumPyro NUTS on one shard, its quality gates and shard
files), :mod:`~phasemake.posterior.consensus` (combining shards),
:mod:`~phasemake.posterior.refine` (importance refinement against the full-data posterior),
:mod:`~phasemake.posterior.grid` (a grid posterior for one or two parameters, the tail check),
and :mod:`~phasemake.posterior.cmc` and :mod:`~phasemake.posterior.combination`, the
jobs of one configured analysis.
"""
