"""Stage 2 (``rules/trace.smk``): elimination traces and their exact evaluation in JAX.

:mod:`~phasemake.trace.units` plans work units and records their traces (NumPy only),
:mod:`~phasemake.trace.files` reads and writes plans, units and stitched traces,
:mod:`~phasemake.trace.evaluator` evaluates a trace for any θ (expectations, moments,
density) with :mod:`~phasemake.trace.uniformisation`, and :mod:`~phasemake.trace.dense` holds
the dense-linear-algebra references the tests check it against.
"""
