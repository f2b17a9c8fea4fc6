# Input, params and resources functions of rules/data.smk (Snakemake's linter keeps
# functions and rules in separate files).
from phasemake.data.genomedata import region_name

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
    """Graph and trace of the analysis's model, and its data file if it has one, or the
    extracted regions of its VCF."""
    files = _model_files(wildcards)
    analysis = ANALYSES[wildcards.analysis]
    if "file" in analysis["data"]:
        files["data"] = analysis["data"]["file"]
    if "vcf" in analysis["data"]:
        files["regions"] = [
            f"results/{wildcards.analysis}/data/regions/{region_name(i)}.h5"
            for i in range(len(analysis["regions"]))
        ]
    return files


def region_inputs(wildcards):
    """The files one region's extraction reads: the VCF (and its index) or tree sequence,
    and the windows BED, mask, population map and ancestral FASTA that are given."""
    vcf = ANALYSES[wildcards.analysis]["data"]["vcf"]
    files = {"genome": vcf["file"]}
    for suffix in (".tbi", ".csi"):  # the index the region query reads
        if os.path.exists(vcf["file"] + suffix):
            files["index"] = vcf["file"] + suffix
    for key in ("windows_bed", "mask", "popmap"):
        if vcf.get(key):
            files[key] = vcf[key]
    if vcf.get("ancestral") not in (None, "info"):
        files["fasta"] = vcf["ancestral"]
    return files


def region_mem_mb(wildcards, attempt):
    """An extraction streams its region: memory is the base plus a little per window."""
    return int((BASE_MEM_MB + 500) * attempt)


def region_runtime(wildcards, input, attempt):
    """Reading the VCF region: 10 min plus 10 min per GB of input (the whole file's size:
    the region's share is not known before reading)."""
    return int((10 + _size_mb(*input) / 100) * attempt)
