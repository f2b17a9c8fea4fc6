"""The model protocol: a decorated Python callback that enumerates transitions.

A model is ``callback(state, **params) -> list of (next_state, coefficients)``. ``state`` is
an integer vector (passed as a read-only ``numpy.ndarray`` of ``int64``), ``next_state`` any
integer sequence of the same length, and ``coefficients`` a length-p sequence: the rate of
the transition is ``coefficients @ theta`` for the p declared parameters ``theta``. An empty
list means the state is absorbing.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from phasemake.core.errors import ModelError

__all__ = ["Model", "as_model", "model", "normalise_initial"]

InitialSpec = Any  # a state, a list of (state, probability), or a callable of the params


class Model:
    """A callback together with its declared parameters and initial distribution.

    Create instances with the :func:`model` decorator rather than directly.

    Attributes
    ----------
    callback
        The undecorated function ``callback(state, **params)``.
    parameters
        Names of the p parameters; the coefficient vectors are in this order.
    initial
        A state, a list of ``(state, probability)`` pairs, or a callable taking (a subset
        of) the construction params and returning one of those.
    name
        Defaults to the callback's ``__name__``.
    """

    def __init__(
        self,
        callback: Callable[..., Any],
        *,
        parameters: Sequence[str],
        initial: InitialSpec,
        name: str | None = None,
    ) -> None:
        if not callable(callback):
            raise ModelError(
                f"the model callback {callback!r} is not callable; decorate a function "
                "`def callback(state, **params)` with @phasemake.model(...)"
            )
        if isinstance(parameters, str) or not isinstance(parameters, Sequence):
            raise ModelError(
                f"parameters={parameters!r} for model {callback.__name__!r} must be a list "
                'of parameter names, e.g. parameters=["coal", "mig"]'
            )
        names = tuple(parameters)
        bad = [p for p in names if not (isinstance(p, str) and p.isidentifier())]
        if bad or not names:
            raise ModelError(
                f"parameters={list(names)!r} for model {callback.__name__!r} must be a "
                "non-empty list of identifiers, e.g. parameters=['coal', 'mig']"
            )
        if len(set(names)) != len(names):
            raise ModelError(
                f"parameters={list(names)!r} for model {callback.__name__!r} contains "
                "duplicates; give each parameter one unique name"
            )
        if initial is None:
            raise ModelError(
                f"model {callback.__name__!r} has no initial distribution; pass "
                "initial=<state>, initial=[(state, probability), ...] or a function of the "
                "construction params"
            )
        self.callback = callback
        self.parameters = names
        self.initial = initial
        self.name = name or getattr(callback, "__name__", "model")
        functools.update_wrapper(self, callback)

    def __call__(self, state: Any, **params: Any) -> Any:
        return self.callback(state, **params)

    def __repr__(self) -> str:
        return f"<phasemake.Model {self.name!r} parameters={list(self.parameters)}>"

    def initial_distribution(self, **params: Any) -> list[tuple[tuple[int, ...], float]]:
        """The normalised initial distribution for the given construction params.

        Examples
        --------
        >>> @model(parameters=["coal"], initial=lambda n: [n])
        ... def kingman(state, n):
        ...     return []
        >>> kingman.initial_distribution(n=4)
        [((4,), 1.0)]
        """
        return normalise_initial(self.initial, params, model_name=self.name)


def model(
    *, parameters: Sequence[str], initial: InitialSpec, name: str | None = None
) -> Callable[[Callable[..., Any]], Model]:
    """Declare a phase-type model callback.

    Parameters
    ----------
    parameters
        Names of the p rate parameters θ. Each transition's coefficient vector has length
        p (a plain number is accepted when p = 1) and its rate is ``coefficients · θ``.
    initial
        The initial distribution: one state (``[n, 0, 0]``), a list of
        ``(state, probability)`` pairs, or a function of (some of) the construction params
        returning either. Probabilities must be non-negative and sum to at most 1 (a sum
        below 1 puts the remaining mass on immediate absorption).
    name
        Optional display name; defaults to the function name.

    Returns
    -------
    Callable
        A decorator turning ``callback(state, **params)`` into a :class:`Model`.

    Examples
    --------
    >>> import phasemake
    >>> @phasemake.model(parameters=["coal"], initial=lambda n: [n])
    ... def kingman(state, n):
    ...     k = int(state[0])
    ...     return [([k - 1], [k * (k - 1) / 2])] if k > 1 else []
    >>> kingman([3], n=3)
    [([2], [3.0])]
    """

    def decorate(fn: Callable[..., Any]) -> Model:
        return Model(fn, parameters=parameters, initial=initial, name=name)

    return decorate


def as_model(obj: Any, *, what: str = "callback") -> Model:
    """Return ``obj`` if it is a :class:`Model`, else raise a :class:`ModelError`."""
    if isinstance(obj, Model):
        return obj
    label = getattr(obj, "__qualname__", repr(obj))
    raise ModelError(
        f"{what} {label!r} is not a phasemake model; decorate it with "
        "@phasemake.model(parameters=[...], initial=...) so its parameters and initial "
        "distribution are declared"
    )


def _call_with_accepted(fn: Callable[..., Any], params: dict[str, Any]) -> Any:
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(**params)
    accepted = {k: v for k, v in params.items() if k in sig.parameters}
    return fn(**accepted)


def _as_state(obj: Any) -> tuple[int, ...] | None:
    """``obj`` as a tuple of ints if it is a flat integer sequence, else None."""
    if isinstance(obj, np.ndarray):
        if obj.ndim != 1 or obj.dtype.kind not in "iub":
            return None
        return tuple(int(x) for x in obj.tolist())
    if isinstance(obj, (list, tuple)) and all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in obj
    ):
        return tuple(int(x) for x in obj)
    return None


def normalise_initial(
    initial: InitialSpec, params: dict[str, Any], *, model_name: str = "model"
) -> list[tuple[tuple[int, ...], float]]:
    """Normalise an initial-distribution declaration to ``[(state, probability), ...]``.

    Duplicated states are merged; probabilities are validated (finite, non-negative,
    summing to at most 1 + 1e-12).

    Examples
    --------
    >>> normalise_initial([([2, 0], 0.5), ([1, 1], 0.5)], {})
    [((2, 0), 0.5), ((1, 1), 0.5)]
    """
    value = _call_with_accepted(initial, params) if callable(initial) else initial
    hint = (
        "expected a state (a flat list of ints, e.g. [4, 0]) or a list of "
        "(state, probability) pairs, e.g. [([4, 0], 0.5), ([0, 4], 0.5)]"
    )
    state = _as_state(value)
    if state is not None and len(state) > 0:
        return [(state, 1.0)]
    if not isinstance(value, (list, tuple)) or not value:
        raise ModelError(f"initial distribution of model {model_name!r} is {value!r}; {hint}")
    merged: dict[tuple[int, ...], float] = {}
    for item in value:
        ok = isinstance(item, (list, tuple)) and len(item) == 2
        s = _as_state(item[0]) if ok else None
        if s is None or not s or isinstance(item[1], bool):
            raise ModelError(
                f"initial distribution of model {model_name!r} has entry {item!r}; {hint}"
            )
        try:
            prob = float(item[1])
        except (TypeError, ValueError):
            raise ModelError(
                f"initial distribution of model {model_name!r} has probability "
                f"{item[1]!r} for state {list(s)}; expected a number in [0, 1]"
            ) from None
        if not math.isfinite(prob) or prob < 0:
            raise ModelError(
                f"initial distribution of model {model_name!r} has probability {prob!r} "
                f"for state {list(s)}; expected a finite number in [0, 1]"
            )
        merged[s] = merged.get(s, 0.0) + prob
    lengths = {len(s) for s in merged}
    if len(lengths) > 1:
        raise ModelError(
            f"initial distribution of model {model_name!r} mixes state lengths "
            f"{sorted(lengths)}; every state must have the same length"
        )
    total = math.fsum(merged.values())
    if total > 1 + 1e-12 or total <= 0:
        raise ModelError(
            f"initial probabilities of model {model_name!r} sum to {total!r}; they must be "
            "positive and sum to at most 1"
        )
    return [(s, p) for s, p in merged.items() if p > 0]
