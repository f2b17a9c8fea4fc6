"""The lumping of a trace as arrays of its trace file (numpy only: no JAX).

A stitched trace file (format version 2) records the exact block chain of its trace
(:mod:`phasemake.trace.lumping`), found once from the file's own arrays when it is
written, so that no job that loads it searches for it again:

``lump_blocks``
    (1,) int64: the number of blocks M, or ``-1`` when the trace does not lump (then no
    other ``lump_*`` array is stored);
``lump_block``, ``lump_nu``
    (V,) int64 and float64: each vertex's block (M for absorbing and unreachable states)
    and its probability given its block, in trace vertex order;
``lump_coef``
    (M, M, p) float64: the block chain's generator coefficients;
``lump_start_mass``
    (1,) float64: the initial probability of the transient states.

A version-1 file has none of them: its lumping is found on first use, as before.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from phasemake.core.errors import ArtefactError

__all__ = [
    "LUMP_KEYS",
    "MAX_BLOCKS",
    "Lumping",
    "check_lumping",
    "has_lumping",
    "lumping_arrays",
    "read_lumping",
]

#: The block chain is evaluated densely: up to this many blocks.
MAX_BLOCKS = 256
#: The arrays of a stored lumping (``lump_blocks`` alone when the trace does not lump).
LUMP_KEYS = ("lump_blocks", "lump_block", "lump_nu", "lump_coef", "lump_start_mass")
_NONE = -1


class Lumping(NamedTuple):
    """The block chain of a lumpable trace (trace vertex order).

    ``block[v]`` is v's block (``n_blocks`` for absorbing and unreachable states),
    ``nu[v]`` the probability of visiting v given that its block is visited,
    ``coef[B, B2]`` the block chain's generator coefficients (``(M, M, p)``: jump
    coefficients off the diagonal, minus the exit coefficients on it; transient blocks
    only, in topological order: the start block is 0), ``start_mass`` the initial
    probability of the transient states (below 1 when some mass starts absorbed)."""

    block: np.ndarray
    nu: np.ndarray
    coef: np.ndarray
    n_blocks: int
    start_mass: float = 1.0


def lumping_arrays(found: Lumping | None) -> dict[str, np.ndarray]:
    """The arrays that record ``found`` (``None``: the trace does not lump) in a trace file.

    Examples
    --------
    >>> lumping_arrays(None)
    {'lump_blocks': array([-1])}
    >>> sorted(lumping_arrays(Lumping(np.array([0, 1]), np.ones(2), -np.ones((1, 1, 1)), 1)))
    ['lump_block', 'lump_blocks', 'lump_coef', 'lump_nu', 'lump_start_mass']
    """
    if found is None:
        return {"lump_blocks": np.array([_NONE], dtype=np.int64)}
    return {
        "lump_blocks": np.array([found.n_blocks], dtype=np.int64),
        "lump_block": np.asarray(found.block, dtype=np.int64),
        "lump_nu": np.asarray(found.nu, dtype=np.float64),
        "lump_coef": np.asarray(found.coef, dtype=np.float64),
        "lump_start_mass": np.array([found.start_mass], dtype=np.float64),
    }


def has_lumping(arrays: dict[str, np.ndarray]) -> bool:
    """Whether trace ``arrays`` record their lumping (format version 2), found or not."""
    return "lump_blocks" in arrays


def check_lumping(arrays: dict[str, np.ndarray], path: str | os.PathLike[str]) -> None:
    """Check that the lumping recorded in trace ``arrays`` (read from ``path``) fits the
    trace: nothing recorded (a version-1 file), or the record of ``lumping_arrays``.

    Raises
    ------
    phasemake.core.errors.ArtefactError
        If some ``lump_*`` arrays are missing, or their shapes, dtypes or values do not
        match the trace's V vertices and p parameters.
    """
    present = [k for k in LUMP_KEYS if k in arrays]
    if not present:
        return
    problem = _problem(arrays, present)
    if problem:
        raise ArtefactError(
            f"{path} holds a lumping that does not fit its trace ({problem}); delete it so "
            "it is rebuilt"
        )


def _problem(arrays: dict[str, np.ndarray], present: list[str]) -> str | None:
    """Why the stored lumping does not fit the trace, or ``None``."""
    blocks = arrays.get("lump_blocks")
    if blocks is None or blocks.shape != (1,) or blocks.dtype.kind != "i":
        return "lump_blocks is missing or not one integer"
    m = int(blocks[0])
    if m == _NONE:
        return None if present == ["lump_blocks"] else "a trace that does not lump has blocks"
    if not 1 <= m <= MAX_BLOCKS:
        return f"{m} blocks, expected 1 to {MAX_BLOCKS}"
    if len(present) != len(LUMP_KEYS):
        return f"missing {sorted(set(LUMP_KEYS) - set(present))}"
    if "order" not in arrays or "edge_coef" not in arrays:
        return "not the arrays of a trace"
    n, p = int(arrays["order"].size), int(arrays["edge_coef"].shape[1])
    block, nu, coef = arrays["lump_block"], arrays["lump_nu"], arrays["lump_coef"]
    mass = arrays["lump_start_mass"]
    if block.shape != (n,) or nu.shape != (n,):
        return f"block and nu of shapes {block.shape} and {nu.shape}, expected ({n},)"
    if coef.shape != (m, m, p):
        return f"coef of shape {coef.shape}, expected {(m, m, p)}"
    if block.dtype.kind != "i" or np.any(block < 0) or np.any(block > m):
        return f"block indices outside 0 to {m}"
    if mass.shape != (1,) or not all(a.dtype.kind == "f" for a in (nu, coef, mass)):
        return "nu, coef or start_mass not floating point"
    if not (np.all(np.isfinite(nu)) and np.all(np.isfinite(coef)) and np.isfinite(mass)):
        return "non-finite values"
    return None


def read_lumping(arrays: dict[str, np.ndarray]) -> Lumping | None:
    """The lumping recorded in trace ``arrays`` (checked by :func:`check_lumping`);
    ``None`` when the trace does not lump."""
    m = int(arrays["lump_blocks"][0])
    if m == _NONE:
        return None
    return Lumping(
        block=np.asarray(arrays["lump_block"], dtype=np.int64),
        nu=np.asarray(arrays["lump_nu"], dtype=np.float64),
        coef=np.asarray(arrays["lump_coef"], dtype=np.float64),
        n_blocks=m,
        start_mass=float(arrays["lump_start_mass"][0]),
    )
