"""Seconds JAX spends compiling in this process, from ``jax.monitoring`` events, and what
the persistent compilation cache did.

Tracing, lowering to MLIR and the XLA backend compile (a persistent-cache hit is counted
as the lookup it is) are separate phases, so their durations add up without overlap. In
threads, compilations that run concurrently each count in full (CPU time, not wall time).
A program found in the persistent cache is a *hit*; one compiled and written to it a
*miss*. Tracing and lowering happen in every process: the cache saves only the XLA
compile.

Examples
--------
>>> import jax
>>> start_counting()
>>> _ = jax.jit(lambda x: x + 1)(1.0)
>>> compile_seconds() > 0
True
>>> sorted(cache_counts())
['hits', 'misses']
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

__all__ = [
    "CACHE_EVENTS",
    "EVENTS",
    "AtomicFileCache",
    "JobClock",
    "cache_counts",
    "cache_summary",
    "compile_seconds",
    "phase_seconds",
    "process_seconds",
    "start_counting",
    "use_atomic_file_cache",
]

log = logging.getLogger(__name__)

#: The ``jax.monitoring`` duration events counted, by phase.
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
    "/jax/core/compile/backend_compile_duration": "backend",
}
#: The ``jax.monitoring`` events of the persistent compilation cache.
CACHE_EVENTS = {
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "misses",
}

_lock = threading.Lock()
_total: dict[int | None, float] = {None: 0.0}  # by thread id; None: all threads
_phases: dict[str, float] = dict.fromkeys(EVENTS.values(), 0.0)
_counts: dict[str, int] = dict.fromkeys(CACHE_EVENTS.values(), 0)
_listening = threading.Event()


def _listen(event: str, duration: float, **_: object) -> None:
    if event in EVENTS:
        me = threading.get_ident()  # the listener runs in the compiling thread
        with _lock:
            _total[None] += duration
            _total[me] = _total.get(me, 0.0) + duration
            _phases[EVENTS[event]] += duration


def _count(event: str, **_: object) -> None:
    if event in CACHE_EVENTS:
        with _lock:
            _counts[CACHE_EVENTS[event]] += 1


def start_counting() -> None:
    """Register the listeners (once per process); later compilations are counted."""
    from jax import monitoring

    with _lock:
        if not _listening.is_set():
            monitoring.register_event_duration_secs_listener(_listen)
            monitoring.register_event_listener(_count)
            _listening.set()


def compile_seconds(*, this_thread: bool = False) -> float:
    """Seconds counted since :func:`start_counting`, in all threads or in this one."""
    with _lock:
        return _total.get(threading.get_ident() if this_thread else None, 0.0)


def phase_seconds() -> dict[str, float]:
    """Seconds of tracing, lowering and backend compilation (or cache lookup) so far."""
    with _lock:
        return dict(_phases)


def cache_counts() -> dict[str, int]:
    """Persistent-cache hits and misses so far (both 0 when the cache is not enabled)."""
    with _lock:
        return dict(_counts)


def cache_summary() -> str:
    """One line for a job log: compile seconds by phase and the cache's hits and misses."""
    phases, counts = phase_seconds(), cache_counts()
    return (
        f"compilation {sum(phases.values()):.2f} CPU s (tracing {phases['tracing']:.2f}, "
        f"lowering {phases['lowering']:.2f}, XLA or cache lookup {phases['backend']:.2f}); "
        f"persistent cache {counts['hits']} hits, {counts['misses']} misses"
    )


def process_seconds() -> float | None:
    """Seconds since this process started (from ``/proc``; None where there is none), so a
    script can tell the interpreter's start-up apart from its own imports."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class JobClock:
    """A job script's fixed cost: the interpreter's start (Snakemake's preamble included),
    the script's imports and JAX compilation, against the job's whole time.

    Take ``time.perf_counter()`` on the script's first line and pass it here after the
    imports (everything before it counts as the interpreter's start); log :meth:`summary`
    at the end.

    Examples
    --------
    >>> start = time.perf_counter()  # the script's first line
    >>> clock = JobClock(start)  # after the imports
    >>> clock.summary().startswith("fixed cost")
    True
    """

    def __init__(self, start: float | None = None) -> None:
        now = time.perf_counter()
        self.start = now if start is None else start
        self.imports = now - self.start
        age = process_seconds()
        self.python_start = 0.0 if age is None else max(age - self.imports, 0.0)

    def fixed(self) -> dict[str, float]:
        """Seconds of Python start, imports, compilation (CPU), their sum, and the job."""
        compile_s = compile_seconds()
        total = self.python_start + time.perf_counter() - self.start
        fixed = self.python_start + self.imports + compile_s
        return {
            "python_start": self.python_start,
            "imports": self.imports,
            "compile": compile_s,
            "fixed": fixed,
            "total": total,
        }

    def summary(self) -> str:
        """One line for the job log."""
        f = self.fixed()
        return (
            f"fixed cost {f['fixed']:.2f} s = Python start {f['python_start']:.2f} s + imports "
            f"{f['imports']:.2f} s + {cache_summary()}; job {f['total']:.2f} s "
            f"(fixed {f['fixed'] / max(f['total'], 1e-9):.0%})"
        )


class AtomicFileCache:
    """JAX's persistent compilation cache on disk, written so that no reader ever sees a
    partial entry: each entry is written to a temporary file in the same folder, synced
    and renamed into place. JAX 0.10's own file cache writes entries in place, so a full
    disk, a quota or a killed job leaves truncated entries that every later job warns
    about (and another job may read one half written).

    An entry that cannot be read back (truncated or corrupt: it does not decompress) is
    dropped and counts as a miss, so the job compiles again and writes it anew. A write
    that fails (a full disk, a read-only shared cache) is skipped with an INFO line: the
    job goes on with the program it compiled. Entries are JAX's own format, so a process
    with JAX's default cache reads them too.

    Examples
    --------
    >>> import tempfile
    >>> cache = AtomicFileCache(tempfile.mkdtemp())
    >>> cache.get("k") is None
    True
    """

    SUFFIX = "-cache"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        try:
            self._path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a read-only cache without its jax folder: only misses
            log.info("persistent compilation cache %s: %s; nothing is cached", path, err)

    def _entry(self, key: str) -> Path:
        if not key:
            raise ValueError("key cannot be empty")
        return self._path / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> bytes | None:
        """The entry's bytes, or None when it is missing or cannot be read back."""
        path = self._entry(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.info("persistent compilation cache: cannot read %s (%s); compiling", path, err)
            return None
        if _readable(data):
            return data
        log.info("persistent compilation cache: %s is truncated or corrupt; dropped", path)
        try:
            path.unlink()
        except OSError:  # a read-only cache: recompiled in every job, harmless
            pass
        return None

    def put(self, key: str, value: bytes) -> None:
        """Write the entry (temporary file, fsync, rename); an existing one is kept."""
        path = self._entry(key)
        if path.exists():
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self._path)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
                fh.flush()
                os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a shared cache needs more
            os.replace(tmp, path)
        except OSError as err:
            log.info("persistent compilation cache: %s not written (%s)", path, err)
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _readable(data: bytes) -> bool:
    """Whether an entry decompresses (a truncated zstd or zlib stream does not)."""
    from jax._src import compilation_cache

    try:
        compilation_cache.extract_executable_and_time(compilation_cache.decompress_executable(data))
    except Exception:  # zstd, zlib and struct each raise their own
        return False
    return True


def use_atomic_file_cache(directory: str | os.PathLike[str]) -> AtomicFileCache:
    """Make :class:`AtomicFileCache` in ``directory`` JAX's persistent compilation cache
    (after ``compilation_cache.reset_cache()``, before anything compiles)."""
    from jax._src import compilation_cache

    cache = AtomicFileCache(directory)
    with compilation_cache._cache_initialized_mutex:
        compilation_cache._cache = cache
        compilation_cache._cache_initialized = True
    return cache
