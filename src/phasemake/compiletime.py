"""Seconds JAX spends compiling in this process, from ``jax.monitoring`` events.

Tracing, lowering to MLIR and the XLA backend compile (a persistent-cache hit is counted
as the lookup it is) are separate phases, so their durations add up without overlap. In
threads, compilations that run concurrently each count in full (CPU time, not wall time).

Examples
--------
>>> import jax
>>> start_counting()
>>> _ = jax.jit(lambda x: x + 1)(1.0)
>>> compile_seconds() > 0
True
"""

from __future__ import annotations

import threading

__all__ = ["EVENTS", "compile_seconds", "start_counting"]

#: The ``jax.monitoring`` duration events counted.
EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)

_lock = threading.Lock()
_total: dict[int | None, float] = {None: 0.0}  # by thread id; None: all threads
_listening = threading.Event()


def _listen(event: str, duration: float, **_: object) -> None:
    if event in EVENTS:
        me = threading.get_ident()  # the listener runs in the compiling thread
        with _lock:
            _total[None] += duration
            _total[me] = _total.get(me, 0.0) + duration


def start_counting() -> None:
    """Register the listener (once per process); later compilations are counted."""
    from jax import monitoring

    with _lock:
        if not _listening.is_set():
            monitoring.register_event_duration_secs_listener(_listen)
            _listening.set()


def compile_seconds(*, this_thread: bool = False) -> float:
    """Seconds counted since :func:`start_counting`, in all threads or in this one."""
    with _lock:
        return _total.get(threading.get_ident() if this_thread else None, 0.0)
