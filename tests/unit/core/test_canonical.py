"""Canonical encoding: unchanged bytes, and bounded walks (YAML aliases, deep nesting)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from phasemake.core.canonical import (
    MAX_NODES,
    EncodingLimitExceeded,
    UnencodableValue,
    encode,
)

SAMPLE = {
    "n": 10,
    "x": 10.0,
    "c": 1 + 2j,
    "s": "é",
    "y": b"\x00",
    "t": (1, [2, None]),
    "b": True,
    "set": {3, 1},
    "arr": np.arange(6, dtype=np.int32).reshape(2, 3),
    "g": np.float32(1.5),
    "nested": {"k": [{"z": frozenset({"a"})}]},
}


def test_encoding_bytes_are_unchanged():
    """Every spec hash in every cache depends on these bytes (computed before the limits)."""
    digest = hashlib.sha256(encode(SAMPLE)).hexdigest()
    assert digest == "6d3c717c8c235c830a6dafeefe4a10c81c733fc83db5fb086c699beb64af83dc"


def alias_bomb(levels: int = 8) -> list:
    """10^(levels + 1) leaves in a few objects, as PyYAML loads nested aliases."""
    bomb: list = ["x"] * 10
    for _ in range(levels):
        bomb = [bomb] * 10
    return bomb


def test_shared_structure_is_refused_quickly():
    start = time.perf_counter()
    with pytest.raises(EncodingLimitExceeded, match=rf"params\[0\].*more than {MAX_NODES}"):
        encode(alias_bomb(), where="params")
    assert time.perf_counter() - start < 20  # unbounded: 10^9 values, hours


def test_node_limit_counts_shared_values_at_every_use():
    shared = list(range(10))
    encode([shared] * 10, max_nodes=111)  # 1 + 10 + 100 values
    with pytest.raises(EncodingLimitExceeded):
        encode([shared] * 10, max_nodes=110)


def test_depth_limit_names_the_path():
    deep: list = [1]
    for _ in range(5):
        deep = [deep]
    encode(deep, max_depth=6)  # the leaf 1 is 6 levels down
    with pytest.raises(EncodingLimitExceeded, match=r"v(\[0\]){6} is nested more than 5"):
        encode(deep, where="v", max_depth=5)


def test_very_deep_nesting_is_refused_not_a_recursion_error():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(EncodingLimitExceeded, match="nested more than 100"):
        encode(deep)


def test_unencodable_value_is_named_by_its_path():
    with pytest.raises(UnencodableValue, match=r"P\['a'\]\[1\]\['b'\] is of type builtins.object"):
        encode({"a": [1, {"b": object()}]}, where="P")
