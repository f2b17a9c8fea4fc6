# Stage 2: per graph, a plan of work units (checkpoint), one job per unit, one stitch job.
# Planning and stitching run in the main process; the unit jobs (seconds each) are grouped,
# so that under SLURM many units share one job (group-components in profiles/slurm).
# Cache outputs are update(): never deleted before a job (docs/cache.md).


include: "trace_functions.smk"


localrules:
    plan_trace,
    stitch_trace,


checkpoint plan_trace:
    input:
        graph=f"{CACHE}/graphs/{{spec}}.h5",
    output:
        plan=update(f"{CACHE}/traces/{{spec}}/plan.json"),
    log:
        "logs/plan_trace/{spec}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    params:
        max_unit_cost=config["traces"]["max_unit_cost"],
        units_dir=f"{CACHE}/traces/units",
    message:
        "plan_trace: trace units of {MODEL_OF:{wildcards.spec}} (spec {wildcards.spec})"
    script:
        "../scripts/plan_trace.py"


rule record_trace_unit:
    input:
        unpack(unit_inputs),
    output:
        unit=update(f"{CACHE}/traces/units/{{unit}}.h5"),
    log:
        "logs/record_trace_unit/{unit}.log",
    benchmark:
        "logs/record_trace_unit/{unit}.benchmark.tsv"
    group:
        "trace_units"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=unit_mem_mb,
        runtime=unit_runtime,
    params:
        plan_entry=unit_plan_entry,
    message:
        "record_trace_unit: unit {wildcards.unit} of {UNIT_MODEL:{wildcards.unit}}"
    script:
        "../scripts/record_trace_unit.py"


rule stitch_trace:
    input:
        unpack(stitch_inputs),
    output:
        trace=update(f"{CACHE}/traces/{{spec}}.h5"),
    log:
        "logs/stitch_trace/{spec}.log",
    benchmark:
        "logs/stitch_trace/{spec}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=loaded_mem_mb,
        runtime=loaded_runtime,
    message:
        "stitch_trace: trace of {MODEL_OF:{wildcards.spec}} (spec {wildcards.spec})"
    script:
        "../scripts/stitch_trace.py"
