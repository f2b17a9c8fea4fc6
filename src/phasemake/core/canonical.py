"""Canonical, type-tagged byte encoding of plain values, for content hashing.

The encoding is injective on the supported types: ``10`` and ``10.0`` encode differently,
``(1, 2)`` and ``[1, 2]`` encode differently, dictionaries and sets are encoded in a
sorted order so that insertion order does not matter, and numpy arrays are encoded by
dtype, shape and bytes.

The walk is bounded (:data:`MAX_DEPTH`, :data:`MAX_NODES`): YAML aliases and shared Python
objects make a structure whose *expanded* size is exponential in its size in memory (nine
nested aliases of ten references each are 10^9 leaves in a 1 KB file), and an encoding of
it would never finish. Every visit counts, shared or not, so the bound holds for those too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "EncodingLimitExceeded",
    "UnencodableValue",
    "digest",
    "encode",
]

#: Deepest nesting :func:`encode` walks. Real construction params and module constants are
#: a few levels deep; 100 is far above that and far below Python's recursion limit.
MAX_DEPTH = 100
#: Most values (containers and leaves, each visit of a shared one counted) :func:`encode`
#: walks: about a second of encoding. Bigger tables belong in numpy arrays (one value each).
MAX_NODES = 1_000_000


class UnencodableValue(TypeError):
    """Raised for a value of a type that has no canonical encoding."""

    def __init__(self, value: Any, where: str) -> None:
        self.value = value
        self.where = where
        super().__init__(
            f"{where} is of type {type(value).__module__}.{type(value).__qualname__}, "
            "which has no canonical encoding"
        )


class EncodingLimitExceeded(ValueError):
    """Raised for a value nested deeper than :data:`MAX_DEPTH` or with more than
    :data:`MAX_NODES` values (shared ones counted at every use)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where} {message}")


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<Q", len(payload)) + payload


def encode(
    value: Any, *, where: str = "value", max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> bytes:
    """Encode ``value`` canonically.

    Parameters
    ----------
    value
        ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, tuples,
        lists, dicts, sets and frozensets of these, numpy arrays (not of object dtype),
        numpy scalars, and dataclass instances whose fields are encodable.
    where
        Name of the value, used in error messages (e.g. ``"helpers.TABLE[3]"``).
    max_depth, max_nodes
        Bounds of the walk (see :data:`MAX_DEPTH` and :data:`MAX_NODES`).

    Returns
    -------
    bytes
        A self-delimiting, type-tagged encoding.

    Raises
    ------
    UnencodableValue
        If ``value`` (or something inside it) has no canonical encoding.
    EncodingLimitExceeded
        If ``value`` is nested deeper than ``max_depth`` or holds more than ``max_nodes``
        values; raised after at most ``max_nodes`` visits, however large ``value`` expands.

    Examples
    --------
    >>> encode(10) == encode(10.0)
    False
    >>> encode({"a": 1, "b": 2}) == encode({"b": 2, "a": 1})
    True
    """
    return _encode(value, where, 0, [max_nodes, max_nodes], max_depth)


def _where(where: Any) -> str:
    """The name of a value: ``where`` is a str or a lazy ``(parent, format, key)``."""
    parts = []
    while not isinstance(where, str):
        where, fmt, key = where
        parts.append(fmt.format(key))
    return where + "".join(reversed(parts))


def _encode(value: Any, where: Any, depth: int, budget: list[int], max_depth: int) -> bytes:
    budget[0] -= 1
    if budget[0] < 0:
        raise EncodingLimitExceeded(
            _where(where),
            f"is part of a value with more than {budget[1]} elements (shared ones, such as "
            "YAML aliases, count at every use); pass large tables as numpy arrays",
        )
    if depth > max_depth:
        raise EncodingLimitExceeded(
            _where(where), f"is nested more than {max_depth} levels deep; flatten the structure"
        )

    def enc(v: Any, fmt: str, key: Any = None) -> bytes:
        return _encode(v, (where, fmt, key), depth + 1, budget, max_depth)

    if value is None:
        return b"N"
    if value is True or value is False:
        return b"B1" if value else b"B0"
    if isinstance(value, np.generic):
        if value.dtype.kind == "O":
            raise UnencodableValue(value, _where(where))
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
            raise UnencodableValue(value, _where(where))
        head = f"{value.dtype.str}|{value.shape}|".encode()
        return _frame(b"A", head + np.ascontiguousarray(value).tobytes())
    if type(value) in (tuple, list):
        tag = b"T" if type(value) is tuple else b"L"
        parts = [enc(v, "[{}]", i) for i, v in enumerate(value)]
        return _frame(tag, b"".join(parts))
    if type(value) is dict:
        items = sorted((enc(k, " key"), enc(v, "[{!r}]", k)) for k, v in value.items())
        return _frame(b"D", b"".join(k + v for k, v in items))
    if type(value) in (set, frozenset):
        parts = sorted(enc(v, " element") for v in value)
        return _frame(b"E", b"".join(parts))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        name = f"{cls.__module__}.{cls.__qualname__}"
        return _frame(b"K", enc(name, "") + enc(fields, ""))
    raise UnencodableValue(value, _where(where))


def digest(value: Any, *, where: str = "value") -> str:
    """Hex sha256 of :func:`encode`.

    Examples
    --------
    >>> len(digest({"n": 10}))
    64
    """
    return hashlib.sha256(encode(value, where=where)).hexdigest()
