"""The format-independent core of the VCF extraction: BED files, windows, mask, projection,
folding and the batched genotype counts, against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phasemake.core.errors import DataError
from phasemake.data.bed import callable_bases, read_bed, region_mask, region_windows
from phasemake.data.genomes import (
    MULTIALLELIC,
    NOT_SNP,
    SNP,
    GenotypeBatch,
    Region,
    WindowCounter,
    fold,
    projection_matrix,
    region_counter,
)


def test_mask_merged_and_callable_bases_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 9_000, 80)
    ends = starts + rng.integers(1, 800, 80)
    bed = tmp_path / "mask.bed"
    lines = [f"c\t{s}\t{e}" for s, e in zip(starts, ends, strict=True)]
    bed.write_text("# a comment\n" + "\n".join(reversed(lines)) + "\nother\t0\t5\n")
    ms, me = region_mask(bed, "c", contigs=["c"])
    assert np.all(ms[1:] > me[:-1])  # sorted, disjoint
    covered = np.zeros(10_000, bool)
    for s, e in zip(starts, ends, strict=True):
        covered[s:e] = True
    w0 = np.arange(0, 10_000, 700)
    w1 = np.minimum(w0 + 700, 10_000)
    brute = [covered[a:b].sum() for a, b in zip(w0, w1, strict=True)]
    assert callable_bases(w0, w1, ms, me).tolist() == brute


def test_bed_errors(tmp_path):
    bad = tmp_path / "bad.bed"
    bad.write_text("1\t0\t10\n1\tx\t20\n")
    with pytest.raises(DataError, match=r"bad.bed: line 2: .*expected 'contig start end'"):
        read_bed(bad)
    bad.write_text("1\t10\t10\n")
    with pytest.raises(DataError, match=r"line 1: 1:10-10; expected 0 <= start < end"):
        read_bed(bad)
    with pytest.raises(DataError, match="exactly one of window_bases and windows_bed"):
        region_windows("1", 0, 10)


def test_counter_dedupes_dropped_positions_across_batches():
    c = WindowCounter("1", np.array([0, 10]), np.array([10, 20]), n=2)
    for batch in ([3, 3, 5], [5, 12], [12, 12, 15]):
        pos = np.array(batch)
        win = np.array([c.locate(p) for p in batch])
        reason = np.full(pos.size, NOT_SNP)
        c.add(pos, win, reason, derived=np.zeros(pos.size), called=np.zeros(pos.size))
    out = c.result(records=8)
    assert out.sites.tolist() == [8.0, 8.0]  # 3, 5 and 12, 15 leave L once each
    assert out.skipped == {"not a SNP": 8}


def test_genotype_batch_multiallelic_and_ploidy(monkeypatch):
    monkeypatch.setattr("phasemake.data.genomes.MAX_BATCH", 16)
    c = region_counter(Region("1", 0, 100), n=3, window_bases=100)
    b = GenotypeBatch(c, samples=["a", "b", "c"], source="x.trees")
    b.add(1, c.locate(1), np.array([[0], [1], [2]]))  # two derived alleles: multiallelic
    b.add(2, c.locate(2), np.array([[0], [2], [2]]))  # one derived allele (index 2)
    b.drop(3, c.locate(3), NOT_SNP)
    b.add(4, c.locate(4), np.array([[0], [1], [-1]]))  # too few called (2 < 3)
    for p in range(5, 40):  # several batches
        b.add(p, c.locate(p), np.array([[1], [0], [0]]), flip=True)  # 2 derived (REF)
    b.flush()
    out = c.result(records=39)
    assert out.skipped == {"multiallelic": 1, "not a SNP": 1, "too few called genotypes": 1}
    assert out.counts.tolist() == [[0.0, 36.0]] and out.sites.tolist() == [97.0]
    assert MULTIALLELIC != SNP
    b.add(41, c.locate(41), np.array([[0, 1], [1, 1], [0, 0]]))
    with pytest.raises(DataError, match=r"x.trees: record 1:42: sample 'a' has ploidy 2"):
        b.flush()


def test_projection_large_and_fold_odd():
    m, n = 300, 40
    table = projection_matrix(m, n)
    for j in (0, 1, 57, 150, 299, 300):
        exact = [math.comb(j, i) * math.comb(m - j, n - i) / math.comb(m, n) for i in range(n + 1)]
        np.testing.assert_allclose(table[j], exact, rtol=1e-13, atol=1e-300)
    assert fold(np.arange(1.0, 7.0), 7).tolist() == [7.0, 7.0, 7.0]
    with pytest.raises(ValueError, match="cannot project 3 haploids to 4"):
        projection_matrix(3, 4)
