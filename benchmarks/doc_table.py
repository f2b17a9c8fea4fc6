"""Write what a benchmark script prints to docs/performance/<script>.md as well.

The documentation's Performance page includes these files, so its numbers are always the
last run of a script, never typed by hand; their history is in git. Each file's first line
names the command that produced it, the date and the machine (CPUs as ``nproc`` counts
them, CPU model, and the load average when the run started). The file is written only
when the script finishes without an error, to a temporary name first and then renamed
into place, so a failed or interrupted run leaves the previous table as it was.

Usage, in a script's ``__main__`` block::

    with recorded("graph_build"):
        main()
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "performance"


class _Tee(io.TextIOBase):
    """A stdout that also keeps a copy of everything written to it."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """``N CPUs (nproc), <model>``: the CPUs this process may use, as ``nproc`` counts."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 0
    return f"{cpus} CPUs (nproc), {cpu_model()}"


def load() -> str:
    """The 1-minute load average, where the system reports one."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


def command(script: str) -> str:
    """The command line that ran the script, as run from the repository root."""
    return shlex.join(["python", f"benchmarks/{script}.py", *sys.argv[1:]])


def render(
    script: str,
    printed: str,
    *,
    when: datetime.datetime | None = None,
    load_before: str | None = None,
) -> str:
    """The Markdown file: a line naming command, date and machine, then the printed text."""
    when = when or datetime.datetime.now(datetime.UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    busy = f" (load average {load_before} when it started)" if load_before else ""
    first = f"Written by `{command(script)}` on {stamp}, on {machine()}{busy}."
    return f"{first}\n\n```text\n{printed.rstrip()}\n```\n"


def write(script: str, text: str, directory: Path = DOCS) -> Path:
    """Write ``text`` to ``directory/<script>.md`` atomically (temporary file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{script}.md"
    fd, tmp = tempfile.mkstemp(prefix=f".{script}.", suffix=".md.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the docs are for everyone
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


@contextlib.contextmanager
def recorded(script: str) -> Iterator[None]:
    """Print as usual; when the block ends without an error, also write the printed text
    to docs/performance/<script>.md."""
    before = load()
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.stream
    path = write(script, render(script, tee.copy.getvalue(), load_before=before))
    print(f"table written to {path.relative_to(REPO)}", file=sys.stderr)
