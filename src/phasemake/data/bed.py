"""BED files of the VCF extraction: windows (sorted, non-overlapping) and masks of callable
bases (merged) read by contig, a region's windows and mask, the callable bases of windows,
runs of windows as regions; short lists of names for error messages."""

from __future__ import annotations

import gzip
import os
from collections.abc import Collection

import numpy as np

from phasemake.core.errors import DataError

__all__ = [
    "callable_bases",
    "chunk_windows",
    "names",
    "read_bed",
    "region_mask",
    "region_windows",
]
EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def read_bed(
    path: str | os.PathLike[str],
    *,
    contigs: Collection[str] | None = None,
    ordered: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Intervals of a BED file (plain or gzipped) by contig, in file order of the contigs.

    Every contig of the file is a key; only those in ``contigs`` (all when ``None``) keep
    their intervals, the others map to empty arrays. ``ordered``: the intervals of each
    contig must be sorted and non-overlapping (windows); otherwise they are sorted and
    merged (a mask).

    Raises
    ------
    DataError
        Naming the file and the line: fewer than 3 columns, non-integer or negative bounds,
        ``end <= start``, or (``ordered``) an interval before the end of the previous one.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.bed"
    >>> _ = p.write_text("chr1\\t0\\t10\\nchr1\\t10\\t30\\nchr2\\t5\\t8\\n")
    >>> bed = read_bed(p, contigs={"chr1"})
    >>> bed["chr1"][1].tolist(), bed["chr2"][0].size
    ([10, 30], 0)
    """
    kept: dict[str, tuple[list[int], list[int]]] = {}
    last_end: dict[str, tuple[int, int]] = {}
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.split()
                try:
                    contig, start, end = fields[0], int(fields[1]), int(fields[2])
                except (IndexError, ValueError):
                    raise DataError(
                        f"{path}: line {number}: {line.strip()!r}; expected 'contig start end' "
                        "(0-based, half-open integer bounds, tab-separated)"
                    ) from None
                if start < 0 or end <= start:
                    raise DataError(
                        f"{path}: line {number}: {contig}:{start}-{end}; expected "
                        "0 <= start < end (BED is 0-based, half-open)"
                    )
                starts, ends = kept.setdefault(contig, ([], []))
                prev = last_end.get(contig)
                if ordered and prev is not None and start < prev[0]:
                    raise DataError(
                        f"{path}: line {number}: {contig}:{start}-{end} starts before the end "
                        f"({prev[0]}) of line {prev[1]}; expected sorted, non-overlapping "
                        "windows per contig (sort -k1,1 -k2,2n, then bedtools merge)"
                    )
                last_end[contig] = (end, number)
                if contigs is None or contig in contigs:
                    starts.append(start)
                    ends.append(end)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(f"{path}: cannot be read as a BED file ({err})") from None
    out = {}
    for contig, (starts, ends) in kept.items():
        s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        out[contig] = (s, e) if ordered else _merge(s, e)
    return out


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, merged union of intervals."""
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    new = np.r_[True, s[1:] > e[:-1]]  # an interval that starts after all before it end
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, s.size - 1]
    return s[first], e[last]


def callable_bases(
    start: np.ndarray, end: np.ndarray, mask_start: np.ndarray, mask_end: np.ndarray
) -> np.ndarray:
    """Bases of the (sorted, merged) mask intervals inside each window ``[start, end)``.

    Examples
    --------
    >>> callable_bases(np.array([0, 10]), np.array([10, 20]),
    ...                np.array([5, 12]), np.array([11, 14])).tolist()
    [5, 3]
    """
    cum = np.r_[0, np.cumsum(mask_end - mask_start)]

    def covered(x: np.ndarray) -> np.ndarray:  # callable bases in [0, x)
        k = np.searchsorted(mask_start, x, side="right")
        over = np.where(k > 0, np.maximum(mask_end[np.maximum(k - 1, 0)] - x, 0), 0)
        return cum[k] - over

    return covered(np.asarray(end)) - covered(np.asarray(start))


def names(items: Collection[str], k: int = 5) -> str:
    """The first ``k`` names, quoted, and how many there are in all (for error messages).

    Examples
    --------
    >>> names(["1", "2"]), names([f"s{i}" for i in range(7)], k=2), names([])
    ("'1', '2'", "'s0', 's1' ... (7 in all)", 'none')
    """
    items = list(items)
    more = f" ... ({len(items)} in all)" if len(items) > k else ""
    return ", ".join(repr(x) for x in items[:k]) + more if items else "none"


def region_windows(
    contig: str,
    start: int,
    end: int,
    *,
    window_bases: int | None = None,
    windows_bed: str | os.PathLike[str] | None = None,
    contig_length: int | None = None,
    source: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """The windows of ``contig:[start, end)``: tiles of ``window_bases`` from ``start``
    (the last clipped to ``end`` and ``contig_length``), or the windows BED's lines on the
    contig whose start lies in the region.

    Raises
    ------
    DataError
        Both or neither of ``window_bases`` and ``windows_bed``, ``window_bases < 1``, or a
        malformed windows BED (:func:`read_bed`).

    Examples
    --------
    >>> [b.tolist() for b in region_windows("1", 0, 250, window_bases=100, contig_length=230)]
    [[0, 100, 200], [100, 200, 230]]
    """
    if (window_bases is None) == (windows_bed is None):
        raise DataError(f"{source}: give exactly one of window_bases and windows_bed")
    if windows_bed is not None:
        starts, ends = read_bed(windows_bed, contigs={contig}).get(contig, EMPTY)
        keep = (starts >= start) & (starts < end)
        return starts[keep], ends[keep]
    if int(window_bases) < 1:
        raise DataError(f"{source}: window_bases = {window_bases}; expected >= 1")
    end = end if contig_length is None else min(end, int(contig_length))
    starts = np.arange(start, end, int(window_bases), dtype=np.int64)
    return starts, np.minimum(starts + int(window_bases), end)


def region_mask(
    path: str | os.PathLike[str], contig: str, *, contigs: Collection[str], source: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """The mask's merged intervals on ``contig`` (none: nothing callable there).

    Raises
    ------
    DataError
        The mask has no interval on any of ``contigs``, the contigs of ``source``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "mask.bed"
    >>> _ = p.write_text("1\\t50\\t90\\n1\\t0\\t60\\n2\\t0\\t5\\n")
    >>> [b.tolist() for b in region_mask(p, "1", contigs=["1", "2"])]
    [[0], [90]]
    """
    bed = read_bed(path, contigs={contig}, ordered=False)
    if not set(bed) & set(contigs):
        raise DataError(
            f"{path}: the mask has no interval on any contig of {source} (mask: "
            f"{names(bed)}; {source}: {names(contigs)}); rename the mask's contigs to "
            "the data's (e.g. 'chr1' vs '1': sed 's/^chr//')"
        )
    return bed.get(contig, EMPTY)


def chunk_windows(starts: np.ndarray, ends: np.ndarray, span: int | None) -> list[tuple[int, int]]:
    """Runs of consecutive windows covering at most ``span`` bases each (at least one
    window; all of them when ``span`` is None), as ``(start, end)``.

    Examples
    --------
    >>> chunk_windows(np.array([0, 100, 600]), np.array([100, 300, 700]), 250)
    [(0, 100), (100, 300), (600, 700)]
    """
    if starts.size == 0:
        return []
    if span is None:
        return [(int(starts[0]), int(ends[-1]))]
    out, first = [], 0
    for k in range(1, starts.size + 1):
        if k == starts.size or ends[k] - starts[first] > span:
            out.append((int(starts[first]), int(ends[k - 1])))
            first = k
    return out
