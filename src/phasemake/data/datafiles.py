"""Users' data files (``data.file``): the format from the suffix, the header checked at
parse time, every row validated (:func:`phasemake.data.observations.validate`).

Formats: CSV/TSV with a header row naming the columns (in any order); ``.npy`` (a 2-d array
in the column order ``time, censored, weight`` or ``sites, xi_1, ...``, or 1-d times);
``.npz`` and HDF5 (arrays named by column; ``counts`` as one 2-d array for ``sfs``); tskit
``.trees`` for ``sfs`` (the site-mode allele frequency spectrum in equal windows).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from phasemake.core.errors import DataError
from phasemake.data.hdf5input import read_hdf5_columns
from phasemake.data.observations import Observations, _bad, validate

__all__ = ["TIME_COLUMNS", "check_data_head", "header_problem", "read_data_file"]

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
