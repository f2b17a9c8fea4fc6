"""CMC shard plan files (JSON, checksummed): readable without importing JAX, so the
workflow can read the number of shards at parse time cheaply."""

from __future__ import annotations

import os
from typing import Any

from phasemake.core.artefact import read_json_artefact, write_json_artefact

__all__ = ["SHARD_PLAN_KIND", "SHARD_PLAN_VERSION", "read_shard_plan", "write_shard_plan"]

SHARD_PLAN_KIND = "phasemake.shard_plan"
SHARD_PLAN_VERSION = 1


def write_shard_plan(path: str | os.PathLike[str], plan: dict[str, Any]) -> None:
    """Write a plan of :func:`phasemake.posterior.cmc.plan_shards` atomically."""
    write_json_artefact(path, kind=SHARD_PLAN_KIND, version=SHARD_PLAN_VERSION, payload=plan)


def read_shard_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified shard plan: ``shards`` (S), how it was chosen, points per shard."""
    return read_json_artefact(path, kind=SHARD_PLAN_KIND, versions=(SHARD_PLAN_VERSION,))
