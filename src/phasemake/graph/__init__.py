"""Stage 1 (``rules/graph.smk``): a model callback becomes a state-space graph.

:mod:`~phasemake.graph.model` is the model protocol (the ``@phasemake.model`` decorator),
:mod:`~phasemake.graph.spechash` the spec hash that decides when a graph is stale,
:mod:`~phasemake.graph.build` the breadth-first construction, :mod:`~phasemake.graph.files`
the graph files, :mod:`~phasemake.graph.cache` the content-addressed graph cache and
:mod:`~phasemake.graph.resolve` the loading of ``file.py:name`` / ``module:name`` callbacks.

The stage is named after what it produces: ``phasemake.model`` is the public decorator, and
a subpackage of that name would shadow it (``import phasemake.model.x as y`` would break).
"""
