# Stage 5: consensus Monte Carlo. One checkpoint per analysis fixes the number of shards S
# (plan.json); one NUTS job per shard (retried with a new seed and a higher target
# acceptance when it fails its quality gates); one job combines them. S = 1 is full-data
# NUTS: request results/{analysis}/cmc/S1/shard0.h5, or compare_full.json, on demand.


checkpoint plan_shards:
    input:
        unpack(posterior_inputs),
    output:
        plan="results/{analysis}/cmc/plan.json",
    log:
        "logs/plan_shards/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=analysis_model,
        cmc=plan_settings,
    script:
        "../scripts/plan_shards.py"


rule sample_shard:
    input:
        unpack(posterior_inputs),
    output:
        shard="results/{analysis}/cmc/S{parts}/shard{shard}.h5",
    log:
        "logs/sample_shard/{analysis}/S{parts}/shard{shard}.log",
    benchmark:
        "logs/sample_shard/{analysis}/S{parts}/shard{shard}.benchmark.tsv"
    retries: SHARD_RETRIES
    conda:
        "../envs/phasemake.yaml"
    threads: shard_threads
    resources:
        mem_mb=build_graph_mem_mb,
        runtime=120,
        attempt=shard_attempt,
        attempts=shard_attempts,
    params:
        model=analysis_model,
        cmc=shard_settings,
        history="logs/sample_shard/{analysis}/S{parts}/shard{shard}.attempts.jsonl",
        compilation_cache=f"{CACHE}/jax",
    script:
        "../scripts/sample_shard.py"


rule combine_shards:
    input:
        unpack(consensus_inputs),
    output:
        draws="results/{analysis}/cmc/consensus.h5",
        summary="results/{analysis}/cmc/consensus.json",
    log:
        "logs/combine_shards/{analysis}.log",
    benchmark:
        "logs/combine_shards/{analysis}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cmc=combine_settings,
        truth=analysis_truth,
    script:
        "../scripts/combine_shards.py"


rule compare_full:
    input:
        consensus="results/{analysis}/cmc/consensus.h5",
        full="results/{analysis}/cmc/S1/shard0.h5",
    output:
        comparison="results/{analysis}/cmc/compare_full.json",
    log:
        "logs/compare_full/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/compare_full.py"
