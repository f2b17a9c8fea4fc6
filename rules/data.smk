# Stage 3: the observations of each analysis (simulated, read from a data file, or
# extracted from a VCF/tree sequence one region per job), validated and written as a
# block-checksummed HDF5 file.


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


rule extract_sfs:
    input:
        unpack(region_inputs),
    output:
        region="results/{analysis}/data/regions/{region}.h5",
    log:
        "logs/extract_sfs/{analysis}/{region}.log",
    benchmark:
        "logs/extract_sfs/{analysis}/{region}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=region_mem_mb,
        runtime=region_runtime,
    params:
        analysis=analysis_settings,
    script:
        "../scripts/extract_sfs.py"
