# phasemake: phase-type model inference at scale. The stages, in the order of the file DAG,
# are described in docs/workflow.md; each rules/<stage>.smk holds that stage's rules and
# includes rules/<stage>_functions.smk, the input, params and resources functions they call
# (Snakemake's linter wants functions and rules in separate files).


from phasemake.configcheck import check_config_file

# The shipped config/config.yaml is the default: it is read only when no --configfile is
# given, so an own config runs alone (not merged into the shipped models and analyses). Its
# size is checked first: Snakemake's merge would hang on a YAML alias bomb.
if not workflow.overwrite_configfiles:
    check_config_file("config/config.yaml")

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/graph.smk"
include: "rules/trace.smk"
include: "rules/data.smk"
include: "rules/fit.smk"
include: "rules/posterior.smk"
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
