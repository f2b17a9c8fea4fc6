"""Logging for workflow jobs: one log file per job, failures logged with their traceback,
and a few progress lines on the terminal.

Everything a job logs goes to its log file (``logs/<rule>/...log``). Records logged with
``extra={"progress": True}`` (a sampler's iterations, an NLSQ pass's χ²) also go to the
job's standard error, which Snakemake shows on the terminal, at most one every
``PHASEMAKE_PROGRESS_SECONDS`` seconds a job (default 30; 0 prints none), each prefixed
with the job's log path (``sample_shard/times/S4/shard0``), so the lines of jobs running
side by side can be told apart. Warnings and errors always go there too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PROGRESS", "job_log"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: ``log.info(..., extra=PROGRESS)`` marks a progress line for the terminal.
PROGRESS = {"progress": True}


class _Progress(logging.Filter):
    """Warnings and errors, and progress records at most one every ``interval`` seconds
    (the first always)."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval, self.last = interval, -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if not getattr(record, "progress", False) or self.interval <= 0:
            return False
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


def _job_name(path: str | os.PathLike[str]) -> str:
    """``logs/sample_shard/times/S4/shard0.log`` -> ``sample_shard/times/S4/shard0``."""
    parts = Path(path).with_suffix("").parts
    return "/".join(parts[parts.index("logs") + 1 :] if "logs" in parts else parts[-2:])


@contextlib.contextmanager
def job_log(path: str | os.PathLike[str], name: str) -> Iterator[logging.Logger]:
    """Route logging to ``path`` (and progress to standard error) and yield a logger; an
    exception is logged, then re-raised.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "job.log"
    >>> with job_log(path, "demo") as log:
    ...     log.info("hello")
    >>> "INFO demo: hello" in path.read_text()
    True
    """
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    interval = float(os.environ.get("PHASEMAKE_PROGRESS_SECONDS", "30"))
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter(f"[{_job_name(path)}] %(message)s"))
    terminal.addFilter(_Progress(interval))
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(terminal)
    root.setLevel(logging.INFO)
    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is not news
    log = logging.getLogger(name)
    try:
        yield log
    except BaseException:
        log.exception("%s failed", name)
        raise
    finally:
        root.removeHandler(handler)
        root.removeHandler(terminal)
        handler.close()
