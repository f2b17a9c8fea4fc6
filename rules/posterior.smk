# Stage 5: consensus Monte Carlo. One checkpoint per analysis fixes the number of shards S
# (plan.json); one NUTS job per shard (retried with a new seed and a higher target
# acceptance when it fails its quality gates); one job combines them. S = 1 is full-data
# NUTS: request results/{analysis}/cmc/S1/shard0.h5, or compare_full.json, on demand.
# Planning and comparing run in the main process. The combination is a job of its own: its
# refinement evaluates the full-data likelihood (cmc.refine_proposals times).


include: "posterior_functions.smk"


localrules:
    plan_shards,
    compare_full,


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
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    params:
        model=analysis_model,
        cmc=plan_settings,
        compilation_cache=f"{CACHE}/jax",
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
        mem_mb=shard_mem_mb,
        runtime=shard_runtime,
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
        mem_mb=loaded_mem_mb,
        runtime=combine_runtime,
    params:
        model=analysis_model,
        cmc=combine_settings,
        truth=analysis_truth,
        compilation_cache=f"{CACHE}/jax",
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
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    script:
        "../scripts/compare_full.py"
