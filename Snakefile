# phasemake: phase-type model inference at scale. See README.md and ../shared/DESIGN.md.


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/graphs.smk"
include: "rules/traces.smk"
include: "rules/nlsq.smk"
include: "rules/cmc.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        graph_files(),
        trace_files(),
        unit_files(),
        fit_files(),
        posterior_files(),
        report_files(),
