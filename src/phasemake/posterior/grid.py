"""A grid posterior for one or two free parameters: the reference the draws are checked
against.

With p ≤ 2 free parameters the full-data posterior on φ = log θ can be evaluated on a
tensor grid (``points`` per axis, 61 by default) and normalised numerically: no sampler,
no Markov chain, so nothing to under-sample. The combine step (``cmc.grid: true``)

1. centres the grid on the draws' median and spans ± ``GRID_SDS`` (8) of their standard
   deviations on each axis (at least ± 1 on log θ), and widens it (× 2, up to
   ``MAX_WIDENINGS`` times) while more than ``EDGE_MASS`` of the mass lies in the outer
   cells of an axis (a tail the draws did not reach);
2. evaluates the full-data log posterior there, one line of the grid per call (a line
   shares its last coordinate, so the uniformisation budget follows the rates of that
   line instead of the largest in the box);
3. compares the draws with it (:func:`compare_with_draws`): for each parameter, the grid's
   mass beyond the draws' 2.5% and 97.5% quantiles must be 0.025 within the Monte Carlo
   error of a quantile from ``tail ESS`` draws (three standard errors) plus the grid's own
   resolution (:data:`GRID_TOL`). A posterior that fails is reported with the reason, in
   the summary's ``warnings`` and the report, never silently kept.

Marginal quantiles are read from the cumulative mass of the cells, linear in φ within a
cell; with 61 points over ± 8 sd that is about 0.27 sd per cell, so quantiles are good to
a few hundredths of a posterior sd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "EDGE_MASS",
    "GRID_SDS",
    "GRID_TOL",
    "GridPosterior",
    "compare_with_draws",
    "grid_check",
    "grid_posterior",
]

#: Half-width of the first grid, in standard deviations of the draws on each axis.
GRID_SDS = 8.0
#: Mass in the two outermost cells of an axis above which the grid is widened.
EDGE_MASS = 1e-4
MAX_WIDENINGS = 3
#: Allowance for the grid's resolution in a tail probability.
GRID_TOL = 0.005
#: The tails compared: mass below the lower and above the upper quantile of the draws.
TAIL = 0.025


class GridPosterior(NamedTuple):
    """A normalised posterior on a tensor grid of φ = log θ."""

    axes: list[np.ndarray]  # per parameter, the φ values of the grid
    mass: np.ndarray  # (points,) * p, summing to 1
    failed: int  # grid points whose log density was not finite (mass 0)

    def marginal(self, i: int) -> np.ndarray:
        """The mass of each grid value of parameter ``i``."""
        other = tuple(j for j in range(self.mass.ndim) if j != i)
        return self.mass.sum(axis=other) if other else self.mass

    def cdf(self, i: int, phi: float) -> float:
        """P(φ_i ≤ ``phi``), each point's mass spread evenly over its cell."""
        axis, mass = self.axes[i], self.marginal(i)
        edges = np.concatenate([[axis[0]], 0.5 * (axis[1:] + axis[:-1]), [axis[-1]]])
        frac = np.clip((phi - edges[:-1]) / np.maximum(np.diff(edges), 1e-300), 0.0, 1.0)
        return float(np.sum(mass * frac))

    def quantile(self, i: int, q: float) -> float:
        """The θ value (not φ) below which the mass of parameter ``i`` is ``q``."""
        axis, mass = self.axes[i], self.marginal(i)
        edges = np.concatenate([[axis[0]], 0.5 * (axis[1:] + axis[:-1]), [axis[-1]]])
        cum = np.concatenate([[0.0], np.cumsum(mass)])
        return float(np.exp(np.interp(q, cum, edges)))

    def edge_mass(self, i: int) -> float:
        m = self.marginal(i)
        return float(m[0] + m[-1])


def grid_posterior(
    log_density: Callable[[np.ndarray], np.ndarray],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    points: int = 61,
) -> GridPosterior:
    """Evaluate ``log_density`` (points (n, p) → (n,)) on the tensor grid from ``lows`` to
    ``highs`` (φ scale, p ≤ 2) and normalise it.

    Examples
    --------
    >>> def normal(phi):  # a standard normal on φ
    ...     return -0.5 * np.sum(phi**2, axis=1)
    >>> g = grid_posterior(normal, [-8.0], [8.0], points=161)
    >>> round(float(np.log(g.quantile(0, 0.975))), 2)
    1.96
    """
    p = len(lows)
    if p not in (1, 2):
        raise ValueError(f"a grid posterior needs 1 or 2 free parameters, not {p}")
    axes = [np.linspace(lo, hi, points) for lo, hi in zip(lows, highs, strict=True)]
    if p == 1:
        values = np.asarray(log_density(axes[0][:, None]), dtype=np.float64)
    else:
        lines = []
        for y in axes[1]:  # one line per call: a budget for the rates of that line
            line = np.column_stack([axes[0], np.full(points, y)])
            lines.append(np.asarray(log_density(line), dtype=np.float64))
        values = np.stack(lines, axis=1)  # (x, y)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("the log density is not finite anywhere on the grid")
    values = np.where(finite, values, -np.inf)
    mass = np.exp(values - values.max())
    return GridPosterior(axes, mass / mass.sum(), int((~finite).sum()))


def compare_with_draws(
    grid: GridPosterior,
    phi: np.ndarray,
    names: Sequence[str],
    *,
    ess_tail: Sequence[float],
    weights: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The grid's view of the draws ``phi`` ((n, p), optionally weighted): per parameter
    the grid's 95% interval and the grid's mass beyond the draws' 2.5% and 97.5%
    quantiles, with the tolerance; returns that record and one sentence per disagreement.

    Examples
    --------
    >>> def normal(phi):
    ...     return -0.5 * np.sum(phi**2, axis=1)
    >>> g = grid_posterior(normal, [-8.0], [8.0], points=161)
    >>> truncated = np.random.default_rng(0).normal(size=(4000, 1)).clip(-1, 1)
    >>> record, problems = compare_with_draws(g, truncated, ["mig"], ess_tail=[4000])
    >>> problems[0][:58]
    'the draws of mig disagree with the grid posterior in the l'
    """
    phi = np.asarray(phi).reshape(-1, len(names))
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    record: dict[str, Any] = {}
    problems = []
    for i, name in enumerate(names):
        x = phi[:, i]
        order = np.argsort(x)
        cw = np.arange(1, x.size + 1) / x.size if w is None else np.cumsum(w[order]) / w.sum()
        lo, hi = (float(x[order][np.searchsorted(cw, q)]) for q in (TAIL, 1 - TAIL))
        below, above = grid.cdf(i, lo), 1.0 - grid.cdf(i, hi)
        se = float(np.sqrt(TAIL * (1 - TAIL) / max(float(ess_tail[i]), 1.0)))
        tol = 3 * se + GRID_TOL
        record[name] = {
            "grid95": [grid.quantile(i, TAIL), grid.quantile(i, 1 - TAIL)],
            "draws95": [float(np.exp(lo)), float(np.exp(hi))],
            "grid_mass_below": below,
            "grid_mass_above": above,
            "tolerance": tol,
            "edge_mass": grid.edge_mass(i),
        }
        for side, mass, q in (("lower", below, lo), ("upper", above, hi)):
            if abs(mass - TAIL) > tol:
                where = "below" if side == "lower" else "above"
                problems.append(
                    f"the draws of {name} disagree with the grid posterior in the {side} "
                    f"tail: the grid puts {mass:.3f} of its mass {where} the draws' "
                    f"{'2.5' if side == 'lower' else '97.5'}% quantile {np.exp(q):.4g} "
                    f"(expected {TAIL} ± {tol:.3f}); the grid's 95% interval is "
                    f"[{record[name]['grid95'][0]:.4g}, {record[name]['grid95'][1]:.4g}]. "
                    "The sampler "
                    + ("under-samples" if mass > TAIL else "over-weights")
                    + " that tail: read the grid's interval, or give an informative prior "
                    f"(cmc.prior.{name}) or more data."
                )
    return record, problems


def grid_check(
    log_density: Callable[[np.ndarray], np.ndarray],
    phi: np.ndarray,
    names: Sequence[str],
    *,
    ess_tail: Sequence[float],
    weights: np.ndarray | None = None,
    points: int = 61,
) -> tuple[dict[str, Any], list[str]]:
    """The combine step's check (module docstring): the grid around the draws, widened
    until its edges hold no mass, then :func:`compare_with_draws`. Returns the record for
    the summary (``grid``) and the sentences for its ``warnings``."""
    flat = np.asarray(phi).reshape(-1, len(names))
    center = np.median(flat, axis=0)
    half = np.maximum(GRID_SDS * flat.std(axis=0), 1.0)
    widened = 0
    while True:
        grid = grid_posterior(log_density, center - half, center + half, points=points)
        wide = [grid.edge_mass(i) > EDGE_MASS for i in range(len(names))]
        if not any(wide) or widened == MAX_WIDENINGS:
            break
        half = np.where(wide, 2.0 * half, half)
        widened += 1
    record, problems = compare_with_draws(grid, flat, names, ess_tail=ess_tail, weights=weights)
    for i, name in enumerate(names):
        if grid.edge_mass(i) > EDGE_MASS:
            problems.append(
                f"the grid posterior of {name} still has {grid.edge_mass(i):.2g} of its mass "
                f"at the edges of θ ∈ [{np.exp(center[i] - half[i]):.3g}, "
                f"{np.exp(center[i] + half[i]):.3g}] after {widened} widenings: the "
                "posterior is improper or extremely wide there (a plateau of the likelihood "
                f"under a flat prior); give an informative prior (cmc.prior.{name})."
            )
    summary = {
        "points": int(points),
        "lows": np.exp(center - half).tolist(),
        "highs": np.exp(center + half).tolist(),
        "widenings": widened,
        "failed_points": grid.failed,
        "parameters": record,
        "agrees": not problems,
    }
    return summary, problems
