"""The persistent compilation cache survives a full disk and truncated entries.

Shown here: an entry truncated on disk (what JAX's own in-place writes leave on a full
disk) is dropped and recompiled without a warning, and written again whole; on a real
full file system (a small tmpfs, when the tests may mount one) a job compiles, warns
about nothing and leaves neither an entry nor a temporary file, and once there is room
the entry is written; a read-only cache folder is only read.
"""

from __future__ import annotations

import os
import subprocess
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phasemake.core.compiletime import AtomicFileCache, cache_counts
from phasemake.fit.analysis import enable_compilation_cache

X = jnp.arange(4.0)


def _run(scale: float):
    """A fresh function object each call (no in-memory hit): hits and misses counted, and
    every warning caught."""
    before = cache_counts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = jax.jit(lambda x: x * scale + 1)(X)
    np.testing.assert_allclose(out, np.arange(4.0) * scale + 1)
    after = cache_counts()
    return {k: after[k] - before[k] for k in after}, [str(w.message) for w in caught]


def _entries(folder):
    return sorted(p for p in folder.iterdir() if p.name.endswith("-cache"))


def test_a_truncated_entry_is_dropped_and_recompiled(tmp_path):
    enable_compilation_cache(tmp_path)
    assert _run(2.5) == ({"hits": 0, "misses": 1}, [])
    (entry,) = _entries(tmp_path)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # a write cut short by a full disk
    enable_compilation_cache(tmp_path)
    counts, caught = _run(2.5)
    assert caught == []  # JAX's own file cache warns "Error reading persistent ..."
    assert counts == {"hits": 0, "misses": 1}
    # Written again whole: XLA's serialised executable is not byte-reproducible (one byte
    # differed in a CI run), so the proof is that the next run reads it as a hit.
    assert _entries(tmp_path) == [entry] and len(entry.read_bytes()) > len(whole) // 2
    enable_compilation_cache(tmp_path)
    assert _run(2.5) == ({"hits": 1, "misses": 0}, [])


def test_an_empty_or_garbage_entry_is_a_miss(tmp_path):
    cache = AtomicFileCache(tmp_path)
    (tmp_path / "a-cache").write_bytes(b"")
    (tmp_path / "b-cache").write_bytes(b"\x28\xb5\x2f\xfd not a program")
    assert cache.get("a") is None and cache.get("b") is None
    assert _entries(tmp_path) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only); skipped where it cannot be mounted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_no_entry_and_no_warning(small_disk):
    jax_dir = small_disk / "jax"
    jax_dir.mkdir()
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last byte
        for block in (4096, 1):
            try:
                while True:
                    fh.write(b"\0" * block)
            except OSError:
                pass
    enable_compilation_cache(jax_dir)
    counts, caught = _run(4.5)
    assert caught == []  # JAX's own file cache leaves a 0-byte entry and warns
    assert counts == {"hits": 0, "misses": 1}
    assert os.listdir(jax_dir) == []  # neither an entry nor a temporary file
    filler.unlink()
    enable_compilation_cache(jax_dir)
    assert _run(4.5) == ({"hits": 0, "misses": 1}, [])
    assert len(_entries(jax_dir)) == 1
    enable_compilation_cache(jax_dir)
    assert _run(4.5) == ({"hits": 1, "misses": 0}, [])


def test_a_read_only_cache_is_only_read(tmp_path, monkeypatch):
    enable_compilation_cache(tmp_path)
    _run(6.5)
    entries = {p: p.stat().st_mtime_ns for p in _entries(tmp_path)}

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # root ignores write bits
    enable_compilation_cache(tmp_path)
    assert _run(6.5) == ({"hits": 1, "misses": 0}, [])
    assert _run(7.5) == ({"hits": 0, "misses": 1}, [])  # compiled, not written
    assert {p: p.stat().st_mtime_ns for p in _entries(tmp_path)} == entries


def test_the_environment_chooses_a_private_cache(tmp_path, monkeypatch):
    private = tmp_path / "private"
    monkeypatch.setenv("PHASEMAKE_JAX_CACHE", str(private))
    enable_compilation_cache(tmp_path / "shared")
    _run(8.5)
    assert len(_entries(private)) == 1 and not (tmp_path / "shared").exists()
    monkeypatch.setenv("PHASEMAKE_JAX_CACHE", "off")
    enable_compilation_cache(tmp_path / "shared")
    assert _run(9.5) == ({"hits": 0, "misses": 0}, [])
