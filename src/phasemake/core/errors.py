"""Exception types raised by phasemake.

Every error message names the offending value, says what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ArtefactError",
    "DataError",
    "GraphBuildError",
    "ModelError",
    "PhasemakeError",
    "SpecHashError",
]


class PhasemakeError(Exception):
    """Base class of all errors raised by phasemake."""


class ModelError(PhasemakeError, ValueError):
    """A model declaration or callback reference is invalid."""


class SpecHashError(PhasemakeError, TypeError):
    """A callback spec cannot be hashed safely (no source, unencodable value, eval/exec)."""


class GraphBuildError(PhasemakeError, ValueError):
    """The callback produced an invalid transition, or the state space exceeded its cap."""


class ArtefactError(PhasemakeError, OSError):
    """An artefact file is missing, corrupt, foreign, or of an unsupported format version."""


class DataError(PhasemakeError, ValueError):
    """Observations are invalid: the message names the file, the row and the column."""
