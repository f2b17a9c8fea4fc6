"""Canonical, type-tagged byte encoding of plain values, for content hashing.

The encoding is injective on the supported types: ``10`` and ``10.0`` encode differently,
``(1, 2)`` and ``[1, 2]`` encode differently, dictionaries and sets are encoded in a
sorted order so that insertion order does not matter, and numpy arrays are encoded by
dtype, shape and bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Any

import numpy as np

__all__ = ["UnencodableValue", "digest", "encode"]


class UnencodableValue(TypeError):
    """Raised for a value of a type that has no canonical encoding."""

    def __init__(self, value: Any, where: str) -> None:
        self.value = value
        self.where = where
        super().__init__(
            f"{where} is of type {type(value).__module__}.{type(value).__qualname__}, "
            "which has no canonical encoding"
        )


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<Q", len(payload)) + payload


def encode(value: Any, *, where: str = "value") -> bytes:
    """Encode ``value`` canonically.

    Parameters
    ----------
    value
        ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, tuples,
        lists, dicts, sets and frozensets of these, numpy arrays (not of object dtype),
        numpy scalars, and dataclass instances whose fields are encodable.
    where
        Name of the value, used in error messages (e.g. ``"helpers.TABLE[3]"``).

    Returns
    -------
    bytes
        A self-delimiting, type-tagged encoding.

    Raises
    ------
    UnencodableValue
        If ``value`` (or something inside it) has no canonical encoding.

    Examples
    --------
    >>> encode(10) == encode(10.0)
    False
    >>> encode({"a": 1, "b": 2}) == encode({"b": 2, "a": 1})
    True
    """
    if value is None:
        return b"N"
    if value is True or value is False:
        return b"B1" if value else b"B0"
    if isinstance(value, np.generic):
        if value.dtype.kind == "O":
            raise UnencodableValue(value, where)
        return _frame(b"G", value.dtype.str.encode() + b"|" + value.tobytes())
    if type(value) is int:
        return _frame(b"I", str(value).encode())
    if type(value) is float:
        return _frame(b"F", value.hex().encode())
    if type(value) is complex:
        return _frame(b"C", (value.real.hex() + "," + value.imag.hex()).encode())
    if type(value) is str:
        return _frame(b"S", value.encode("utf-8"))
    if type(value) is bytes:
        return _frame(b"Y", value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            raise UnencodableValue(value, where)
        head = f"{value.dtype.str}|{value.shape}|".encode()
        return _frame(b"A", head + np.ascontiguousarray(value).tobytes())
    if type(value) in (tuple, list):
        tag = b"T" if type(value) is tuple else b"L"
        parts = [encode(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
        return _frame(tag, b"".join(parts))
    if type(value) is dict:
        items = sorted(
            (encode(k, where=f"{where} key"), encode(v, where=f"{where}[{k!r}]"))
            for k, v in value.items()
        )
        return _frame(b"D", b"".join(k + v for k, v in items))
    if type(value) in (set, frozenset):
        parts = sorted(encode(v, where=f"{where} element") for v in value)
        return _frame(b"E", b"".join(parts))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        name = f"{cls.__module__}.{cls.__qualname__}"
        return _frame(b"K", encode(name) + encode(fields, where=where))
    raise UnencodableValue(value, where)


def digest(value: Any, *, where: str = "value") -> str:
    """Hex sha256 of :func:`encode`.

    Examples
    --------
    >>> len(digest({"n": 10}))
    64
    """
    return hashlib.sha256(encode(value, where=where)).hexdigest()
