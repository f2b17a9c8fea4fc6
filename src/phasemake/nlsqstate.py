"""NLSQ state files (JSON, checksummed): readable without importing JAX, so the workflow
can walk the passes at parse time cheaply."""

from __future__ import annotations

import os
from typing import Any

from .artefact import read_json_artefact, write_json_artefact

__all__ = ["STATE_KIND", "STATE_VERSION", "read_state", "write_state"]

STATE_KIND = "phasemake.nlsq_state"
STATE_VERSION = 1


def write_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state after one pass (see :func:`phasemake.nlsq.lm_update`) atomically."""
    write_json_artefact(path, kind=STATE_KIND, version=STATE_VERSION, payload=state)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified NLSQ state file."""
    return read_json_artefact(path, kind=STATE_KIND, versions=(STATE_VERSION,))
