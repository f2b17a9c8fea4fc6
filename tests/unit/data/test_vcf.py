"""VCF/BCF and tree sequences → windowed SFS, against tskit's own AFS and an independent
projection. msprime simulations with fixed seeds: 5 diploid samples on 1 Mb."""

from __future__ import annotations

import gzip
import math
import shutil

import msprime
import numpy as np
import pysam
import pytest
import tskit

from phasemake.core.errors import DataError
from phasemake.data.genomes import fold, projection_matrix
from phasemake.data.vcf import Region, read_popmap, sfs_from_trees, sfs_from_vcf, vcf_regions

L = 1_000_000
W = 100_000
N = 10  # haploids: 5 diploid samples
BREAKS = np.arange(0, L + W, W)
AA_HEADER = '##INFO=<ID=AA,Number=1,Type=String,Description="Ancestral allele">'


@pytest.fixture(scope="module")
def ts() -> tskit.TreeSequence:
    """Seed 9: 1107 sites, two of them with three alleles."""
    anc = msprime.sim_ancestry(
        samples=5, sequence_length=L, recombination_rate=1e-8, population_size=1e4, random_seed=9
    )
    return msprime.sim_mutations(anc, rate=1e-8, random_seed=9)


def multiallelic(ts) -> np.ndarray:
    """Positions (0-based) of the sites with more than two alleles (multiallelic records)."""
    return np.array([int(v.position) for v in ts.variants() if len(v.alleles) > 2], dtype=int)


def afs(ts, *, drop=(), polarised=True) -> np.ndarray:
    """tskit's windowed site AFS without the sites at positions ``drop``."""
    ids = [s.id for s in ts.sites() if int(s.position) in set(int(p) for p in drop)]
    kept = ts.delete_sites(ids)
    out = kept.allele_frequency_spectrum(
        sample_sets=[kept.samples()],
        windows=BREAKS,
        mode="site",
        polarised=polarised,
        span_normalise=False,
    )
    return out[:, 1:-1] if polarised else out[:, 1 : N // 2 + 1]


def per_window(positions) -> np.ndarray:
    return np.bincount(np.asarray(positions, dtype=int) // W, minlength=L // W)


def vcf_lines(ts, *, aa: bool = True, swap: bool = False) -> tuple[list[str], list[list[str]]]:
    """ts.write_vcf's header lines (contig length L, ``INFO/AA`` if ``aa``) and records (POS =
    position + 1); ``swap``: REF and ALT exchanged (genotypes too) in every other
    biallelic record, so that AA is the ALT there."""
    text = _write_vcf(ts)
    header = [h for h in text.splitlines() if h.startswith("#")]
    header = [h.replace(f"length={L + 1}", f"length={L}") for h in header]
    if aa:
        header.insert(1, AA_HEADER)
    records = []
    for k, line in enumerate(x for x in text.splitlines() if not x.startswith("#")):
        f = line.split("\t")
        if aa:
            f[7] = f"AA={f[3].lower() if k % 3 == 0 else f[3]}"
        if swap and k % 2 and "," not in f[4]:
            f[3], f[4] = f[4], f[3]
            f[9:] = [g.translate(str.maketrans("01", "10")) for g in f[9:]]
        records.append(f)
    return header, records


def _write_vcf(ts) -> str:
    import io

    out = io.StringIO()
    ts.write_vcf(out, position_transform=lambda p: np.round(p).astype(int) + 1)
    return out.getvalue()


def write(tmp_path, header, records, name="x.vcf") -> str:
    """bgzip and tabix-index the VCF; the path of the .vcf.gz."""
    path = tmp_path / name
    path.write_text("\n".join(header + ["\t".join(f) for f in records]) + "\n")
    return pysam.tabix_index(str(path), preset="vcf", force=True)


@pytest.fixture(scope="module")
def vcf(ts, tmp_path_factory) -> str:
    header, records = vcf_lines(ts, swap=True)
    return write(tmp_path_factory.mktemp("vcf"), header, records)


def regions_sfs(path, *, n=N, region_bases=None, **options) -> tuple[np.ndarray, ...]:
    """The windows of every region of ``vcf_regions``, joined in order."""
    parts = [
        sfs_from_vcf(path, n=n, region=r, window_bases=W, **options)
        for r in vcf_regions(path, window_bases=W, region_bases=region_bases)
    ]
    return tuple(
        np.concatenate([getattr(p, k) for p in parts]) for k in ("start", "counts", "sites")
    )


# -- 1. exact against tskit ------------------------------------------------------------------------
@pytest.mark.parametrize("region_bases", [None, 300_000])
def test_windowed_sfs_equals_tskit(ts, vcf, region_bases):
    start, counts, sites = regions_sfs(vcf, region_bases=region_bases)
    multi = multiallelic(ts)
    assert multi.size == 2  # the seed's multiallelic sites: skipped and removed from L
    np.testing.assert_array_equal(start, BREAKS[:-1])
    np.testing.assert_array_equal(counts, afs(ts, drop=multi))  # to the count
    np.testing.assert_array_equal(sites, W - per_window(multi))


def test_one_region_skips_and_records(ts, vcf):
    out = sfs_from_vcf(vcf, n=N, region=Region("1", 0, L), window_bases=W)
    assert out.records == ts.num_sites
    assert out.skipped == {"multiallelic": 2}
    assert out.counts.shape == (L // W, N - 1) and not out.folded
    obs = out.observations()
    assert obs.kind == "sfs" and obs.columns["counts"].dtype == np.float64


def test_ancestral_from_fasta(ts, vcf, tmp_path):
    """A FASTA of the ancestral states at the sites (N elsewhere) gives the INFO/AA SFS."""
    seq = np.full(L, "N")
    for site in ts.sites():
        seq[int(site.position)] = site.ancestral_state
    fasta = tmp_path / "anc.fa"
    body = "".join(seq)
    fasta.write_text(">1\n" + "\n".join(body[i : i + 60] for i in range(0, L, 60)) + "\n")
    with pytest.raises(DataError, match="samtools faidx"):
        sfs_from_vcf(vcf, n=N, region=Region("1", 0, L), window_bases=W, ancestral=str(fasta))
    pysam.faidx(str(fasta))
    by_fasta = sfs_from_vcf(
        vcf, n=N, region=Region("1", 0, L), window_bases=W, ancestral=str(fasta)
    )
    np.testing.assert_array_equal(by_fasta.counts, afs(ts, drop=multiallelic(ts)))


# -- 2. missing genotypes: hypergeometric projection -----------------------------------------------
@pytest.mark.parametrize("batch", [None, 16])
def test_missing_genotypes_projected(ts, tmp_path, monkeypatch, batch):
    """Also in batches of 16 records: the distinct dropped positions across batches."""
    if batch:
        monkeypatch.setattr("phasemake.data.genomes.MAX_BATCH", batch)
    header, records = vcf_lines(ts)
    rng = np.random.default_rng(3)
    n = 6
    expected = np.zeros((L // W, n - 1))
    dropped = []
    for f in records:
        gts = []
        for g in f[9:]:
            alleles = ["." if rng.random() < 0.15 else a for a in g.split("|")]
            gts.append("|".join(alleles) if rng.random() > 0.02 else "./.")
        f[9:] = gts
        pos = int(f[1]) - 1
        if "," in f[4]:
            dropped.append(pos)
            continue
        alleles = [a for g in gts for a in g.replace("/", "|").split("|") if a != "."]
        m, j = len(alleles), alleles.count("1")
        if m < n:
            dropped.append(pos)
            continue
        for i in range(1, n):
            expected[pos // W, i - 1] += math.comb(j, i) * math.comb(m - j, n - i) / math.comb(m, n)
    path = write(tmp_path, header, records)
    out = sfs_from_vcf(path, n=n, region=Region("1", 0, L), window_bases=W)
    np.testing.assert_allclose(out.counts, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out.sites, W - per_window(dropped))
    assert out.skipped["too few called genotypes"] == len(dropped) - 2


def test_projection_identity_and_subsample():
    np.testing.assert_array_equal(projection_matrix(10, 10), np.eye(11))
    table = projection_matrix(10, 4)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert table[3, 2] == math.comb(3, 2) * math.comb(7, 2) / math.comb(10, 4)


# -- 3. mask ---------------------------------------------------------------------------------------
def test_mask(ts, vcf, tmp_path):
    rng = np.random.default_rng(5)
    starts = np.sort(rng.integers(0, L - 5000, 300))
    ends = starts + rng.integers(1, 5000, 300)  # some overlap: the mask is their union
    bed = tmp_path / "mask.bed"
    bed.write_text("".join(f"1\t{s}\t{e}\n" for s, e in zip(starts, ends, strict=True)))
    callable_ = np.zeros(L, bool)
    for s, e in zip(starts, ends, strict=True):
        callable_[s:e] = True
    out = sfs_from_vcf(vcf, n=N, region=Region("1", 0, L), window_bases=W, mask_bed=bed)
    positions = np.array([int(s.position) for s in ts.sites()])
    outside = positions[~callable_[positions]]
    multi = multiallelic(ts)
    inside_multi = multi[callable_[multi]]
    np.testing.assert_array_equal(out.counts, afs(ts, drop=[*outside, *multi]))
    np.testing.assert_array_equal(
        out.sites, callable_.reshape(-1, W).sum(axis=1) - per_window(inside_multi)
    )
    assert out.skipped["outside the mask"] == outside.size
    assert out.counts.sum() < afs(ts).sum()  # the mask removes sites


# -- 4. folded -------------------------------------------------------------------------------------
def test_folded_without_ancestral(ts, tmp_path):
    header, records = vcf_lines(ts, aa=False, swap=True)
    path = write(tmp_path, header, records)
    out = sfs_from_vcf(
        path, n=N, region=Region("1", 0, L), window_bases=W, ancestral=None, folded=True
    )
    assert out.folded and out.counts.shape == (L // W, N // 2)
    np.testing.assert_array_equal(out.counts, afs(ts, drop=multiallelic(ts), polarised=False))
    np.testing.assert_array_equal(fold(afs(ts, drop=multiallelic(ts)), N), out.counts)


# -- 5. tree sequences -----------------------------------------------------------------------------
def test_trees_equal_vcf(ts, vcf, tmp_path):
    trees = tmp_path / "sim.trees"
    ts.dump(trees)
    assert vcf_regions(trees, window_bases=W, region_bases=500_000) == [
        Region("1", 0, 500_000),
        Region("1", 500_000, L),
    ]
    bed = tmp_path / "mask.bed"
    bed.write_text("1\t1000\t400000\n1\t450000\t990000\n")
    for options in ({}, {"mask_bed": bed}, {"folded": True}):
        region = Region("1", 0, L)
        by_trees = sfs_from_trees(trees, n=8, region=region, window_bases=W, **options)
        by_vcf = sfs_from_vcf(vcf, n=8, region=region, window_bases=W, **options)
        np.testing.assert_allclose(by_trees.counts, by_vcf.counts, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(by_trees.sites, by_vcf.sites)
        assert by_trees.skipped == by_vcf.skipped


# -- 6. errors -------------------------------------------------------------------------------------
HEAD = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=1,length=1000>",
    AA_HEADER,
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3",
]


def small(tmp_path, rows, name="s.vcf", head=HEAD) -> str:
    return write(tmp_path, list(head), [r.split() for r in rows], name=name)


ROWS = [
    "1 100 . A C . PASS AA=A GT 0/1 0/0 1/1",
    "1 200 . G T . PASS AA=G GT 0/1 0/1 0/0",
    "1 300 . C A . PASS AA=C GT 0/0 1/1 0/1",
]


def test_error_samples_missing(tmp_path):
    path = small(tmp_path, ROWS)
    with pytest.raises(DataError) as err:
        sfs_from_vcf(path, n=2, region=Region("1", 0, 1000), window_bases=100, samples=["s1", "x9"])
    message = str(err.value)
    assert path in message and "'x9'" in message and "not in the VCF" in message
    assert "'s2'" in message  # some available names
    popmap = tmp_path / "pop.txt"
    popmap.write_text("s1 A\ns2 A\nzz A\ns3 B\n")
    assert read_popmap(popmap, "A") == ["s1", "s2", "zz"]
    with pytest.raises(DataError, match=r"'zz'.*fix the samples or the popmap"):
        sfs_from_vcf(path, n=2, region=Region("1", 0, 1000), window_bases=100,
                     popmap=popmap, population="A")  # fmt: skip
    with pytest.raises(DataError, match=r"3 samples give at most 6 haploids.*n = 8"):
        sfs_from_vcf(path, n=8, region=Region("1", 0, 1000), window_bases=100)


def test_error_unsorted_record(tmp_path):
    """An index built on the sorted file, then the records swapped (lines of equal length,
    so the index's offsets still hold): the reader names the record and the fix."""
    path = small(tmp_path, ROWS)
    swapped = [ROWS[0], ROWS[2], ROWS[1]]
    text = "\n".join(HEAD + ["\t".join(r.split()) for r in swapped]) + "\n"
    (tmp_path / "u.vcf").write_text(text)
    pysam.tabix_compress(str(tmp_path / "u.vcf"), str(tmp_path / "u.vcf.gz"), force=True)
    shutil.copy(path + ".tbi", tmp_path / "u.vcf.gz.tbi")
    with pytest.raises(DataError) as err:
        sfs_from_vcf(tmp_path / "u.vcf.gz", n=2, region=Region("1", 0, 1000), window_bases=100)
    message = str(err.value)
    assert "u.vcf.gz" in message and "record 1:200 comes after 1:300" in message
    assert "bcftools sort" in message


def test_error_mixed_ploidy(tmp_path):
    rows = [*ROWS[:2], "1 300 . C A . PASS AA=C GT 0/0 1 0/1"]
    path = small(tmp_path, rows)
    with pytest.raises(DataError) as err:
        sfs_from_vcf(path, n=2, region=Region("1", 0, 1000), window_bases=100)
    message = str(err.value)
    assert path in message and "record 1:300" in message and "sample 's2'" in message
    assert "ploidy 1" in message and "bcftools view" in message
    haploid = small(tmp_path, ["1 100 . A C . PASS AA=A GT 0 1 1"], name="haploid.vcf")
    out = sfs_from_vcf(haploid, n=3, region=Region("1", 0, 1000), window_bases=1000)
    assert out.counts.tolist() == [[0.0, 1.0]]
    with pytest.raises(DataError, match="3 samples of ploidy 1 give 3 haploids; the model's n = 4"):
        sfs_from_vcf(haploid, n=4, region=Region("1", 0, 1000), window_bases=1000)
    # "." for a diploid sample is missing, not haploid
    ok = small(tmp_path, [*ROWS[:2], "1 300 . C A . PASS AA=C GT 0/0 . 0/1"], name="ok.vcf")
    out = sfs_from_vcf(ok, n=4, region=Region("1", 0, 1000), window_bases=1000)
    assert out.counts.sum() == pytest.approx(3 - 1 / 15, abs=1e-15)


def test_error_mask_on_other_contigs(tmp_path):
    path = small(tmp_path, ROWS)
    bed = tmp_path / "mask.bed"
    bed.write_text("chr1\t0\t500\nchr2\t0\t500\n")
    with pytest.raises(DataError) as err:
        sfs_from_vcf(path, n=2, region=Region("1", 0, 1000), window_bases=100, mask_bed=bed)
    message = str(err.value)
    assert str(bed) in message and "'chr1'" in message and "'1'" in message
    assert "rename the mask's contigs" in message


def test_error_no_ancestral(tmp_path):
    path = small(tmp_path, ROWS)
    fix = "no ancestral allele: set folded: true or give INFO/AA or a FASTA"
    with pytest.raises(DataError, match=fix) as err:
        sfs_from_vcf(path, n=2, region=Region("1", 0, 1000), window_bases=100, ancestral=None)
    assert path in str(err.value)
    no_aa = small(tmp_path, ROWS, name="noaa.vcf", head=[h for h in HEAD if "AA" not in h])
    with pytest.raises(DataError, match=fix + r".*no ##INFO=<ID=AA") as err:
        sfs_from_vcf(no_aa, n=2, region=Region("1", 0, 1000), window_bases=100)
    assert no_aa in str(err.value)


def test_skip_reasons_and_sites(tmp_path):
    rows = [
        "1 10 . A C,G . PASS AA=A GT 0/1 0/2 1/1",  # multiallelic
        "1 20 . AT A . PASS AA=A GT 0/1 0/0 1/1",  # not a SNP
        "1 20 . A G . q10 AA=A GT 0/1 0/0 1/1",  # filtered, at the same base: L - 1 once
        "1 30 . A C . q10 AA=A GT 0/1 0/0 1/1",  # filtered
        "1 40 . A C . PASS AA=G GT 0/1 0/0 1/1",  # ancestral unknown
        "1 50 . A C . PASS AA=. GT 0/1 0/0 1/1",  # ancestral unknown
        "1 60 . A C . PASS AA=A GT ./. ./. 1/1",  # too few called
        "1 70 . A . . PASS AA=A GT 0/0 0/0 0/0",  # no ALT: monomorphic, stays in L
        "1 80 . A C . PASS AA=A GT 0/0 0/0 0/0",  # monomorphic
        "1 150 . A C . . AA=C GT 0/1 1/1 1/1",  # "." filter passes; AA = ALT: 1 derived
        "1 150 . A C,T . . AA=C GT 0/1 1/1 1/2",  # a second record there, dropped: L - 1
    ]
    path = small(tmp_path, rows)
    out = sfs_from_vcf(path, n=6, region=Region("1", 0, 1000), window_bases=100)
    assert out.skipped == {
        "ancestral allele unknown": 2,
        "filtered (FILTER not PASS)": 2,
        "multiallelic": 2,
        "not a SNP": 1,
        "too few called genotypes": 1,
    }
    assert out.records == len(rows)
    assert out.sites.tolist() == [94.0, 99.0] + [100.0] * 8
    assert out.counts[1].tolist() == [1.0, 0, 0, 0, 0]
    kept = sfs_from_vcf(path, n=6, region=Region("1", 0, 1000), window_bases=100, pass_only=False)
    assert "filtered (FILTER not PASS)" not in kept.skipped and kept.sites[0] == 95.0


def test_windows_bed(tmp_path):
    path = small(tmp_path, ROWS)
    bed = tmp_path / "w.bed"
    bed.write_text("1\t50\t150\n1\t250\t260\n1\t280\t400\n")
    out = sfs_from_vcf(path, n=2, region=Region("1", 50, 400), windows_bed=bed)
    assert out.start.tolist() == [50, 250, 280] and out.sites.tolist() == [100.0, 10.0, 120.0]
    assert out.skipped == {"outside windows": 1}  # 1:200 (base 199)
    bad = tmp_path / "bad.bed"
    bad.write_text("1\t50\t150\n1\t100\t200\n")
    with pytest.raises(DataError, match=r"bad.bed: line 2: 1:100-200 starts before.*sort"):
        sfs_from_vcf(path, n=2, region=Region("1", 0, 400), windows_bed=bad)


# -- 7. regions ------------------------------------------------------------------------------------
def test_vcf_regions_two_contigs(tmp_path):
    head = [
        HEAD[0],
        "##contig=<ID=1,length=1000>",
        "##contig=<ID=2,length=450>",
        "##contig=<ID=3>",  # no records: no region, no length needed
        *HEAD[2:],
    ]
    rows = [*ROWS, "2 10 . A C . PASS AA=A GT 0/1 0/0 1/1"]
    path = small(tmp_path, rows, head=head)
    assert vcf_regions(path, window_bases=100) == [Region("1", 0, 1000), Region("2", 0, 450)]
    assert vcf_regions(path, window_bases=100, region_bases=450) == [
        Region("1", 0, 400),
        Region("1", 400, 800),
        Region("1", 800, 1000),
        Region("2", 0, 400),
        Region("2", 400, 450),
    ]
    assert vcf_regions(path, window_bases=100, contigs=["2"]) == [Region("2", 0, 450)]
    with pytest.raises(DataError, match=r"contig\(s\) 'chr2' not in the file \(it has '1', '2'"):
        vcf_regions(path, window_bases=100, contigs=["chr2"])
    bed = tmp_path / "w.bed"
    bed.write_text("2\t0\t100\n2\t100\t300\n3\t0\t10\n1\t0\t500\n1\t600\t700\n")
    assert vcf_regions(path, windows_bed=bed, region_bases=250) == [
        Region("2", 0, 100),
        Region("2", 100, 300),
        Region("1", 0, 500),
        Region("1", 600, 700),
    ]
    no_length = [h.replace(",length=450", "") for h in head]
    path = small(tmp_path, rows, head=no_length, name="nolength.vcf")
    with pytest.raises(DataError, match=r"contig '2' has records but no length.*reheader"):
        vcf_regions(path, window_bases=100)
    with pytest.raises(DataError, match=r"no index.*tabix"):
        plain = tmp_path / "plain.vcf"
        with gzip.open(path, "rt") as fh:
            plain.write_text(fh.read())
        vcf_regions(plain, window_bases=100)
