# Input, params and resources functions of rules/data.smk (Snakemake's linter keeps
# functions and rules in separate files).
PROFILE_KEYS = ("profile", "profile_range")


def without_profile(nlsq):
    """An `nlsq` block less the profile's settings."""
    return {k: v for k, v in nlsq.items() if k not in PROFILE_KEYS}


def analysis_settings(wildcards):
    """The analysis's config block up to NLSQ. Its `cmc` block, a file's `data.truth` and
    the profile's settings are left out: a posterior or profile setting, or what the truth
    was, must not re-run the data or the fit's passes."""
    settings = {k: v for k, v in ANALYSES[wildcards.analysis].items() if k != "cmc"}
    data = {k: v for k, v in settings["data"].items() if k != "truth"}
    return {**settings, "data": data, "nlsq": without_profile(settings["nlsq"])}


def observation_inputs(wildcards):
    """Graph and trace of the analysis's model, and its data file if it has one."""
    files = _model_files(wildcards)
    data = ANALYSES[wildcards.analysis]["data"]
    if "file" in data:
        files["data"] = data["file"]
    return files
