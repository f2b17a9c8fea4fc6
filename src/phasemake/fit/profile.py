"""Profile-likelihood intervals of an NLSQ fit: constrained refits, a root-finder on the
deviance, and open sides reported as open.

A Wald interval reads the curvature at the estimate; where the likelihood is not quadratic
(a plateau, a ridge towards a boundary of the model) it can be badly wrong. The profile of
parameter ``j`` is the best fit with ``log θ_j`` held at ``ψ``; its deviance

``D(ψ) = (χ²(ψ, φ̂_{-j}(ψ)) − χ²_min) / s²``

(``χ² = −2 log L`` for absorption times, with ``s² = 1``; the Poisson deviance for the SFS,
with the fit's estimated scale ``s²``) is compared with ``χ²₁(0.95) = 3.841``. The 95%
interval is ``{ψ : D(ψ) ≤ 3.841}``, followed outwards from the estimate on each side.

For each parameter and side, :func:`profile_bound`

1. steps outwards from ``ψ̂``, first by the Wald half-width, then by secant extrapolation of
   the signed root ``r(ψ) = √D(ψ)`` (linear in ``ψ`` where the likelihood is quadratic),
   at most quadrupling the step; at each ``ψ`` the other parameters are refitted by
   Levenberg–Marquardt on the same chunk statistics (``JᵀJ``, ``Jᵀr``, χ²) as the fit,
   restricted to them, starting from the previous point's values moved along the fit's
   conditional-mean direction;
2. once ``r`` crosses ``z = 1.96``, brackets the crossing and closes it by regula falsi
   on ``r`` (bisection while the outer end is far beyond ``z`` or one end stays put)
   until ``|r − z| ≤ 10⁻³`` (``D`` within 0.004 of 3.841);
3. reports the side as **open** (``None``) if ``ψ`` reaches ``ψ̂ ± log(range)`` (a factor
   ``range`` from the estimate, 100 by default) with ``D`` still below 3.841: the data set
   no limit that side within the range, and no finite number is reported for it. The
   refitted parameters stay within the same factor of their estimates (a refit that needs
   more ends at the edge, which can only make ``D`` larger, so the side closes sooner:
   the range is part of the interval's definition, and ``fit.json`` records it).

A point whose evaluation fails (a rate too large for the uniformisation budget raises
``ValueError``) counts as χ² = ∞: outside the interval, or a rejected refit step.

Every evaluation is one call of ``evaluate(φ) → Accumulator`` (in the workflow, one
streamed pass over the observations), made in a fixed order, so the intervals are the same
bytes whatever the number of cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from phasemake.fit.state import Accumulator

__all__ = ["CHI2_95", "DEFAULT_RANGE", "ProfileSide", "profile_bound", "profile_intervals"]

#: The 0.95 quantile of χ² with one degree of freedom.
CHI2_95 = 3.841458820694124
#: How far (a factor either side of the estimate) a profile is followed by default, and
#: how far the other parameters may move in its refits: four orders of magnitude in all.
DEFAULT_RANGE = 100.0
#: |r − z| at which a crossing counts as found.
ROOT_TOL = 1e-3
#: Gauss–Newton decrement (in units of s²) at which a constrained refit counts as converged.
REFIT_TOL = 1e-4
MAX_POINTS = 40
MAX_REFIT = 60


class ProfileSide(NamedTuple):
    """One side of a profile interval.

    ``bound`` is the end of the interval on θ's scale, or ``None`` if the profile did not
    cross 3.841 within the range; ``points`` the ``(ψ, D)`` pairs visited (``ψ = log θ``);
    ``evaluations`` the calls of ``evaluate``; ``better`` the largest decrease of χ² below
    the fit's (in units of s²) met on the way (a profile that finds a better fit means the
    fit had not reached the optimum).
    """

    bound: float | None
    points: list[tuple[float, float]]
    evaluations: int
    better: float


def _safe(evaluate: Callable[[np.ndarray], Accumulator], phi: np.ndarray) -> Accumulator:
    """``evaluate(phi)``, or χ² = ∞ where the rates are beyond the evaluation's budget."""
    try:
        return evaluate(phi)
    except ValueError:
        p = phi.size
        return Accumulator(np.zeros((p, p)), np.zeros(p), np.inf, np.inf, 0.0)


def _refit(
    evaluate: Callable[[np.ndarray], Accumulator],
    phi: np.ndarray,
    j: int,
    *,
    scale: float,
    max_step: float,
    box: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, float, int]:
    """Levenberg–Marquardt over every parameter but ``j`` (held at ``phi[j]``), from ``phi``,
    within ``box`` (low and high log θ). Returns the refitted point, its χ² and the
    evaluations made."""
    acc = _safe(evaluate, phi)
    calls = 1
    others = np.array([i for i in range(phi.size) if i != j], dtype=int)
    if others.size == 0 or not np.isfinite(acc.chi2):
        return phi, float(acc.chi2), calls
    best, best_acc, damping = phi, acc, 1e-3
    for _ in range(MAX_REFIT):
        a = best_acc.jtj[np.ix_(others, others)]
        g = best_acc.jtr[others]
        decrement = float(g @ np.linalg.lstsq(a, g, rcond=None)[0])
        if decrement <= REFIT_TOL * scale or damping > 1e16:
            break
        step = np.linalg.lstsq(a + damping * np.diag(np.diag(a)), -g, rcond=None)[0]
        step *= min(1.0, max_step / max(float(np.max(np.abs(step))), 1e-300))
        trial = best.copy()
        trial[others] = np.clip(trial[others] + step, box[0][others], box[1][others])
        t_acc = _safe(evaluate, trial)
        calls += 1
        if np.isfinite(t_acc.chi2) and t_acc.chi2 < best_acc.chi2:
            best, best_acc, damping = trial, t_acc, max(damping / 10.0, 1e-15)
        else:
            damping *= 10.0
    return best, float(best_acc.chi2), calls


def profile_bound(
    evaluate: Callable[[np.ndarray], Accumulator],
    phi_hat: Sequence[float],
    chi2_min: float,
    log_covariance: Any,
    j: int,
    side: int,
    *,
    scale: float = 1.0,
    range_factor: float = DEFAULT_RANGE,
    max_step: float = 2.0,
) -> ProfileSide:
    """The end of the 95% profile interval of parameter ``j`` on ``side`` (−1 or +1).

    Parameters
    ----------
    evaluate
        ``φ ↦`` the accumulated statistics of all observations at ``φ = log θ``.
    phi_hat, chi2_min, log_covariance
        The fit: its estimate (log scale), χ² and log-scale covariance.
    j, side
        The parameter (index into ``phi_hat``) and the side of its interval.
    scale
        ``s²``: 1 for a likelihood, the fit's estimated scale for the SFS.
    range_factor
        How far the profile is followed: ``ψ`` stays within a factor ``range_factor`` of
        the estimate; a side that has not crossed by then is open.
    max_step
        Largest change of a refitted log θ in one Levenberg–Marquardt step.

    Examples
    --------
    A Gaussian log-likelihood in log θ (χ² = ((φ − 1)/0.5)²) has the interval 1 ± 1.96·0.5:

    >>> def evaluate(phi):
    ...     r = (phi[0] - 1.0) / 0.5
    ...     return Accumulator(np.array([[4.0]]), np.array([2.0 * r]), r * r, r * r, 1.0)
    >>> side = profile_bound(evaluate, [1.0], 0.0, [[0.25]], 0, +1)
    >>> round(float(np.log(side.bound)), 4)
    1.98
    """
    phi_hat = np.asarray(phi_hat, dtype=np.float64)
    cov = np.atleast_2d(np.asarray(log_covariance, dtype=np.float64))
    z = float(np.sqrt(CHI2_95))
    limit = float(phi_hat[j] + side * np.log(range_factor))
    var = float(cov[j, j])
    # the other parameters' conditional mean moves by cov[:, j] / cov[j, j] per unit of ψ
    direction = cov[:, j] / var if np.isfinite(var) and var > 0 else np.zeros(phi_hat.size)
    direction[j] = 0.0
    if not np.all(np.isfinite(direction)):
        direction = np.zeros(phi_hat.size)
    half = z * np.sqrt(var) if np.isfinite(var) and var > 0 else 1.0
    step = float(np.clip(half, 1e-3, np.log(range_factor)))
    box = (phi_hat - np.log(range_factor), phi_hat + np.log(range_factor))

    # the other parameters refitted at ψ̂ itself: a lower χ² there means the fit is not
    # at the optimum (reported as ``better``)
    point, chi2, calls = _refit(
        evaluate, phi_hat.copy(), j, scale=scale, max_step=max_step, box=box
    )
    deviance = (chi2 - chi2_min) / scale if np.isfinite(chi2) else 0.0
    better = max(0.0, -deviance)
    points: list[tuple[float, float]] = [(float(phi_hat[j]), float(deviance))]
    below = (float(phi_hat[j]), 0.0, point)  # ψ, r, point: the last point inside
    above: tuple[float, float, np.ndarray] | None = None
    psi, stale = float(phi_hat[j]) + side * step, 0
    for _ in range(MAX_POINTS):
        move = np.clip(direction * (psi - below[0]), -max_step, max_step)
        start = np.clip(below[2] + move, *box)
        start[j] = psi
        point, chi2, n = _refit(evaluate, start, j, scale=scale, max_step=max_step, box=box)
        calls += n
        deviance = (chi2 - chi2_min) / scale if np.isfinite(chi2) else np.inf
        better = max(better, -deviance)
        points.append((psi, float(deviance)))
        r = float(np.sqrt(max(deviance, 0.0)))
        if abs(r - z) <= ROOT_TOL:
            return ProfileSide(float(np.exp(psi)), points, calls, better)
        if r > z:
            above, stale = (psi, r, point), (stale + 1 if above is not None else 0)
        else:
            prev = below
            below, stale = (psi, r, point), 0
            if above is None and psi == limit:
                return ProfileSide(None, points, calls, better)
        if above is None:  # still inside: step outwards, by the secant of r where it rises
            slope = (r - prev[1]) / abs(psi - prev[0])
            grow = 4.0 * abs(psi - prev[0])
            step = grow if slope <= 0 else float(np.clip((z - r) / slope, 1e-3, grow))
            psi = float(np.clip(psi + side * step, min(psi, limit), max(psi, limit)))
            continue
        # bracketed: regula falsi on r while r is near-linear there, else bisection
        if abs(above[0] - below[0]) <= 1e-9:
            return ProfileSide(float(np.exp(0.5 * (above[0] + below[0]))), points, calls, better)
        if above[1] > 2.0 * z or stale >= 2:
            frac, stale = 0.5, 0
        else:
            frac = (z - below[1]) / (above[1] - below[1])
        psi = below[0] + float(np.clip(frac, 0.02, 0.98)) * (above[0] - below[0])
    # out of points: the crossing lies between the last points inside and outside
    bound = None if above is None else float(np.exp(0.5 * (below[0] + above[0])))
    return ProfileSide(bound, points, calls, better)


def profile_intervals(
    evaluate: Callable[[np.ndarray], Accumulator],
    names: Sequence[str],
    phi_hat: Sequence[float],
    chi2_min: float,
    log_covariance: Any,
    *,
    scale: float = 1.0,
    range_factor: float = DEFAULT_RANGE,
    max_step: float = 2.0,
) -> dict[str, Any]:
    """The 95% profile interval of every free parameter (see the module docstring).

    Returns ``{"parameters": {name: {"profile": [low, high], "points": ...}},
    "evaluations": n, "range": range_factor, "better": d}``: ``low`` and ``high`` on θ's
    scale, ``None`` for an open side; ``better`` the largest χ² decrease below the fit's
    found by any profile (units of s²).

    Examples
    --------
    >>> def evaluate(phi):
    ...     r = (phi[0] - 1.0) / 0.5
    ...     return Accumulator(np.array([[4.0]]), np.array([2.0 * r]), r * r, r * r, 1.0)
    >>> out = profile_intervals(evaluate, ["rate"], [1.0], 0.0, [[0.25]])
    >>> [round(float(np.log(x)), 3) for x in out["parameters"]["rate"]["profile"]]
    [0.02, 1.98]
    """
    out: dict[str, Any] = {}
    calls, better = 0, 0.0
    for j, name in enumerate(names):
        sides = [
            profile_bound(
                evaluate,
                phi_hat,
                chi2_min,
                log_covariance,
                j,
                side,
                scale=scale,
                range_factor=range_factor,
                max_step=max_step,
            )
            for side in (-1, +1)
        ]
        calls += sum(s.evaluations for s in sides)
        better = max(better, *(s.better for s in sides))
        points = sorted(sides[0].points + sides[1].points[1:])
        out[name] = {
            "profile": [sides[0].bound, sides[1].bound],
            # JSON has no ∞: a point whose evaluation failed has deviance null
            "points": [[float(np.exp(p)), d if np.isfinite(d) else None] for p, d in points],
        }
    return {"parameters": out, "evaluations": calls, "range": range_factor, "better": better}
