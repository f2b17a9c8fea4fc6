"""NLSQ state files (JSON, checksummed) and the chunk statistics they sum: readable without
importing JAX, so the workflow walks the passes at parse time cheaply and the reducer job
(:func:`phasemake.fit.analysis.step_nlsq`) starts fast."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from phasemake.core.artefact import read_json_artefact, write_json_artefact

__all__ = ["STATE_KIND", "STATE_VERSION", "Accumulator", "read_state", "write_state"]

STATE_KIND = "phasemake.nlsq_state"
STATE_VERSION = 1


class Accumulator(NamedTuple):
    """Sufficient statistics of one pass over some rows, at one φ.

    ``jtj`` (p, p), ``jtr`` (p,), ``chi2`` (the objective), ``rr`` (``‖r‖²``, for the
    gradient test) and ``count`` (rows, or cells for the SFS).
    """

    jtj: np.ndarray
    jtr: np.ndarray
    chi2: float
    rr: float
    count: float

    @staticmethod
    def total(parts: list[Accumulator]) -> Accumulator:
        """Sum in the given order (deterministic)."""
        jtj, jtr = parts[0].jtj.copy(), parts[0].jtr.copy()
        chi2, rr, count = parts[0].chi2, parts[0].rr, parts[0].count
        for a in parts[1:]:
            jtj += a.jtj
            jtr += a.jtr
            chi2 += a.chi2
            rr += a.rr
            count += a.count
        return Accumulator(jtj, jtr, float(chi2), float(rr), float(count))


def write_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state after one pass (see :func:`phasemake.fit.nlsq.lm_update`) atomically."""
    write_json_artefact(path, kind=STATE_KIND, version=STATE_VERSION, payload=state)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified NLSQ state file."""
    return read_json_artefact(path, kind=STATE_KIND, versions=(STATE_VERSION,))
