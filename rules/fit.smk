# Stage 4: NLSQ passes. An analysis with one small chunk (SOLE_CHUNK) runs every pass in
# one job, the checkpoint fit_sole_nlsq (a localrule: seconds to minutes of work): it
# compiles once and writes the same pass{k}/chunk0.h5 and pass{k}/state.json files as the
# per-pass jobs (bit-identical), then its manifest passes.json; the pass files are not
# declared outputs, so a killed job resumes after its last valid pass. Other analyses run
# per pass one job per chunk (accumulate_chunk) and one reducer (the checkpoint step_nlsq:
# the next pass exists only once this one's state says "running"). Then the
# profile-likelihood intervals (profile_nlsq, one job: a few dozen streamed passes) and
# the fit's summary. The reducer and the summary run in the main process. Chunk jobs are
# not grouped: a group spanning two passes would contain jobs on both sides of the
# reducer (Snakemake refuses it); under SLURM, set `chunk_rows` so that a chunk job takes
# a minute or more (about 1.2e8 rows).


include: "fit_functions.smk"


localrules:
    fit_sole_nlsq,
    step_nlsq,
    summarise_nlsq,


checkpoint fit_sole_nlsq:
    input:
        unpack(sole_fit_inputs),
    output:
        manifest="results/{analysis}/nlsq/passes.json",
    log:
        "logs/fit_sole_nlsq/{analysis}.log",
    benchmark:
        "logs/fit_sole_nlsq/{analysis}.benchmark.tsv"
    wildcard_constraints:
        analysis=SOLE_CHUNK,
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=chunk_mem_mb,
        runtime=sole_fit_runtime,
    params:
        analysis=analysis_settings,
        nlsq=analysis_nlsq,
        compilation_cache=f"{CACHE}/jax",
    script:
        "../scripts/fit_sole_nlsq.py"


rule accumulate_chunk:
    input:
        unpack(chunk_inputs),
    output:
        chunk="results/{analysis}/nlsq/pass{step}/chunk{chunk}.h5",
    log:
        "logs/accumulate_chunk/{analysis}/pass{step}/chunk{chunk}.log",
    benchmark:
        "logs/accumulate_chunk/{analysis}/pass{step}/chunk{chunk}.benchmark.tsv"
    wildcard_constraints:
        analysis=SEVERAL_CHUNKS,
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=chunk_mem_mb,
        runtime=chunk_runtime,
    params:
        analysis=analysis_settings,
        chunks=analysis_chunks,
        compilation_cache=f"{CACHE}/jax",
    script:
        "../scripts/accumulate_chunk.py"


checkpoint step_nlsq:
    input:
        unpack(step_inputs),
    output:
        state="results/{analysis}/nlsq/pass{step}/state.json",
    log:
        "logs/step_nlsq/{analysis}/pass{step}.log",
    wildcard_constraints:
        analysis=SEVERAL_CHUNKS,
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    params:
        nlsq=analysis_nlsq,
    script:
        "../scripts/step_nlsq.py"


rule profile_nlsq:
    input:
        unpack(profile_inputs),
    output:
        profile="results/{analysis}/nlsq/profile.json",
    log:
        "logs/profile_nlsq/{analysis}.log",
    benchmark:
        "logs/profile_nlsq/{analysis}.benchmark.tsv"
    wildcard_constraints:
        analysis=SEVERAL_CHUNKS,
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=chunk_mem_mb,
        runtime=profile_runtime,
    params:
        analysis=analysis_settings,
        range=profile_range,
        chunks=analysis_chunks,
        compilation_cache=f"{CACHE}/jax",
    script:
        "../scripts/profile_nlsq.py"


# the profile of a one-chunk analysis: seconds of work, run in the main process
use rule profile_nlsq as profile_sole_nlsq with:
    wildcard_constraints:
        analysis=SOLE_CHUNK,
    localrule: True


rule summarise_nlsq:
    input:
        unpack(fit_inputs),
    output:
        fit="results/{analysis}/nlsq/fit.json",
    log:
        "logs/summarise_nlsq/{analysis}.log",
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
        "../scripts/summarise_nlsq.py"
