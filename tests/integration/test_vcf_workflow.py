"""A VCF through the workflow (issue 17): a chromosome simulated by msprime with
recombination, written by tskit's ``write_vcf`` with ``INFO/AA``, bgzipped and indexed by
pysam, cut into windows by three ``extract_sfs`` jobs (one per 1 Mb region), joined by the
data job and fitted with the block sandwich.

Checked against tskit, which shares no code with the extraction: the observations' windowed
SFS equals ``ts.allele_frequency_spectrum(windows=..., polarised=True,
span_normalise=False)`` to the count (sites with more than one mutation are deleted before
writing, so every variant is a biallelic SNP and every window's ``sites`` is its length);
each window carries its contig and position. The fit has ``se`` and ``se_robust`` (the
robust one larger: windows 100 kb apart share genealogies) and a bootstrap interval, and
the truth (2Neμ = 2e-4 per site) lies inside the robust 95% interval (the seed is the first
one tried; a correct method misses with probability 5%). The consensus posterior is
adjusted for the linkage: with one free parameter, Ω is the ratio of the robust to the
model-based sd (times the t/z ratio of few blocks), so the adjusted log-scale sd is Ω
times the raw one.
"""

from __future__ import annotations

import msprime
import numpy as np
import pysam
import pytest
import scipy.stats

from phasemake.data.observations import read_header, read_observations
from phasemake.report.tables import read_fit, read_posterior_summary

pytestmark = pytest.mark.integration

NE, MU, LENGTH, WINDOW = 10_000, 1e-8, 3_000_000, 100_000


def _write_vcf(path):
    ts = msprime.sim_ancestry(
        samples=5, population_size=NE, sequence_length=LENGTH, recombination_rate=1e-8,
        random_seed=17,
    )  # fmt: skip
    ts = msprime.sim_mutations(ts, rate=MU, random_seed=17)
    multi = [s.id for s in ts.sites() if len(s.mutations) != 1]
    ts = ts.delete_sites(multi)
    text = path.with_suffix("")  # chr.vcf
    with open(text, "w") as fh:
        # VCF positions are 1-based: tskit's 0-based position p is POS p + 1 (tskit's
        # default writes p itself, which puts a site at a window's first base one earlier)
        ts.write_vcf(fh, contig_id="chr1", position_transform=lambda p: np.round(p) + 1)
    lines = text.read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("##contig"):  # the transform also shifted tskit's length
            line = f"##contig=<ID=chr1,length={LENGTH}>"
        if line.startswith("#CHROM"):
            out.append('##INFO=<ID=AA,Number=1,Type=String,Description="Ancestral allele">')
        if not line.startswith("#"):
            fields = line.split("\t")
            fields[7] = f"AA={fields[3]}"  # tskit writes the ancestral state as REF
            line = "\t".join(fields)
        out.append(line)
    text.write_text("\n".join(out) + "\n")
    pysam.tabix_index(str(text), preset="vcf", force=True)  # writes chr.vcf.gz(.tbi)
    return ts


@pytest.fixture(scope="module")
def vcf_run(tmp_path_factory):
    from tests.integration.conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("vcf"))
    (wf.root / "data").mkdir()
    ts = _write_vcf(wf.root / "data" / "chr.vcf.gz")
    wf.write_config(
        {
            "models": {"kingman10": {"callback": "phasemake.models:block_counting",
                                     "params": {"n": 10}}},
            "analyses": {
                "genome": {
                    "model": "kingman10",
                    "observations": "sfs",
                    "data": {"vcf": {"file": "data/chr.vcf.gz", "window_bases": WINDOW,
                                     "region_bases": 1_000_000}},
                    "nlsq": {"fixed": {"coal": 1.0}},
                    "linkage": {"block_bases": 300_000, "bootstrap": 500},
                    "cmc": {"shards": 2, "warmup": 300, "samples": 300},
                }
            },
        }
    )  # fmt: skip
    proc = wf.snakemake("--cores", "2", "results/genome/cmc/consensus.json")
    return wf.root, ts, proc


def test_the_windowed_sfs_equals_tskit_and_the_fit_is_robust(vcf_run):
    root, ts, _ = vcf_run
    regions = sorted((root / "results/genome/data/regions").glob("region*.h5"))
    assert [p.stem for p in regions] == ["region0", "region1", "region2"]
    obs = read_observations(root / "results/genome/data/observations.h5")
    breaks = np.arange(0, LENGTH + 1, WINDOW, dtype=float)
    afs = ts.allele_frequency_spectrum(
        windows=breaks, mode="site", polarised=True, span_normalise=False
    )[:, 1:-1]
    np.testing.assert_array_equal(obs.columns["counts"], afs)
    np.testing.assert_array_equal(obs.columns["sites"], np.diff(breaks))
    np.testing.assert_array_equal(obs.columns["start"], breaks[:-1])
    np.testing.assert_array_equal(obs.columns["contig"], np.zeros(len(afs)))
    assert read_header(root / "results/genome/data/observations.h5")["provenance"]["contigs"] == [
        "chr1"
    ]
    # blocks of 300 kb: windows 0-2 are block 0, 3-5 block 1, ...
    np.testing.assert_array_equal(obs.columns["block"], np.arange(len(afs)) // 3)

    fit = read_fit(root / "results/genome/nlsq/fit.json")
    mutation = fit["parameters"]["mutation"]
    assert fit["headline"] == "robust" and fit["robust"]["blocks"] == 10
    assert mutation["se_robust"] > mutation["se"] > 0
    lo, hi = mutation["robust95"]
    assert lo < 2 * NE * MU < hi
    b_lo, b_hi = mutation["bootstrap95"]
    assert b_lo < mutation["estimate"] < b_hi
    log = (root / "logs/extract_sfs/genome/region0.log").read_text()
    assert "chr1:0-1000000" in log and "records" in log


def test_the_posterior_is_adjusted_by_the_open_faced_sandwich(vcf_run):
    root, _, _ = vcf_run
    fit = read_fit(root / "results/genome/nlsq/fit.json")
    post = read_posterior_summary(root / "results/genome/cmc/consensus.json")
    adjusted, raw = post["parameters"]["mutation"], post["unadjusted"]["parameters"]["mutation"]
    # Ω scales the draws' log sd by sd_robust / sd_model (one free parameter: exactly),
    # times t_{B-1}/z at 97.5% for the few blocks (10 here)
    robust = fit["robust"]
    small = scipy.stats.t.ppf(0.975, 9) / scipy.stats.norm.ppf(0.975)
    ratio = small * np.sqrt(robust["log_covariance"][0][0] * robust["information"][0][0])
    assert post["linkage"]["omega"][0][0] == pytest.approx(ratio, rel=1e-12)
    # both summaries are of the same (refined, weighted) sample, mapped around its mean
    assert adjusted["log_sd"] == pytest.approx(ratio * raw["log_sd"], rel=1e-9)
    assert adjusted["log_mean"] == pytest.approx(raw["log_mean"], rel=1e-12)
    assert ratio > 1.0  # linked windows: the adjusted posterior is wider
    assert post["linkage"]["blocks"] == 10
