"""Artefact files: atomic writes, format versions and checksums verified on read.

Every phasemake artefact is an HDF5 file whose root holds flat numeric datasets and three
attributes: ``format`` (e.g. ``"phasemake.graph"``), ``format_version`` and ``checksum``
(sha256 over every dataset's name, dtype, shape and bytes, and the JSON ``meta`` attribute).
Files are written to a temporary name in the target directory and renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phasemake.core.errors import ArtefactError

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["arrays_checksum", "atomic_path", "read_artefact", "read_header", "write_artefact"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success.

    The temporary file is removed if the block raises. The rename is atomic on POSIX
    file systems, so ``path`` is either absent, the old file, or the complete new one.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; a shared cache needs the umask
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def arrays_checksum(arrays: Mapping[str, np.ndarray], meta_json: str) -> str:
    """``"sha256:<hex>"`` over the arrays (by sorted name) and the meta JSON string."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        head = f"{name}|{arr.dtype.str}|{arr.shape}".encode()
        h.update(struct.pack("<Q", len(head)) + head)
        h.update(struct.pack("<Q", arr.nbytes))
        h.update(memoryview(arr).cast("B") if arr.nbytes else b"")
    h.update(meta_json.encode())
    return "sha256:" + h.hexdigest()


def write_artefact(
    path: str | os.PathLike[str],
    *,
    kind: str,
    version: int,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> None:
    """Write arrays and JSON metadata to an HDF5 artefact atomically, with a checksum."""
    meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    checksum = arrays_checksum(arrays, meta_json)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in arrays.items():
            f.create_dataset(name, data=np.ascontiguousarray(arr))
        f.attrs["format"] = kind
        f.attrs["format_version"] = version
        f.attrs["meta"] = meta_json
        f.attrs["checksum"] = checksum


def _attr_str(f: h5py.File, name: str) -> str | None:
    value = f.attrs.get(name)
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def read_header(path: str | os.PathLike[str], *, kind: str, versions: tuple[int, ...]) -> dict:
    """Open ``path`` and check format and version without reading the arrays."""
    return _read(path, kind=kind, versions=versions, arrays=False)[1]


def read_artefact(
    path: str | os.PathLike[str], *, kind: str, versions: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an artefact, verifying format, version and checksum.

    Returns
    -------
    arrays, meta
        The datasets by name, and the decoded ``meta`` JSON.

    Raises
    ------
    ArtefactError
        If the file is missing, not HDF5 (truncated or foreign), of another format or an
        unsupported version, or its checksum does not match its content.
    """
    return _read(path, kind=kind, versions=versions, arrays=True)


def _read(path, *, kind, versions, arrays):
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ArtefactError(
            f"{path} is not a readable HDF5 file (truncated, corrupt or foreign: {err}); "
            "delete it so it is rebuilt"
        ) from None
    with f:
        found = _attr_str(f, "format")
        if found != kind:
            raise ArtefactError(
                f"{path} is a {found or 'foreign'} file, not a {kind} file; delete it or "
                "point phasemake at another path"
            )
        version = f.attrs.get("format_version")
        if version is None or int(version) not in versions:
            raise ArtefactError(
                f"{path} has {kind} format version {version}, this phasemake reads "
                f"{list(versions)}; delete it so it is rebuilt"
            )
        meta_json = _attr_str(f, "meta") or "{}"
        stored = _attr_str(f, "checksum")
        if not arrays:
            return {}, json.loads(meta_json)
        try:
            data = {name: f[name][()] for name in f}
        except (OSError, KeyError) as err:
            raise ArtefactError(f"{path} is corrupt ({err}); delete it so it is rebuilt") from None
    computed = arrays_checksum(data, meta_json)
    if stored != computed:
        raise ArtefactError(
            f"{path} is corrupt: its checksum {stored} does not match its content "
            f"({computed}); delete it so it is rebuilt"
        )
    return data, json.loads(meta_json)


def write_json_artefact(
    path: str | os.PathLike[str], *, kind: str, version: int, payload: Mapping[str, Any]
) -> None:
    """Write a small JSON artefact atomically, with its format, version and a sha256."""
    body = json.dumps(payload, sort_keys=True, allow_nan=False)
    doc = {
        "format": kind,
        "format_version": version,
        "checksum": "sha256:" + hashlib.sha256(body.encode()).hexdigest(),
        "payload": payload,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_json_artefact(
    path: str | os.PathLike[str], *, kind: str, versions: tuple[int, ...]
) -> dict[str, Any]:
    """Read a JSON artefact written by :func:`write_json_artefact`, verifying it."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ArtefactError(f"{path} is not readable JSON ({err}); delete it") from None
    if not isinstance(doc, dict) or doc.get("format") != kind:
        raise ArtefactError(f"{path} is not a {kind} file; delete it")
    if doc.get("format_version") not in versions:
        raise ArtefactError(
            f"{path} has {kind} version {doc.get('format_version')}, this phasemake reads "
            f"{list(versions)}; delete it"
        )
    body = json.dumps(doc.get("payload"), sort_keys=True, allow_nan=False)
    if doc.get("checksum") != "sha256:" + hashlib.sha256(body.encode()).hexdigest():
        raise ArtefactError(f"{path} is corrupt (checksum mismatch); delete it")
    return doc["payload"]
