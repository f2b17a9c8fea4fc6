# Input, params and resources functions of rules/data.smk (Snakemake's linter keeps
# functions and rules in separate files).
def analysis_settings(wildcards):
    """The analysis's config block up to NLSQ. Its `cmc` block and a file's `data.truth`
    are left out: a posterior setting, or what the truth was, must not re-run the data or
    the fit."""
    settings = {k: v for k, v in ANALYSES[wildcards.analysis].items() if k != "cmc"}
    data = {k: v for k, v in settings["data"].items() if k != "truth"}
    return {**settings, "data": data}


def observation_inputs(wildcards):
    """Graph and trace of the analysis's model, and its data file if it has one."""
    files = _model_files(wildcards)
    data = ANALYSES[wildcards.analysis]["data"]
    if "file" in data:
        files["data"] = data["file"]
    return files
