"""Logging for workflow jobs: one log file per job, failures logged with their traceback."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["job_log"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_log(path: str | os.PathLike[str], name: str) -> Iterator[logging.Logger]:
    """Route logging to ``path`` and yield a logger; an exception is logged, then re-raised.

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
    root = logging.getLogger()
    root.addHandler(handler)
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
        handler.close()
