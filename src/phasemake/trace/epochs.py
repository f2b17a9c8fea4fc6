"""Piecewise-constant histories: epochs, boundaries and events (evaluated by
:class:`phasemake.trace.epochtrace.EpochTrace`).

A model's generator is ``S(θ) = Σ_j θ_j C_j`` for its rate parameters θ. An :class:`Epochs`
history gives K epochs with boundaries ``0 < τ_1 < … < τ_{K-1}``: in epoch k the rates are
``θ_k = rates(φ)[k]``, a function of one flat vector φ of named parameters (sizes, times,
migration rates, pulse fractions), and at ``τ_k`` an optional **event** moves probability
mass between states (a split or a merger backwards in time, an admixture pulse).

See :mod:`phasemake.trace.epochtrace` for how a history is evaluated, and
``docs/epochs.md`` for worked examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from phasemake.core.errors import PhasemakeError
from phasemake.core.expressions import compile_expression

__all__ = ["Epochs", "Event", "epochs"]


def _compile(expr: Any, names: Sequence[str], where: str) -> Callable[[jax.Array], jax.Array]:
    """An expression as a function of the flat parameter vector (JAX)."""
    return compile_expression(expr, names, where, xp=jnp)


class Event(NamedTuple):
    """Mass moved at one boundary: all the mass of vertex ``src[i]`` goes, in proportion
    ``weight(φ)[i]``, to ``tgt[i]`` (graph vertex indices); other vertices keep theirs."""

    src: np.ndarray
    tgt: np.ndarray
    weight: Callable[[jax.Array], jax.Array]


class Epochs(NamedTuple):
    """A history: parameter names, the epochs' rate vectors ``rates(φ)`` (K, p), the
    boundaries ``times(φ)`` (K-1,) and one optional :class:`Event` per boundary."""

    parameters: tuple[str, ...]
    rates: Callable[[jax.Array], jax.Array]
    times: Callable[[jax.Array], jax.Array]
    events: tuple[Event | None, ...]
    n_epochs: int
    model_parameters: tuple[str, ...]
    states: np.ndarray | None = None  # the graph's states (to name them in messages)


def epochs(
    parameters: Sequence[str],
    *,
    rates: Sequence[Mapping[str, Any]],
    times: Sequence[Any] = (),
    events: Sequence[Callable[[np.ndarray], Any] | None] | None = None,
    graph: Any = None,
    model_parameters: Sequence[str] | None = None,
) -> Epochs:
    """Declare a history of K = ``len(rates)`` epochs.

    Parameters
    ----------
    parameters
        Names of the flat parameter vector φ (what NLSQ and CMC fit).
    rates
        Per epoch, the model's rate parameters as expressions of φ: ``{"coal": "c1"}``,
        ``{"coal": "1/(2*N)", "mig": 0.0}``. A rate missing from an epoch's mapping is 0.
    times
        The K-1 boundaries, increasing, as expressions (``"tau"``) or numbers.
    events
        Per boundary, ``None`` or a function ``state -> None | [(state, weight), ...]``
        where a weight is an expression (``"f"``, ``"1-f"``, ``1``); the weights of one
        state must sum to 1. Needs ``graph``.
    graph
        The model's graph (for ``events``, and for the model's rate names).
    model_parameters
        The model's rate names, in order (default: ``graph.parameters``).

    Returns
    -------
    Epochs

    Examples
    --------
    >>> h = epochs(["c1", "c2", "tau"], rates=[{"coal": "c1"}, {"coal": "c2"}],
    ...            times=["tau"], model_parameters=["coal"])
    >>> h.n_epochs, h.rates(jnp.array([2.0, 1.0, 0.5])).tolist()
    (2, [[2.0], [1.0]])
    """
    names = tuple(parameters)
    if len(set(names)) != len(names):
        raise PhasemakeError(f"epochs: duplicate parameter names in {list(names)}")
    model_names = tuple(model_parameters or (graph.parameters if graph is not None else ()))
    if not model_names:
        raise PhasemakeError("epochs: give graph= or model_parameters= (the model's rate names)")
    k = len(rates)
    if k < 1:
        raise PhasemakeError("epochs: rates has no epoch; expected one mapping per epoch")
    if len(times) != k - 1:
        raise PhasemakeError(f"epochs: {k} epochs need {k - 1} boundaries; got {len(times)}")
    table = []
    for e, mapping in enumerate(rates):
        unknown = sorted(set(mapping) - set(model_names))
        if unknown:
            raise PhasemakeError(
                f"epochs: rates[{e}] names {unknown}; the model's rates are {list(model_names)}"
            )
        table.append([_compile(mapping.get(m, 0.0), names, f"rates[{e}].{m}") for m in model_names])
    bounds = [_compile(t, names, f"times[{i}]") for i, t in enumerate(times)]

    def rate_fn(phi):
        return jnp.stack([jnp.stack([f(phi) for f in row]) for row in table])

    def time_fn(phi):
        if not bounds:
            return jnp.zeros((0,), dtype=phi.dtype)
        return jnp.stack([f(phi) for f in bounds])

    events = list(events or [None] * (k - 1))
    if len(events) != k - 1:
        raise PhasemakeError(f"epochs: {k - 1} boundaries need {k - 1} events (or None)")
    built = tuple(
        None if fn is None else _event(fn, graph, names, f"events[{i}]")
        for i, fn in enumerate(events)
    )
    states = None if graph is None else np.asarray(graph.states)
    return Epochs(names, rate_fn, time_fn, built, k, model_names, states)


def _event(fn, graph, names, where) -> Event:
    if graph is None:
        raise PhasemakeError(f"epochs: {where} needs graph= (events map the graph's states)")
    index = {tuple(s): i for i, s in enumerate(graph.states.tolist())}
    src, tgt, exprs = [], [], []
    for v, state in enumerate(graph.states):
        out = fn(state.copy())
        if out is None:
            continue
        for target, weight in out:
            key = tuple(int(x) for x in target)
            if key not in index:
                raise PhasemakeError(
                    f"epochs: {where} maps state {state.tolist()} to {list(key)}, which is not "
                    "in the graph; list it in the model's initial distribution with "
                    "probability 0 so that the graph includes it"
                )
            src.append(v)
            tgt.append(index[key])
            exprs.append(weight)
    fns = {}
    for e in exprs:
        fns.setdefault(repr(e), _compile(e, names, f"{where} weight"))
    keys = [repr(e) for e in exprs]
    order = list(fns)
    pick = np.array([order.index(k) for k in keys], dtype=np.int32)

    def weight(phi):
        if not order:
            return jnp.zeros((0,), dtype=phi.dtype)
        return jnp.stack([fns[k](phi) for k in order])[pick]

    return Event(np.asarray(src, dtype=np.int64), np.asarray(tgt, dtype=np.int64), weight)
