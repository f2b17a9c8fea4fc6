"""Parse-time check of an analysis's result files: a corrupt, truncated or foreign one is
removed so that the next run recomputes it (and what depends on it), instead of a job
failing on it with "delete it".

The observations and the NLSQ passes have checks of their own
(:func:`phasemake.fit.analysis.discard_foreign_observations`,
:func:`phasemake.fit.state.check_passes`); this module covers what the passes lead to: the
fit, its profile, the shard plan, the shard posteriors, the consensus and the full-data
comparison. Each file is read with the same verification its readers make (format, version
and checksum). No JAX is imported: the formats are named here, and a unit test checks them
against the stages' own constants.
"""

from __future__ import annotations

import os
from pathlib import Path

from phasemake.core.artefact import read_artefact, read_json_artefact
from phasemake.core.errors import ArtefactError

__all__ = ["RESULT_FORMATS", "discard_invalid_results"]

#: Result files under ``results/<analysis>/`` (glob patterns) and their format and versions.
RESULT_FORMATS: dict[str, tuple[str, tuple[int, ...]]] = {
    "nlsq/fit.json": ("phasemake.fit", (1,)),
    "nlsq/profile.json": ("phasemake.profile", (1,)),
    "cmc/plan.json": ("phasemake.shard_plan", (1,)),
    "cmc/S*/shard*.h5": ("phasemake.shard_posterior", (1,)),
    "cmc/consensus.h5": ("phasemake.consensus_posterior", (1,)),
    "cmc/consensus.json": ("phasemake.consensus_summary", (1,)),
    "cmc/compare_full.json": ("phasemake.posterior_comparison", (1,)),
}


def _problem(path: Path, kind: str, versions: tuple[int, ...]) -> str | None:
    try:
        if path.suffix == ".json":
            read_json_artefact(path, kind=kind, versions=versions)
        else:
            read_artefact(path, kind=kind, versions=versions)
    except ArtefactError as err:
        return str(err).split("; delete it")[0]
    return None


def discard_invalid_results(folder: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Verify the result files of one analysis (``results/<analysis>``); remove the invalid
    ones so that Snakemake recomputes them (a dry run only reports). Returns one message
    per invalid file.

    Examples
    --------
    >>> import tempfile
    >>> discard_invalid_results(tempfile.mkdtemp())
    []
    """
    folder = Path(folder)
    messages = []
    for pattern, (kind, versions) in RESULT_FORMATS.items():
        for path in sorted(folder.glob(pattern)):
            problem = _problem(path, kind, versions)
            if problem is None:
                continue
            if dry_run:
                messages.append(f"{problem} (dry run: not removed; a real run recomputes it)")
                continue
            path.unlink(missing_ok=True)
            messages.append(f"{problem}; removed it so it is recomputed")
    return messages
