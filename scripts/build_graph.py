"""Build one model's state-space graph and write it to the content-addressed cache."""

from phasemake import build_graph, load_model, spec_hash, write_graph
from phasemake.core.joblog import job_log

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "build_graph") as log:
    recipe = snakemake.params.recipe
    params = dict(recipe.params)
    log.info("model %s: %s %s", recipe.name, recipe.callback, params)
    model = load_model(recipe.callback)
    spec = spec_hash(model, **params)
    if spec != snakemake.wildcards.spec:
        raise RuntimeError(
            f"{recipe.callback} now hashes to {spec}, not {snakemake.wildcards.spec}: "
            "the model changed after the workflow was parsed; rerun snakemake"
        )
    graph = build_graph(model, max_states=recipe.max_states, **params)
    write_graph(graph, snakemake.output.graph)
    log.info("wrote %s (%s)", snakemake.output.graph, graph.summary())
