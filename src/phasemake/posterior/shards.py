"""Splitting observations into CMC shards, and how many shards to use.

Assignment: a seeded random permutation of the rows (windows for ``sfs``), dealt round
robin, so shard sizes differ by at most one and each shard is a random sample.

Number of shards (``shards: auto``): a shard with ``n`` points costs about
``3 I (a + b n)`` multiply-adds, where ``I`` = chains × (warmup + samples) × 8 leapfrog
steps, ``a`` the per-evaluation work shared by all points (the trace: uniformisation
steps × (edges + vertices) for each of the density and survival, or one solve per SFS
class) and ``b`` the work per point (``2 × BLOCK`` Horner terms, or the SFS classes); the
3 is the cost of a gradient relative to a value. S is the smallest number of shards with
a cost ≤ ``target_work``; if the shared work alone exceeds the target, S is the number at
which the per-point work equals the shared work (more shards would mostly repeat it).
S is then capped so that every shard keeps at least ``max(min_points,
min_points_per_parameter × p)`` points (and is at least 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from phasemake.data.observations import Observations

__all__ = ["LEAPFROG_STEPS", "choose_shards", "shard", "shard_indices", "work_per_point"]

#: Leapfrog steps per NUTS iteration assumed by the cost model (tree depth 3).
LEAPFROG_STEPS = 8


def shard_indices(n_rows: int, shards: int, seed: int) -> list[np.ndarray]:
    """Row indices of each shard (sorted): a seeded permutation dealt round robin.

    Examples
    --------
    >>> [len(i) for i in shard_indices(10, 3, seed=0)]
    [4, 3, 3]
    """
    if shards < 1 or shards > max(n_rows, 1):
        raise ValueError(f"shards={shards}: expected 1 to the number of rows ({n_rows})")
    perm = np.random.default_rng([seed, 0x53484152]).permutation(n_rows)
    return [np.sort(perm[s::shards]) for s in range(shards)]


def shard(obs: Observations, index: int, shards: int, seed: int) -> Observations:
    """Shard ``index`` of ``shards`` of ``obs``."""
    rows = shard_indices(obs.n_rows, shards, seed)[index]
    return Observations(obs.kind, {k: v[rows] for k, v in obs.columns.items()})


def work_per_point(
    kind: str, *, budget: int, n_edges: int, n_vertices: int, n_classes: int | None, block: int
) -> tuple[float, float]:
    """``(a, b)``: multiply-adds of one log-likelihood evaluation shared by all points,
    and per point (see the module docstring)."""
    if kind == "absorption_times":
        return 2.0 * budget * (n_edges + n_vertices), 2.0 * block
    return float(n_classes) * (n_edges + n_vertices), 3.0 * float(n_classes)


def choose_shards(
    *,
    points: int,
    parameters: int,
    shared: float,
    per_point: float,
    iterations: int,
    target_work: float,
    min_points: int,
    min_points_per_parameter: int,
) -> dict[str, Any]:
    """The number of shards by the rule of the module docstring, with its inputs.

    Examples
    --------
    >>> choose_shards(points=20000, parameters=2, shared=7.7e5, per_point=256,
    ...               iterations=16000, target_work=1e11, min_points=500,
    ...               min_points_per_parameter=100)["shards"]
    4
    """
    floor = max(min_points, min_points_per_parameter * parameters)
    cap = max(1, points // floor)
    per_shard = target_work / (3.0 * iterations) - shared  # point work one shard may hold
    if per_shard > per_point:
        wanted = math.ceil(points * per_point / per_shard)
        rule = "smallest S with 3 I (a + b N/S) <= target_work"
    else:
        wanted = math.ceil(points * per_point / shared)
        rule = "shared work a exceeds the target: S with b N/S = a"
    shards = int(min(max(wanted, 1), cap))
    return {
        "shards": shards,
        "rule": rule,
        "wanted": int(wanted),
        "cap": int(cap),
        "points": int(points),
        "parameters": int(parameters),
        "min_points_per_shard": int(floor),
        "shared_work": float(shared),
        "work_per_point": float(per_point),
        "iterations": int(iterations),
        "target_work": float(target_work),
        "work_per_shard": 3.0 * iterations * (shared + per_point * math.ceil(points / shards)),
    }
