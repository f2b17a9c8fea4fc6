"""Stage 4 (``rules/fit.smk``): streaming NLSQ (Levenberg–Marquardt over chunk files).

:mod:`~phasemake.fit.nlsq` holds the reducer step and the fit summary,
:mod:`~phasemake.fit.state` the pass-state files (readable without JAX, so the workflow walks
the passes at parse time), and :mod:`~phasemake.fit.analysis` the jobs of one configured
analysis: preparing its observations, accumulating a chunk, stepping, summarising.
"""
