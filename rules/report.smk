# Stage 6: per analysis, the figures and tables of `snakemake --report report.html`.
# Each output is flagged with report(): category = the analysis, subcategory = the topic
# (numbered, so the report lists them in reading order).


include: "report_functions.smk"


report: "../report/workflow.rst"


# small jobs (seconds each): run by the main process, never submitted to a cluster
localrules:
    tabulate_estimates,
    summarise_model,
    plot_nlsq,
    plot_posterior,
    plot_fit,
    tabulate_diagnostics,
    tabulate_timings,


rule tabulate_estimates:
    input:
        unpack(estimates_inputs),
    output:
        table=report(
            "results/{analysis}/report/estimates.html",
            caption="../report/estimates.rst",
            category="{analysis}",
            subcategory="1 Estimates",
            labels={"table": "estimates"},
        ),
    log:
        "logs/tabulate_estimates/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        truth=analysis_truth,
    script:
        "../scripts/tabulate_estimates.py"


rule summarise_model:
    input:
        unpack(model_summary_inputs),
    output:
        table=report(
            "results/{analysis}/report/model.html",
            caption="../report/model.rst",
            category="{analysis}",
            subcategory="2 Model",
            labels={"table": "model summary"},
        ),
    log:
        "logs/summarise_model/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=analysis_model_config,
        units_dir=f"{CACHE}/traces/units",
        unit_benchmarks=unit_benchmarks,
        build_benchmark=graph_benchmark,
    script:
        "../scripts/summarise_model.py"


rule plot_nlsq:
    input:
        unpack(nlsq_plot_inputs),
    output:
        figure=report(
            "results/{analysis}/report/nlsq.png",
            caption="../report/nlsq.rst",
            category="{analysis}",
            subcategory="3 NLSQ",
            labels={"figure": "convergence and estimates"},
        ),
    log:
        "logs/plot_nlsq/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        truth=analysis_truth,
    script:
        "../scripts/plot_nlsq.py"


rule plot_posterior:
    input:
        unpack(posterior_plot_inputs),
    output:
        traces=report(
            "results/{analysis}/report/posterior_traces.png",
            caption="../report/posterior_traces.rst",
            category="{analysis}",
            subcategory="4 Posterior",
            labels={"figure": "1 trace plots"},
        ),
        marginals=report(
            "results/{analysis}/report/posterior_marginals.png",
            caption="../report/posterior_marginals.rst",
            category="{analysis}",
            subcategory="4 Posterior",
            labels={"figure": "2 marginal densities"},
        ),
        pairs=report(
            "results/{analysis}/report/posterior_pairs.png",
            caption="../report/posterior_pairs.rst",
            category="{analysis}",
            subcategory="4 Posterior",
            labels={"figure": "3 pair plot"},
        ),
    log:
        "logs/plot_posterior/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        truth=analysis_truth,
    script:
        "../scripts/plot_posterior.py"


rule plot_fit:
    input:
        unpack(fit_plot_inputs),
    output:
        figure=report(
            "results/{analysis}/report/fit.png",
            caption="../report/fit.rst",
            category="{analysis}",
            subcategory="5 Fit vs data",
            labels={"figure": "model vs data"},
        ),
    log:
        "logs/plot_fit/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=analysis_model,
        compilation_cache=f"{CACHE}/jax",
        posterior_draws=40,
    script:
        "../scripts/plot_fit.py"


rule tabulate_diagnostics:
    input:
        unpack(estimates_inputs),
    output:
        table=report(
            "results/{analysis}/report/diagnostics.html",
            caption="../report/diagnostics.rst",
            category="{analysis}",
            subcategory="6 Diagnostics",
            labels={"table": "diagnostics"},
        ),
    log:
        "logs/tabulate_diagnostics/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        max_rhat=analysis_max_rhat,
    script:
        "../scripts/tabulate_diagnostics.py"


rule tabulate_timings:
    input:
        unpack(timing_inputs),
    output:
        table=report(
            "results/{analysis}/report/timings.html",
            caption="../report/timings.rst",
            category="{analysis}",
            subcategory="7 Timings",
            labels={"table": "timings"},
        ),
    log:
        "logs/tabulate_timings/{analysis}.log",
    conda:
        "../envs/phasemake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        benchmarks=timing_benchmarks,
    script:
        "../scripts/tabulate_timings.py"
