"""Windowed site frequency spectra from a stream of sites: windows, mask, projection, folding.

The format-independent core of the VCF → windowed SFS extraction (:mod:`phasemake.data.vcf`
feeds it VCF/BCF records and tree-sequence sites). Coordinates are 0-based and half-open, as
in BED: a VCF record at ``POS`` p is base ``p - 1``.

Windows
    Either tiles of ``window_bases`` over the region ``[start, end)`` (the last one clipped),
    or the lines of a windows BED (sorted, non-overlapping per contig) whose start lies in
    the region. A site outside every window is skipped (``"outside windows"``).
Mask
    An optional BED of callable bases (any order; overlaps are merged). A site outside it is
    skipped (``"outside the mask"``); only the region's contig of the mask is held.
Sites (``L``) of a window
    Its callable bases (mask ∩ window, or the window's length) minus the distinct positions
    of the records in it (and in the mask) that were dropped because they cannot be counted
    as SNPs: multiallelic, not a SNP, filtered, too few called genotypes, ancestral allele
    unknown. A polymorphism may hide at such a base, so it leaves ``L`` as well. Monomorphic
    records (no ALT, or every called allele ancestral, or every one derived) are neither
    counted nor removed: the base is callable and carries no segregating site.
Projection
    A site with ``m ≥ n`` called haploids, ``j`` of them derived, adds to class ``i``
    (``1 ≤ i ≤ n-1``) the hypergeometric probability
    ``P(i) = C(j, i) C(m-j, n-i) / C(m, n)``: the expected SFS of a random subsample of
    ``n`` of its called haploids. The same formula projects missing genotypes away and
    subsamples when the samples give more than ``n`` haploids; counts may be fractional.
    ``m == n`` is the identity (exact integer counts); ``m < n`` drops the site
    (``"too few called genotypes"``).
Folding
    Project first, then fold: class ``i < n/2`` is ``P(i) + P(n-i)``, class ``n/2`` (n
    even) is ``P(n/2)``; ``n // 2`` classes.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from phasemake.core.errors import DataError
from phasemake.data.bed import callable_bases, region_mask, region_windows
from phasemake.data.observations import Observations

__all__ = [
    "REASONS",
    "GenotypeBatch",
    "Region",
    "WindowCounter",
    "WindowedSFS",
    "fold",
    "projection_matrix",
    "region_counter",
]

#: Why a record was dropped (its base leaves ``sites``), by code; 0 is a countable SNP.
REASONS = (
    "",
    "multiallelic",
    "not a SNP",
    "filtered (FILTER not PASS)",
    "too few called genotypes",
    "ancestral allele unknown",
)
SNP, MULTIALLELIC, NOT_SNP, FILTERED, TOO_FEW, NO_ANCESTRAL = range(len(REASONS))
TABLE_BYTES = 32 << 20  # projection tables kept per counter
BATCH_CELLS = 1 << 22  # genotype cells (records × samples × ploidy) per batch
MAX_BATCH = 1 << 16  # records per batch


@dataclass(frozen=True)
class Region:
    """One extraction job: ``contig`` and the 0-based half-open ``[start, end)``.

    Examples
    --------
    >>> Region("chr1", 0, 1_000_000).end
    1000000
    """

    contig: str
    start: int
    end: int


@dataclass(frozen=True)
class WindowedSFS:
    """The windows of one region: bounds, sites ``L``, the (projected) SFS and what was
    skipped by reason (see the module docstring)."""

    contig: str
    start: np.ndarray
    end: np.ndarray
    sites: np.ndarray
    counts: np.ndarray
    folded: bool
    skipped: dict[str, int] = field(default_factory=dict)
    records: int = 0

    def observations(self) -> Observations:
        """The windows as ``sfs`` observations (``sites``, ``counts``).

        Examples
        --------
        >>> w = WindowedSFS("1", np.array([0]), np.array([10]), np.array([10.0]),
        ...                 np.array([[1.0, 0.0]]), folded=False)
        >>> w.observations().columns["counts"].shape
        (1, 2)
        """
        return Observations("sfs", {"sites": self.sites.copy(), "counts": self.counts.copy()})


# -- projection and folding --------------------------------------------------------------------
def projection_matrix(m: int, n: int) -> np.ndarray:
    """``P[j, i] = C(j, i) C(m-j, n-i) / C(m, n)``: the probability that ``n`` of ``m``
    haploids drawn without replacement carry ``i`` of the ``j`` derived alleles;
    shape ``(m+1, n+1)``. The identity when ``m == n``; binomials by Pascal's triangle in
    float64: exact (the quotients correctly rounded) while ``C(m, n) < 2**53``, relative
    error below ``m`` ulp beyond; through log-gamma when ``C(m, n)`` nears the float range.

    Examples
    --------
    >>> projection_matrix(4, 2)[2].tolist()   # 2 derived of 4, subsample 2
    [0.16666666666666666, 0.6666666666666666, 0.16666666666666666]
    """
    if m < n:
        raise ValueError(f"cannot project {m} haploids to {n}")
    if m == n:
        return np.eye(n + 1)
    j, i = np.arange(m + 1)[:, None], np.arange(n + 1)[None, :]
    support = (i <= j) & (n - i <= m - j)
    if math.comb(m, n) < 1e300:
        binom = np.zeros((m + 1, n + 1))
        binom[:, 0] = 1.0
        with np.errstate(over="ignore", invalid="ignore"):  # only outside the support
            for a in range(1, m + 1):
                binom[a, 1:] = binom[a - 1, 1:] + binom[a - 1, :-1]
            table = binom[j, i] * binom[m - j, n - i] / binom[m, n]
    else:
        from scipy.special import gammaln

        def lnc(a, b):
            return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(np.maximum(a - b, 0) + 1.0)

        table = np.exp(lnc(j, i) + lnc(m - j, n - i) - lnc(m, n))
    return np.where(support, table, 0.0)


def fold(counts: np.ndarray, n: int) -> np.ndarray:
    """Fold an unfolded SFS ``(..., n-1)`` into the ``n // 2`` minor-allele classes.

    Examples
    --------
    >>> fold(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 6).tolist()   # 1+5, 2+4, 3
    [6.0, 6.0, 3.0]
    """
    counts = np.asarray(counts, dtype=np.float64)
    out = np.zeros((*counts.shape[:-1], n // 2))
    for i in range(1, n // 2 + 1):
        out[..., i - 1] = counts[..., i - 1] + (counts[..., n - i - 1] if 2 * i != n else 0.0)
    return out


# -- the counter -------------------------------------------------------------------------------
class WindowCounter:
    """Accumulates one region's windowed SFS from sites in position order.

    ``locate(position)`` places a site in a window (``-1``: outside every window or the
    mask, counted as skipped); ``add(...)`` takes a batch of located sites with their
    reason codes (:data:`REASONS`) and derived / called counts. Memory: the windows, the
    region's mask and at most ``TABLE_BYTES`` of projection tables.

    Examples
    --------
    >>> c = WindowCounter("1", np.array([0, 100]), np.array([100, 200]), n=4)
    >>> [c.locate(p) for p in (5, 150, 250)]
    [0, 1, -1]
    >>> c.add(np.array([5, 150]), np.array([0, 1]), np.array([0, 0]),
    ...       derived=np.array([1, 3]), called=np.array([4, 4]))
    >>> r = c.result(records=3)
    >>> r.counts.tolist(), r.sites.tolist(), r.skipped
    ([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [100.0, 100.0], {'outside windows': 1})
    """

    def __init__(
        self,
        contig: str,
        start: np.ndarray,
        end: np.ndarray,
        *,
        n: int,
        folded: bool = False,
        mask: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.contig, self.n, self.folded = contig, n, folded
        self.start = np.asarray(start, dtype=np.int64)
        self.end = np.asarray(end, dtype=np.int64)
        if mask is None:
            self.sites = (self.end - self.start).astype(np.float64)
            self._mask: tuple[memoryview, memoryview] | None = None
        else:
            ms, me = mask
            if self.start.size:  # only the intervals that meet the windows
                keep = (me > self.start[0]) & (ms < self.end[-1])
                ms, me = ms[keep], me[keep]
            self.sites = callable_bases(self.start, self.end, ms, me).astype(np.float64)
            self._mask = (_ints(ms), _ints(me))
        self.counts = np.zeros((self.start.size, n - 1))
        self.skipped: Counter[str] = Counter()
        self._bounds = (_ints(self.start), _ints(self.end))
        self._w = self._k = 0
        self._last_dropped = -1
        self._tables: dict[int, np.ndarray] = {}
        self._table_bytes = 0

    def locate(self, position: int) -> int:
        """The window of ``position`` (non-decreasing from call to call), or ``-1`` when it
        is outside every window or the mask (counted as skipped)."""
        self._w, inside = _cursor(self._bounds, self._w, position)
        if not inside:
            self.skipped["outside windows"] += 1
            return -1
        if self._mask is not None:
            self._k, inside = _cursor(self._mask, self._k, position)
            if not inside:
                self.skipped["outside the mask"] += 1
                return -1
        return self._w

    def add(
        self,
        position: np.ndarray,
        window: np.ndarray,
        reason: np.ndarray,
        *,
        derived: np.ndarray,
        called: np.ndarray,
    ) -> None:
        """A batch of located sites in position order: ``reason`` 0 for a biallelic SNP
        with ``derived`` of ``called`` haploids (``called < n`` drops it), else the code of
        why it was dropped (``derived``/``called`` ignored)."""
        reason = np.where((reason == SNP) & (called < self.n), TOO_FEW, reason)
        dropped = reason != SNP
        if dropped.any():
            for code, count in enumerate(np.bincount(reason[dropped], minlength=len(REASONS))):
                if count:
                    self.skipped[REASONS[code]] += int(count)
            pos, win = position[dropped], window[dropped]
            new = np.r_[pos[0] != self._last_dropped, pos[1:] != pos[:-1]]
            self.sites -= np.bincount(win[new], minlength=self.sites.size)
            self._last_dropped = int(pos[-1])
        snp = ~dropped & (derived > 0) & (derived < called)  # monomorphic: nothing to add
        if snp.any():
            win, j, m = window[snp], derived[snp], called[snp]
            rows = np.empty((win.size, self.n - 1))
            for value in np.unique(m):
                sel = m == value
                rows[sel] = self._table(int(value))[j[sel], 1 : self.n]
            first = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
            self.counts[win[first]] += np.add.reduceat(rows, first, axis=0)

    def _table(self, m: int) -> np.ndarray:
        table = self._tables.get(m)
        if table is None:
            table = projection_matrix(m, self.n)
            if self._table_bytes + table.nbytes <= TABLE_BYTES:
                self._tables[m] = table
                self._table_bytes += table.nbytes
        return table

    def result(self, *, records: int) -> WindowedSFS:
        """The windows' SFS (folded if asked), sites and skipped records."""
        counts = fold(self.counts, self.n) if self.folded else self.counts.copy()
        return WindowedSFS(
            self.contig,
            self.start.copy(),
            self.end.copy(),
            self.sites.copy(),
            counts,
            self.folded,
            dict(sorted(self.skipped.items())),
            int(records),
        )


def _per_record(cells: np.ndarray) -> np.ndarray:
    """The true cells of each record of a boolean ``(records, samples, ploidy)`` array."""
    flat = cells.reshape(cells.shape[0], math.prod(cells.shape[1:]))
    return flat.view(np.uint8).sum(axis=1, dtype=np.int64)


def _cursor(intervals: tuple[memoryview, memoryview], k: int, position: int) -> tuple[int, bool]:
    """Advance ``k`` over sorted, disjoint half-open ``intervals`` (starts, ends) to the first
    that ends after ``position`` (positions come in non-decreasing order); and whether that
    interval holds ``position``."""
    starts, ends = intervals
    while k < len(ends) and ends[k] <= position:
        k += 1
    return k, k < len(ends) and starts[k] <= position


def _ints(values: np.ndarray) -> memoryview:
    """A read-only int64 view whose items index as Python ints (fast in a Python loop)."""
    return memoryview(np.ascontiguousarray(values, dtype=np.int64)).toreadonly()


class GenotypeBatch:
    """Located records of one region in position order, counted a batch at a time: dropped
    ones by reason code, SNPs by their genotype arrays (``samples × ploidy`` allele
    indices: 0 ancestral (REF unless ``flip``), > 0 derived, -1 missing, -2 vector end).
    ``called`` counts the alleles ≥ 0; two distinct derived alleles make it multiallelic.
    All samples must share one ploidy; a sample without a called allele ("." or "./.")
    is missing whatever its width.

    Examples
    --------
    >>> c = WindowCounter("1", np.array([0]), np.array([100]), n=2)
    >>> b = GenotypeBatch(c, samples=["a", "b"], source="x.vcf")
    >>> b.add(5, c.locate(5), np.array([[0, 1], [1, -1]]), flip=True)
    >>> b.flush(); c.result(records=1).counts.tolist()   # 1 derived (REF) of 3, projected
    [[0.6666666666666666]]
    """

    def __init__(self, counter: WindowCounter, *, samples: list[str], source: str) -> None:
        self.counter, self.samples, self.source = counter, samples, source
        self.ploidy: int | None = None
        self.pos: list[int] = []
        self.win: list[int] = []
        self.reason: list[int] = []
        self.flip: list[bool] = []
        self._allocate(2)

    def _allocate(self, width: int) -> None:
        size = max(16, min(MAX_BATCH, BATCH_CELLS // max(1, len(self.samples) * width)))
        self.gt = np.empty((size, len(self.samples), width), dtype=np.int16)
        self.snps = 0

    def drop(self, position: int, window: int, reason: int) -> None:
        """A record dropped for ``reason`` (a code of :data:`REASONS`)."""
        self.pos.append(position)
        self.win.append(window)
        self.reason.append(reason)
        if len(self.pos) >= MAX_BATCH:
            self.flush()

    def add(self, position: int, window: int, alleles: np.ndarray, *, flip: bool = False) -> None:
        """A SNP and its genotypes (``samples × ploidy``)."""
        width = alleles.shape[1]
        if width > self.gt.shape[2]:
            self.flush()
            self._allocate(width)
        if width == self.gt.shape[2]:
            self.gt[self.snps] = alleles
        else:  # a narrower record: vector ends after its alleles
            self.gt[self.snps, :, :width] = alleles
            self.gt[self.snps, :, width:] = -2
        self.snps += 1
        self.pos.append(position)
        self.win.append(window)
        self.reason.append(SNP)
        self.flip.append(flip)
        if self.snps == self.gt.shape[0] or len(self.pos) >= MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        """Count the batch into the counter."""
        if not self.pos:
            return
        pos, win = np.array(self.pos, np.int64), np.array(self.win, np.int64)
        reason, flip = np.array(self.reason, np.int8), np.array(self.flip, bool)
        gt, snp = self.gt[: self.snps], reason == SNP
        self.pos, self.win, self.reason, self.flip, self.snps = [], [], [], [], 0
        valid = gt >= 0
        self._check_ploidy(gt, valid, pos[snp])
        called, derived = np.zeros(pos.size, np.int64), np.zeros(pos.size, np.int64)
        called[snp], derived[snp] = _per_record(valid), _per_record(gt > 0)
        derived[snp] = np.where(flip, called[snp] - derived[snp], derived[snp])
        if gt.size and gt.max() > 1:  # allele indices above 1: multiallelic when two differ
            top = gt.max(axis=(1, 2))
            low = np.where(gt > 0, gt, np.iinfo(gt.dtype).max).min(axis=(1, 2))
            reason[np.flatnonzero(snp)[(top > 0) & (low != top)]] = MULTIALLELIC
        self.counter.add(pos, win, reason, derived=derived, called=called)

    def _check_ploidy(self, gt: np.ndarray, valid: np.ndarray, pos: np.ndarray) -> None:
        known = np.logical_or.reduce([valid[:, :, c] for c in range(valid.shape[2])])
        # known: (records, samples) with a called allele; "." or "./." are unknown
        if not known.any():
            return
        ends = gt == -2
        ploidy = gt.shape[2] - ends.sum(axis=2, dtype=np.int64) if ends.any() else None
        if self.ploidy is None:
            self.ploidy = gt.shape[2] if ploidy is None else int(ploidy[known][0])
            haploids = self.ploidy * len(self.samples)
            if haploids < self.counter.n:
                raise DataError(
                    f"{self.source}: {len(self.samples)} samples of ploidy {self.ploidy} give "
                    f"{haploids} haploids; the model's n = {self.counter.n} needs at least "
                    "n: more samples or a smaller n"
                )
        if ploidy is None:  # every sample as wide as the batch
            if gt.shape[2] == self.ploidy:
                return
            ploidy = np.full(known.shape, gt.shape[2])
        bad = known & (ploidy != self.ploidy)
        if bad.any():
            row, sample = divmod(int(np.argmax(bad.ravel())), bad.shape[1])
            raise DataError(
                f"{self.source}: record {self.counter.contig}:{int(pos[row]) + 1}: sample "
                f"{self.samples[sample]!r} has ploidy {int(ploidy[row, sample])}, the other "
                f"samples or earlier records {self.ploidy}; expected one ploidy (mixed "
                "haploid/diploid calls, e.g. chrX in males, are not supported): select "
                "samples or contigs of one ploidy (bcftools view -s / -t)"
            )


def region_counter(
    region: Region,
    *,
    n: int,
    folded: bool = False,
    window_bases: int | None = None,
    windows_bed: str | os.PathLike[str] | None = None,
    mask_bed: str | os.PathLike[str] | None = None,
    contig_length: int | None = None,
    contigs: Collection[str] = (),
    source: str = "",
) -> WindowCounter:
    """The counter of ``region``: its windows (tiles of ``window_bases``, clipped to
    ``contig_length``, or the windows BED's lines on the contig whose start lies in the
    region) and the mask's intervals on the contig. ``contigs``: the contig names of the
    ``source`` file, that the mask must share.

    Raises
    ------
    DataError
        ``n < 2``, or from :func:`phasemake.data.bed.region_windows` and
        :func:`phasemake.data.bed.region_mask`.

    Examples
    --------
    >>> c = region_counter(Region("1", 0, 250), n=4, window_bases=100, contig_length=230)
    >>> c.start.tolist(), c.end.tolist()
    ([0, 100, 200], [100, 200, 230])
    """
    if n < 2:
        raise DataError(f"{source}: n = {n} lineages; the SFS needs n >= 2")
    start, stop = region_windows(
        region.contig,
        region.start,
        region.end,
        window_bases=window_bases,
        windows_bed=windows_bed,
        contig_length=contig_length,
        source=source,
    )
    mask = None
    if mask_bed is not None:
        mask = region_mask(mask_bed, region.contig, contigs=contigs, source=source)
    return WindowCounter(region.contig, start, stop, n=n, folded=folded, mask=mask)
