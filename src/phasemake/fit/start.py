"""Scale-free starting points: the NLSQ start adapted to the scale of the data.

Phase-type rates are per unit of time, and the unit is the data's: coalescence times in
generations (msprime's default, values ~1e4), years or coalescent units. A fixed start
(θ = 1) is then off by orders of magnitude, and the first LM steps can propose points
where the likelihood underflows. The default start therefore matches the data's scale:

``absorption_times``
    Every free rate without an ``nlsq.initial`` value is scaled by the same factor ``c``
    so that the model's mean absorption time matches the data's (weighted) mean:
    scaling all rates by ``c`` divides E[T] by ``c``, so ``c = E_θ₀[T] / mean(t)`` with
    ``θ₀`` the config's values (1 where none is given). Censored times count at their
    censoring time, so with heavy censoring the start is a little fast; LM corrects it.
``sfs``
    The mutation scaling, when free and without an initial value, by Watterson's
    estimator: ``mutation = S / (L · E_θ₀[total branch length])`` with ``S`` the number of
    segregating sites and ``L`` the sites of all windows; the model's rates keep their
    values (on their own they are not identified by the SFS's scale).

The estimates are then in the data's units: a rate fitted to times in generations is per
generation. Values given in ``nlsq.initial`` are always used as they are.

Examples
--------
>>> from phasemake import build_graph, compile_trace
>>> from phasemake.models import kingman
>>> graph = build_graph(kingman, n=4)
>>> start = start_values("absorption_times", compile_trace(graph), graph.states,
...                      {"mean_time": 15000.0}, initial={}, fixed={})
>>> round(start["coal"] * 15000.0, 9)  # E[T] at coal = 1 is 2 (1 - 1/4) = 1.5
1.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["start_values"]


def start_values(
    kind: str,
    trace: Any,
    states: np.ndarray,
    moments: Mapping[str, float],
    *,
    initial: Mapping[str, float],
    fixed: Mapping[str, float],
) -> dict[str, float]:
    """Starting values (θ scale) of the free parameters without an ``initial`` value,
    matched to the data's scale (see the module docstring); ``{}`` when the data give no
    usable scale (no moments, a zero mean, no segregating site).

    Parameters
    ----------
    kind
        ``"absorption_times"`` or ``"sfs"``.
    trace
        The model's :class:`phasemake.Trace`.
    states
        The graph's states (``sfs``: the first n-1 columns are the branch-class rewards).
    moments
        :func:`phasemake.data.observations.observation_moments` of the data.
    initial, fixed
        The analysis's ``nlsq.initial`` and ``nlsq.fixed``.
    """
    from phasemake.data.obsmodel import MUTATION

    names = tuple(trace.parameters)
    theta0 = np.array([float(fixed.get(n, initial.get(n, 1.0))) for n in names])
    if kind == "absorption_times":
        if getattr(trace, "history", None) is not None:
            # a history mixes rates, sizes, times and fractions: no single factor rescales
            # it, so its start is nlsq.initial (1 where none is given)
            return {}
        mean = moments.get("mean_time")
        adapt = [n for n in names if n not in fixed and n not in initial]
        if not mean or not adapt:
            return {}
        c = float(trace.expectation(theta0)) / float(mean)
        values = {n: c * float(theta0[names.index(n)]) for n in adapt}
    else:
        segregating, sites = moments.get("segregating"), moments.get("sites")
        if MUTATION in fixed or MUTATION in initial or not segregating or not sites:
            return {}
        n_classes = states.shape[1] - 1
        rewards = states[:, :n_classes].astype(np.float64)
        length = float(np.sum(trace.expectation(theta0, rewards)))
        values = {MUTATION: float(segregating) / (float(sites) * length)}
    return {n: v for n, v in values.items() if math.isfinite(v) and v > 0}
