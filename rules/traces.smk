# Stage 3: per graph, a plan of work units (checkpoint), one job per unit, one stitch job.


checkpoint plan_trace:
    input:
        graph=f"{CACHE}/graphs/{{spec}}.h5",
    output:
        plan=f"{CACHE}/traces/{{spec}}/plan.json",
    log:
        "logs/plan_trace/{spec}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=build_graph_mem_mb,
        runtime=30,
    params:
        max_unit_cost=config["traces"]["max_unit_cost"],
        units_dir=f"{CACHE}/traces/units",
    script:
        "../scripts/plan_trace.py"


rule record_trace_unit:
    input:
        unpack(unit_inputs),
    output:
        unit=f"{CACHE}/traces/units/{{unit}}.h5",
    log:
        "logs/record_trace_unit/{unit}.log",
    benchmark:
        "logs/record_trace_unit/{unit}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=build_graph_mem_mb,
        runtime=60,
    params:
        plan_entry=unit_plan_entry,
    script:
        "../scripts/record_trace_unit.py"


rule stitch_trace:
    input:
        unpack(stitch_inputs),
    output:
        trace=f"{CACHE}/traces/{{spec}}.h5",
    log:
        "logs/stitch_trace/{spec}.log",
    benchmark:
        "logs/stitch_trace/{spec}.benchmark.tsv"
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=build_graph_mem_mb,
        runtime=30,
    script:
        "../scripts/stitch_trace.py"
