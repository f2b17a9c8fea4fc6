"""A demes file named in the config as a model (``models.<name>.demes``).

At parse time :func:`resolve_demes_model` loads the file with :func:`phasemake.from_demes`
and returns the callback and params of its coalescent (so the graph is built and cached
like any other model's) and a ``history`` setting: the entry's settings (file, samples,
free quantities, ``sfs``, ``tolerance``) with the file's SHA-256, the parameters' names
and their values in the file. The analyses carry that setting to their jobs (a changed file changes
the digest, so Snakemake re-runs them), and each job rebuilds the history from the file
with :func:`demes_history`, refusing a file that no longer has the parsed digest.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "b.yaml").write_text(
...     "time_units: generations\\n"
...     "demes:\\n"
...     "  - name: A\\n"
...     "    epochs:\\n"
...     "      - {start_size: 2000, end_time: 300}\\n"
...     "      - {start_size: 500}\\n")
>>> model, callback, params, history = resolve_demes_model(
...     {"demes": {"file": "b.yaml", "samples": {"A": 6}, "sfs": True,
...                "free": ["A.epochs[1].start_size", "A.epochs[0].end_time"]}},
...     base_dir=d)
>>> callback, params
('phasemake.models:block_counting', {'n': 6})
>>> history["parameters"], history["theta0"]
(['A.epochs[1].start_size', 'A.epochs[0].end_time'], [500.0, 300.0])
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from phasemake.core.errors import PhasemakeError

__all__ = ["demes_history", "resolve_demes_model"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(settings: dict[str, Any], path: Path):
    from phasemake.graph.demes import from_demes

    return from_demes(
        path,
        dict(settings["samples"]),
        free=list(settings.get("free", [])),
        sfs=bool(settings.get("sfs", False)),
        tolerance=float(settings.get("tolerance", 1e-6)),
    )


def resolve_demes_model(
    entry: dict[str, Any], *, base_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """``(model, callback, params, history)`` of a ``models.<name>`` entry with ``demes``.

    Raises
    ------
    PhasemakeError
        Naming the key under ``models.<name>`` (the caller adds that prefix): a
        ``callback``, ``params`` or ``history`` beside
        ``demes``, a file that does not exist, or anything :func:`phasemake.from_demes`
        refuses (an unsupported feature, an unknown path, a deme not in the file).
    """
    where = "demes"  # the caller prefixes "config models.<name>: "
    clash = [k for k in ("callback", "params", "history") if entry.get(k)]
    if clash:
        raise PhasemakeError(
            f"{clash[0]} and demes are both given; a demes model takes its "
            "coalescent and history from the file: remove one of them"
        )
    settings = {"free": [], "sfs": False, "tolerance": 1e-6, **entry["demes"]}
    for key in ("file", "samples"):
        if not settings.get(key):
            raise PhasemakeError(
                f"{where}.{key} is missing; a demes model needs file (a demes YAML "
                "file) and samples (lineages per deme, e.g. {A: 20})"
            )
    path = Path(settings["file"])
    full = path if path.is_absolute() else Path(base_dir or ".") / path
    if not full.is_file():
        raise PhasemakeError(
            f"{where}.file: {str(path)!r} is not a file (relative paths are from the "
            "working directory); expected a demes YAML file"
        )
    settings["sha256"] = _digest(full)
    try:
        dm = _load(settings, full)
    except PhasemakeError as err:
        raise PhasemakeError(f"{where}: {err}") from None
    history = {
        "demes": settings,
        "parameters": list(dm.parameters),
        "theta0": [float(x) for x in dm.theta0],
    }
    return dm.model, dm.spec, dict(dm.params), history


def demes_history(history: dict[str, Any], graph: Any):
    """The :class:`~phasemake.trace.epochs.Epochs` of a demes model's ``history`` setting
    for its graph (in a job: the file is read from the working directory).

    Raises
    ------
    PhasemakeError
        When the file is gone or its bytes changed since the workflow was parsed.
    """
    settings = history["demes"]
    path = Path(settings["file"])
    if not path.is_file() or _digest(path) != settings["sha256"]:
        raise PhasemakeError(
            f"demes file {str(path)!r} is gone or changed since the workflow was parsed; "
            "rerun snakemake (it re-runs what the file's new contents affect)"
        )
    return _load(settings, path).history(graph)
