# Stage 3: the observations of each analysis (simulated, or read from a data file),
# validated and written as a block-checksummed HDF5 file.


include: "data_functions.smk"


rule prepare_observations:
    input:
        unpack(observation_inputs),
    output:
        observations="results/{analysis}/data/observations.h5",
    log:
        "logs/prepare_observations/{analysis}.log",
    benchmark:
        "logs/prepare_observations/{analysis}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    params:
        analysis=analysis_settings,
        compilation_cache=f"{CACHE}/jax",
    script:
        "../scripts/prepare_observations.py"
