# Stage 1: one graph per callback spec, content-addressed in the cache.


include: "graph_functions.smk"


# Cache outputs are update(): Snakemake never deletes an existing one before the job (another
# workflow on a shared cache may be reading it); the job replaces it atomically (docs/cache.md).
rule build_graph:
    output:
        graph=update(f"{CACHE}/graphs/{{spec}}.h5"),
    log:
        "logs/build_graph/{spec}.log",
    benchmark:
        "logs/build_graph/{spec}.benchmark.tsv"
    wildcard_constraints:
        spec=CONFIGURED_SPECS,
    group:
        "graphs"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=build_graph_mem_mb,
        runtime=build_graph_runtime,
    params:
        recipe=graph_recipe,
    message:
        "build_graph: graph of {MODEL_OF:{wildcards.spec}} (spec {wildcards.spec})"
    script:
        "../scripts/build_graph.py"
