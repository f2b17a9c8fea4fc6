"""An HDF5 observations file from the user: its top-level numeric datasets, and nothing
outside the file.

A column is a dataset at the top level of the file (groups are ignored). Refused, naming
the file and the column: external links (they open another file), soft links, virtual
datasets (their data live in other files) and datasets whose raw data are stored in
external files; and any dtype that is not a number (variable-length, string, compound,
opaque or reference), which h5py would otherwise hand on as objects that fail
later without saying where.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from phasemake.core.errors import DataError

__all__ = ["hdf5_rows", "read_hdf5_columns"]

#: dtype kinds accepted as numbers: bool, signed and unsigned integer, float.
NUMERIC_KINDS = "biuf"


def _describe(dtype: np.dtype) -> str:
    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU":
        return "a string"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "a variable-length"
    if dtype.names:
        return f"a compound (fields {', '.join(dtype.names)})"
    if dtype.kind == "V":
        return "an opaque"
    if dtype.kind == "O":
        return "an object or reference"
    return f"a non-numeric ({dtype.kind!r})"


def _datasets(f: h5py.File, path: str | os.PathLike[str]) -> dict[str, h5py.Dataset]:
    """The top-level datasets, each checked; links are inspected, never followed."""
    out = {}
    for name in f:
        link = f.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise DataError(
                f"{path}: column '{name}' is an external link to {link.filename}:{link.path}; "
                "an observations file must hold its own data (write the array into it)"
            )
        if isinstance(link, h5py.SoftLink):
            raise DataError(
                f"{path}: column '{name}' is a soft link to {link.path}; store each column "
                "as a dataset of its own at the top level"
            )
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset):
            continue
        if obj.is_virtual:
            raise DataError(
                f"{path}: column '{name}' is a virtual dataset (its data live in other "
                "files); write the array into the file"
            )
        if obj.external:
            raise DataError(
                f"{path}: column '{name}' stores its data in external file(s) "
                f"{[e[0] for e in obj.external]}; write the array into the file"
            )
        dtype = obj.dtype
        if dtype.kind not in NUMERIC_KINDS or dtype.names:
            raise DataError(
                f"{path}: column '{name}' has {_describe(dtype)} dtype ({dtype}); "
                "expected numbers (integer or float), one column per dataset"
            )
        out[name] = obj
    return out


def read_hdf5_columns(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The file's columns (top-level numeric datasets), read whole.

    Raises
    ------
    DataError
        Naming the file and the column: a link, a virtual or externally stored dataset, a
        non-numeric dtype.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.h5"
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("time", data=[1.0, 2.0])
    ...     f["other"] = h5py.ExternalLink("elsewhere.h5", "/time")
    >>> read_hdf5_columns(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    phasemake.core.errors.DataError: ...t.h5: column 'other' is an external link to ...
    """
    with h5py.File(path, "r") as f:
        return {name: ds[()] for name, ds in _datasets(f, path).items()}


def hdf5_rows(path: str | os.PathLike[str]) -> int:
    """Rows of the file's longest column, from its header (0 when it has none)."""
    with h5py.File(path, "r") as f:
        shapes: list[Any] = [ds.shape for ds in _datasets(f, path).values()]
    return max((s[0] for s in shapes if len(s) > 0), default=0)
