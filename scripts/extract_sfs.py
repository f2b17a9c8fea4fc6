"""One region of an analysis's VCF (or tree sequence): its windows' SFS, projected to the
model's lineages, written as an observations file that the data job joins."""

from phasemake.core.joblog import job_log
from phasemake.data.genomedata import contig_index, extract_region, skipped_text
from phasemake.data.observations import write_observations

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "extract_sfs") as log:
    analysis = snakemake.params.analysis
    index = int(snakemake.wildcards.region.removeprefix("region"))
    region = analysis["regions"][index]
    obs, info = extract_region(
        analysis["data"]["vcf"],
        region,
        n=analysis["lineages"],
        folded=analysis["data"].get("folded", False),
        contig_index=contig_index(analysis["regions"], index),
    )
    write_observations(
        obs,
        snakemake.output.region,
        provenance={"analysis": snakemake.wildcards.analysis, "region": region, "extraction": info},
    )
    log.info(
        "%s:%d-%d: %d records, %d windows; skipped: %s",
        region["contig"],
        region["start"],
        region["end"],
        info["records"],
        info["windows"],
        skipped_text(info["skipped"]),
    )
