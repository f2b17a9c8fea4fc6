"""Observations: reading, validation, exact simulation, and block-checksummed files.

Two observation models (their likelihoods are in :mod:`phasemake.data.obsmodel`):

``absorption_times``
    One row per individual: ``time`` (≥ 0), optional ``censored`` (0/1: the time is a lower
    bound) and ``weight`` (> 0, default 1).
``sfs``
    One row per genomic window: ``sites`` (> 0, the window's number of sites) and the counts
    ``xi_1 .. xi_{n-1}`` of sites where i of the n sampled sequences carry the derived allele
    (non-negative integers).

Files: CSV/TSV with a header row naming the columns; ``.npy`` (a 2-d array in the column
order above, or 1-d times); ``.npz`` and HDF5 (arrays named by column; ``counts`` as one 2-d
array for ``sfs``); tskit ``.trees`` for ``sfs`` when tskit is installed.

The validated observations are stored as one HDF5 file split into blocks of
``block_rows`` rows, each with its own sha256, so that a chunk job reads and verifies only
its own blocks, streaming them (:func:`iter_blocks`).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phasemake.core.artefact import atomic_path
from phasemake.core.errors import ArtefactError, DataError
from phasemake.data.hdf5input import read_hdf5_columns

__all__ = [
    "KINDS",
    "Observations",
    "block_ranges",
    "check_data_head",
    "fold",
    "iter_blocks",
    "observation_moments",
    "observed_classes",
    "observed_sfs",
    "read_data_file",
    "read_observations",
    "simulate_absorption_times",
    "times_observed",
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


# -- files -----------------------------------------------------------------------------------
TIME_COLUMNS = ("time", "censored", "weight", "group")


def header_problem(names: list[str], kind: str, n_classes: int | None = None) -> str | None:
    """What is wrong with a text file's header for ``kind`` (``None``: nothing): a header-less
    file, a duplicate, a missing or an unknown column (with the closest allowed name).
    Columns may come in any order.

    Examples
    --------
    >>> header_problem(["duration", "weight"], "absorption_times")[:61]
    "no 'time' column; unknown column 'duration' (allowed: time, c"
    >>> header_problem(["1.5", "0"], "absorption_times")[:43]
    'the first line is data (1.5), not a header;'
    >>> header_problem(["xi_2", "sites", "xi_1"], "sfs", n_classes=2) is None
    True
    """
    import difflib

    if names and _is_float(names[0]):
        expected = "time[,censored,weight]" if kind == "absorption_times" else "sites,xi_1,..."
        return f"the first line is data ({names[0]}), not a header; add a header line: {expected}"
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        return f"duplicate column(s) {dup}"
    if kind == "absorption_times":
        allowed, required = list(TIME_COLUMNS), ["time"]
    else:
        k = n_classes
        if k is None:  # from the header itself: xi_1 .. xi_max
            xis = [int(n[3:]) for n in names if n.startswith("xi_") and n[3:].isdigit()]
            k = max(xis, default=0)
        allowed = ["sites"] + [f"xi_{i}" for i in range(1, k + 1)]
        required = allowed
    problems = [f"no {c!r} column" for c in required if c not in names]
    for n in names:
        if n not in allowed:
            close = difflib.get_close_matches(n, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            if len(allowed) > 6 and not close:
                hint = f"allowed: {allowed[0]}, {allowed[1]} ... {allowed[-1]}"
            problems.append(f"unknown column {n!r} ({hint})")
    if not problems:
        return None
    if n_classes is not None and any("'xi_" in p for p in problems):
        problems.append(f"the model has n - 1 = {n_classes} SFS classes")
    expected = "time, censored, weight" if kind == "absorption_times" else "sites,xi_1,...,xi_(n-1)"
    return "; ".join(problems) + f"; expected columns among {expected} (in any order)"


def _from_table(kind: str, names: list[str], table: np.ndarray, source: str) -> dict:
    if kind == "absorption_times":
        return {name: table[:, j] for j, name in enumerate(names)}
    problem = header_problem(names, kind)
    if problem:
        raise DataError(f"{source}: {problem}")
    order = [names.index(f"xi_{i}") for i in range(1, len(names))]  # any column order
    return {"sites": table[:, names.index("sites")], "counts": table[:, order]}


def check_data_head(
    path: str | os.PathLike[str], *, kind: str, n_classes: int | None = None, rows: int = 100
) -> None:
    """Parse-time check of a text data file: its header and its first ``rows`` rows, read and
    validated as the data job will (the rest is checked there). Other formats are left to
    the data job.

    Raises
    ------
    DataError
        Naming the file, and the row and column, or the missing or unknown column.
    """
    path = Path(path)
    if path.suffix.lower() in (".csv", ".tsv", ".tab", ".txt"):
        cols = _read_text(path, kind, max_rows=rows, n_classes=n_classes)
        validate(kind, cols, source=str(path), n_classes=n_classes)


def _read_text(
    path: Path, kind: str, *, max_rows: int | None = None, n_classes: int | None = None
) -> dict:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file; expected a header row and data rows")
        names = [h.strip() for h in header]
        problem = header_problem(names, kind, n_classes)
        if problem:
            raise DataError(f"{path}: header {','.join(names)}: {problem}")
        rows = []
        for line, fields in enumerate(reader, start=1):
            if max_rows is not None and line > max_rows:
                break
            if not fields:
                continue
            if len(fields) != len(names):
                raise DataError(
                    f"{path}: row {line} has {len(fields)} columns; the header has "
                    f"{len(names)} ({','.join(names)})"
                )
            try:
                rows.append([float(x) for x in fields])
            except ValueError:
                j = next(j for j, x in enumerate(fields) if not _is_float(x))
                raise _bad(str(path), line, names[j], fields[j], "a number") from None
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return _from_table(kind, names, table, str(path))


def _is_float(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _read_trees(path: Path, windows: int) -> dict:
    try:
        import tskit
    except ImportError:
        raise DataError(f"{path}: reading tree sequences needs tskit (pip install tskit)") from None
    ts = tskit.load(str(path))
    breaks = np.linspace(0.0, ts.sequence_length, windows + 1)
    afs = ts.allele_frequency_spectrum(
        mode="site", windows=breaks, polarised=True, span_normalise=False
    )
    return {"sites": np.diff(breaks), "counts": afs[:, 1:-1]}


def read_data_file(
    path: str | os.PathLike[str], *, kind: str, n_classes: int | None = None, windows: int = 1
) -> Observations:
    """Read and validate an observations file (format from its suffix, see module doc).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "times.csv"
    >>> _ = p.write_text("time,censored\\n1.5,0\\n2.0,1\\n")
    >>> read_data_file(p, kind="absorption_times").columns["censored"].tolist()
    [0.0, 1.0]
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check data.file in the analysis")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".tab", ".txt"):
            cols = _read_text(path, kind, n_classes=n_classes)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if kind == "absorption_times" and arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != 2 or arr.shape[1] == 0:
                raise DataError(f"{path}: expected a 2-d array (rows, columns), got {arr.shape}")
            names = (
                ["time", "censored", "weight"][: arr.shape[1]]
                if kind == "absorption_times"
                else ["sites"] + [f"xi_{i}" for i in range(1, arr.shape[1])]
            )
            if len(names) < arr.shape[1]:
                raise DataError(f"{path}: {arr.shape[1]} columns; expected at most 3")
            cols = _from_table(kind, names, arr.astype(np.float64), str(path))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                cols = {k: z[k] for k in z.files}
        elif suffix in (".h5", ".hdf5"):
            cols = read_hdf5_columns(path)  # refuses links and non-numeric dtypes
        elif suffix == ".trees" and kind == "sfs":
            cols = _read_trees(path, windows)
        else:
            raise DataError(
                f"{path}: unknown data format {suffix!r}; use .csv, .tsv, .npy, .npz, .h5"
                + (" or .trees" if kind == "sfs" else "")
            )
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot be read as {suffix} ({err})") from None
    return validate(kind, cols, source=str(path), n_classes=n_classes)


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


# -- simulation ------------------------------------------------------------------------------
def simulate_absorption_times(
    graph, theta: Any, *, size: int, seed: int, censor_at: float | None = None
) -> Observations:
    """Exact (Gillespie) absorption times of ``size`` independent paths through ``graph``.

    Deterministic for a given ``seed``. With ``censor_at``, times beyond it are reported
    as ``censor_at`` with ``censored = 1``.

    Examples
    --------
    >>> from phasemake import build_graph
    >>> from phasemake.models import kingman
    >>> obs = simulate_absorption_times(build_graph(kingman, n=2), [1.0], size=20000, seed=1)
    >>> round(float(obs.columns["time"].mean()), 1)   # Exp(1)
    1.0
    """
    rng = np.random.default_rng(seed)
    rates = graph.rates(theta)
    n = graph.n_vertices
    out = np.bincount(graph.edge_src, weights=rates, minlength=n)
    start = np.searchsorted(graph.edge_src, np.arange(n + 1))
    cum = np.zeros_like(rates)
    for v in np.flatnonzero(out > 0):  # per-vertex cumulative jump probabilities
        a, b = start[v], start[v + 1]
        cum[a:b] = np.cumsum(rates[a:b]) / out[v]
    probs = np.asarray(graph.init_prob, dtype=np.float64)
    where = graph.init_index[rng.choice(probs.size, size=size, p=probs / probs.sum())]
    time = np.zeros(size)
    alive = out[where] > 0
    while alive.any():
        idx = np.flatnonzero(alive)
        v = where[idx]
        time[idx] += rng.exponential(1.0 / out[v])
        u = rng.random(idx.size)
        where[idx] = graph.edge_tgt[_pick(cum, start[v], start[v + 1], u)]
        alive[idx] = out[where[idx]] > 0
    return times_observed(time, censor_at)


def times_observed(time: np.ndarray, censor_at: float | None) -> Observations:
    """Simulated absorption times as observations: times beyond ``censor_at`` reported as
    ``censor_at`` with ``censored = 1``; every weight 1."""
    censored = np.zeros(time.size)
    if censor_at is not None:
        censored = (time > censor_at).astype(np.float64)
        time = np.minimum(time, censor_at)
    return Observations(
        "absorption_times", {"time": time, "censored": censored, "weight": np.ones(time.size)}
    )


def _pick(cum: np.ndarray, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Vectorised: for each walker, the edge in ``[a, b)`` where ``cum`` first exceeds ``u``."""
    width = int((b - a).max())
    offsets = np.arange(width)
    pos = np.minimum(a[:, None] + offsets[None, :], (b - 1)[:, None])
    passed = (cum[pos] <= u[:, None]) & (offsets[None, :] < (b - a - 1)[:, None])
    return a + passed.sum(axis=1)


def simulate_sfs(expected: np.ndarray, *, sites: np.ndarray, seed: int) -> Observations:
    """Poisson random field counts: ``xi_i ~ Poisson(sites_w · expected_i)`` per window.

    ``expected`` is the per-site expected SFS, ``mutation · E[ξ_i](θ)``.
    """
    rng = np.random.default_rng(seed)
    sites = np.asarray(sites, dtype=np.float64)
    counts = rng.poisson(sites[:, None] * np.asarray(expected)[None, :]).astype(np.float64)
    return Observations("sfs", {"sites": sites, "counts": counts})


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
