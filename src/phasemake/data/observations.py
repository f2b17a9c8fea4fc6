"""Observations: the validated table, the SFS as the data see it, and the block-checksummed
observation files.

Two observation models (their likelihoods are in :mod:`phasemake.data.obsmodel`):

``absorption_times``
    One row per individual: ``time`` (≥ 0), optional ``censored`` (0/1: the time is a lower
    bound) and ``weight`` (> 0, default 1).
``sfs``
    One row per genomic window: ``sites`` (> 0, the window's number of sites) and the counts
    ``xi_1 .. xi_{n-1}`` of sites where i of the n sampled sequences carry the derived allele
    (non-negative integers).

Users' data files are read by :mod:`phasemake.data.datafiles` and checked by
:func:`validate`; simulated data come from :mod:`phasemake.data.simulation` and
:mod:`phasemake.data.epochsim`.

The validated observations are stored as one HDF5 file split into blocks of
``block_rows`` rows, each with its own sha256, so that a chunk job reads and verifies only
its own blocks, streaming them (:func:`iter_blocks`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from phasemake.core.artefact import atomic_path
from phasemake.core.errors import ArtefactError, DataError

__all__ = [
    "KINDS",
    "Observations",
    "block_ranges",
    "fold",
    "iter_blocks",
    "observation_moments",
    "observed_classes",
    "observed_sfs",
    "read_header",
    "read_observations",
    "validate",
    "write_observations",
]

KINDS = ("absorption_times", "sfs")
#: Optional columns that place rows (blocks of linked rows, :mod:`phasemake.fit.linkage`):
#: ``block`` (written by the data job), ``group`` (absorption_times), and a VCF window's
#: ``contig`` (an index into the contigs of the data's provenance), ``start`` and ``end``.
LINK_COLUMNS = {"absorption_times": ("block", "group"), "sfs": ("block", "contig", "start", "end")}
OBS_KIND = "phasemake.observations"
OBS_VERSION = 1
DEFAULT_BLOCK_ROWS = 65536
#: Largest time accepted, as a multiple of the median positive time. The largest exit rate
#: λ_max is at least 1 / E[T], about 1 / (the data's time scale) at the fit, and the
#: evaluator refuses λ_max·t_max beyond 2^24 uniformisation steps
#: (phasemake.trace.uniformisation.MAX_RATE_TIME): a time further out would fail every
#: chunk job without naming the row.
MAX_TIME_RATIO = 2.0**24


@dataclass(frozen=True)
class Observations:
    """Validated observations: ``kind`` and float64 columns of equal length.

    ``absorption_times``: ``time``, ``censored``, ``weight`` (N,). ``sfs``: ``sites`` (N,),
    ``counts`` (N, n-1).
    """

    kind: str
    columns: dict[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        return int(next(iter(self.columns.values())).shape[0])

    def rows(self, start: int, stop: int) -> Observations:
        return Observations(self.kind, {k: v[start:stop] for k, v in self.columns.items()})


# -- validation ------------------------------------------------------------------------------
def _bad(source: str, row: int, column: str, value: Any, expected: str) -> DataError:
    return DataError(f"{source}: row {row}, column '{column}': {value!r} — expected {expected}")


def _check(source, name, values, ok, expected, first_row=1):
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        value = values[i].item() if isinstance(values[i], np.generic) else values[i]
        raise _bad(source, i + first_row, name, value, expected)


def validate(
    kind: str,
    columns: dict[str, np.ndarray],
    *,
    source: str,
    n_classes: int | None = None,
    projected: bool = False,
) -> Observations:
    """Check and normalise raw columns (float64, defaults filled in). ``projected``: SFS
    counts may be fractional (hypergeometric projection of sites with missing genotypes).

    Rows are numbered from 1 (the first data row; a header line is not counted).

    Raises
    ------
    DataError
        Naming ``source``, the row and the column: empty data, NaN or infinite values,
        negative times, censoring flags other than 0/1, non-positive weights or sites,
        negative or fractional counts, or the wrong number of SFS classes.
    """
    if kind not in KINDS:
        raise DataError(f"observation kind {kind!r}: expected one of {list(KINDS)}")
    cols = {k: _as_float(source, k, v) for k, v in columns.items()}
    for name, values in cols.items():
        ndim = 2 if (kind, name) == ("sfs", "counts") else 1
        if values.ndim != ndim:
            raise DataError(
                f"{source}: column '{name}' has shape {values.shape}; expected a "
                + ("1-d array (one value per row)" if ndim == 1 else "2-d array (rows, n-1)")
            )
    if kind == "absorption_times":
        if "time" not in cols:
            raise DataError(f"{source}: no 'time' column (found {sorted(cols)})")
        n = cols["time"].shape[0]
        cols.setdefault("censored", np.zeros(n))
        cols.setdefault("weight", np.ones(n))
        extra = set(cols) - {"time", "censored", "weight", *LINK_COLUMNS["absorption_times"]}
        if extra:
            raise DataError(
                f"{source}: unknown column(s) {sorted(extra)}; absorption_times takes "
                "time, censored, weight, group"
            )
        t, c, w = cols["time"], cols["censored"], cols["weight"]
        _check(source, "time", t, np.isfinite(t), "a finite number")
        _check(source, "time", t, t >= 0, "a time >= 0")
        positive = t[t > 0]
        if positive.size:
            scale = float(np.median(positive))
            _check(
                source,
                "time",
                t,
                t <= MAX_TIME_RATIO * scale,
                f"a time at most {MAX_TIME_RATIO:.3g} × the median time {scale:.4g} (no "
                "uniformisation budget reaches further): rescale the times or drop the row",
            )
        _check(source, "censored", c, (c == 0) | (c == 1), "0 or 1")
        _check(source, "weight", w, np.isfinite(w) & (w > 0), "a finite weight > 0")
    else:
        if "sites" not in cols or "counts" not in cols:
            raise DataError(f"{source}: sfs needs 'sites' and the counts xi_1..xi_(n-1)")
        counts, sites = cols["counts"], cols["sites"]
        if counts.ndim != 2:
            raise DataError(f"{source}: counts must be 2-d (windows, n-1), got {counts.shape}")
        if n_classes is not None and counts.shape[1] != n_classes:
            raise DataError(
                f"{source}: {counts.shape[1]} SFS classes per row; the model has "
                f"n-1 = {n_classes} (columns xi_1..xi_{n_classes})"
            )
        extra = set(cols) - {"sites", "counts", *LINK_COLUMNS["sfs"]}
        if extra:
            raise DataError(
                f"{source}: unknown column(s) {sorted(extra)}; sfs takes sites, xi_1.. "
                "(and contig, start, end from a VCF)"
            )
        _check(source, "sites", sites, np.isfinite(sites) & (sites > 0), "a site count > 0")
        for j in range(counts.shape[1]):
            x = counts[:, j]
            ok = np.isfinite(x) & (x >= 0) & ((x == np.round(x)) | projected)
            what = "a non-negative count" if projected else "a non-negative integer count"
            _check(source, f"xi_{j + 1}", x, ok, what)
        n = sites.shape[0]
    lengths = {k: v.shape[0] for k, v in cols.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{source}: columns have different lengths {lengths}")
    if n == 0:
        raise DataError(f"{source}: no rows; expected at least one observation")
    return Observations(kind, cols)


def _as_float(source: str, name: str, values: Any) -> np.ndarray:
    """A column as float64; a non-numeric one (strings, objects, records) is refused."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf" or arr.dtype.names:
        raise DataError(
            f"{source}: column '{name}' has dtype {arr.dtype}; expected numbers (integer or float)"
        )
    return arr.astype(np.float64)


# -- folded and misidentified SFS -------------------------------------------------------------
def observed_classes(n_classes: int, *, folded: bool) -> int:
    """SFS classes of the data: ``n - 1`` unfolded, ``⌊n/2⌋`` folded (``n_classes = n - 1``).

    Examples
    --------
    >>> observed_classes(9, folded=False), observed_classes(9, folded=True)
    (9, 5)
    """
    return (n_classes + 1) // 2 if folded else n_classes


def fold(n: int) -> np.ndarray:
    """The ``(⌊n/2⌋, n-1)`` matrix that folds an unfolded SFS of ``n`` lineages.

    Examples
    --------
    >>> fold(4).tolist()
    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    out = np.zeros((n // 2, n - 1))
    for i in range(1, n // 2 + 1):
        out[i - 1, i - 1] = 1.0
        out[i - 1, n - i - 1] = 1.0
    return out


def observed_sfs(expected, *, misid=None, fold_matrix=None):
    """The expected SFS as the data see it: a fraction ``misid`` (ε) of sites with the
    ancestral allele wrong, ``(1 - ε) E[ξ_i] + ε E[ξ_{n-i}]``, then folded by
    ``fold_matrix`` (:func:`fold`) if given. NumPy or JAX arrays alike.

    Examples
    --------
    >>> observed_sfs(np.array([3.0, 1.0, 0.0]), misid=0.5, fold_matrix=fold(4)).tolist()
    [3.0, 1.0]
    """
    if misid is not None:
        expected = (1.0 - misid) * expected + misid * expected[::-1]
    return expected if fold_matrix is None else fold_matrix @ expected


# -- block-checksummed files -------------------------------------------------------------------
def _block_hash(obs: Observations) -> str:
    h = hashlib.sha256()
    for name in sorted(obs.columns):
        arr = np.ascontiguousarray(obs.columns[name], dtype=np.float64)
        h.update(f"{name}|{arr.shape}".encode())
        h.update(memoryview(arr).cast("B") if arr.nbytes else b"")
    return "sha256:" + h.hexdigest()


def observation_moments(obs: Observations) -> dict[str, float]:
    """The data summaries a scale-free NLSQ start needs (:mod:`phasemake.fit.start`), stored
    in the observations file's header: the weighted mean time (``absorption_times``), or
    the segregating sites and the sites of all windows (``sfs``).

    Examples
    --------
    >>> times = Observations("absorption_times", {"time": np.array([1e4, 3e4])})
    >>> observation_moments(times)
    {'mean_time': 20000.0, 'rows': 2}
    """
    cols = obs.columns
    if obs.kind == "absorption_times":
        t = np.asarray(cols["time"], dtype=np.float64)
        w = np.asarray(cols.get("weight", np.ones_like(t)), dtype=np.float64)
        return {"mean_time": float(w @ t / w.sum()), "rows": len(t)}
    return {"segregating": float(np.sum(cols["counts"])), "sites": float(np.sum(cols["sites"]))}


def write_observations(
    obs: Observations,
    path: str | os.PathLike[str],
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write validated observations atomically, with one checksum per block of rows.

    Returns the file's metadata (``n_rows``, ``blocks``, ``checksum`` of the whole data).
    """
    n = obs.n_rows
    bounds = [*range(0, n, block_rows), n]
    hashes = [_block_hash(obs.rows(a, b)) for a, b in itertools.pairwise(bounds)]
    meta = {
        "kind": obs.kind,
        "n_rows": n,
        "block_rows": block_rows,
        "block_checksums": hashes,
        "checksum": "sha256:" + hashlib.sha256("".join(hashes).encode()).hexdigest(),
        "t_max": float(obs.columns["time"].max()) if obs.kind == "absorption_times" else None,
        "moments": observation_moments(obs),
        "provenance": provenance or {},
    }
    meta_json = json.dumps(meta, sort_keys=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in obs.columns.items():
            f.create_dataset(name, data=arr)
        f.attrs["format"] = OBS_KIND
        f.attrs["format_version"] = OBS_VERSION
        f.attrs["meta"] = meta_json
        f.attrs["meta_checksum"] = hashlib.sha256(meta_json.encode()).hexdigest()
    return meta


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an observations file, verified against its own checksum."""
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("format")
            version = f.attrs.get("format_version")
            meta_json = f.attrs.get("meta")
            stored = f.attrs.get("meta_checksum")
    except OSError as err:
        raise ArtefactError(f"{path} is not a readable HDF5 file ({err}); delete it") from None
    if kind != OBS_KIND or version != OBS_VERSION:
        raise ArtefactError(
            f"{path} is a {kind} v{version} file, not {OBS_KIND} v{OBS_VERSION}; delete it"
        )
    if hashlib.sha256(str(meta_json).encode()).hexdigest() != stored:
        raise ArtefactError(f"{path}: corrupt metadata (checksum mismatch); delete it")
    return json.loads(meta_json)


def block_ranges(n_blocks: int, parts: int) -> list[range]:
    """Blocks of each of ``parts`` contiguous parts (deterministic, balanced)."""
    edges = [(p * n_blocks) // parts for p in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(edges)]


def _read_block(f: h5py.File, meta: dict, b: int, path) -> Observations:
    a = b * meta["block_rows"]
    stop = min(a + meta["block_rows"], meta["n_rows"])
    obs = Observations(meta["kind"], {k: f[k][a:stop] for k in f})
    if _block_hash(obs) != meta["block_checksums"][b]:
        raise ArtefactError(f"{path}: block {b} (rows {a}-{stop}) is corrupt; delete the file")
    return obs


def iter_blocks(
    path: str | os.PathLike[str], blocks: range | None = None, *, prefetch: int = 2
) -> Iterator[Observations]:
    """Yield verified blocks, reading ahead in a background thread while the caller works."""
    meta = read_header(path)
    todo = range(len(meta["block_checksums"])) if blocks is None else blocks
    q: queue.Queue = queue.Queue(maxsize=prefetch)

    def reader():
        try:
            with h5py.File(path, "r") as f:
                for b in todo:
                    q.put(_read_block(f, meta, b, path))
        except BaseException as err:  # handed to the consumer
            q.put(err)
        q.put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    while (item := q.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def read_observations(path: str | os.PathLike[str]) -> Observations:
    """All rows of an observations file, every block verified."""
    blocks = list(iter_blocks(path))
    return Observations(
        blocks[0].kind,
        {k: np.concatenate([b.columns[k] for b in blocks]) for k in blocks[0].columns},
    )
