"""Streaming Levenberg–Marquardt: chunk accumulators, one reducer step per pass, the fit.

One *pass* evaluates the statistics (``JᵀJ``, ``Jᵀr``, χ²; see :mod:`phasemake.data.obsmodel`)
of all rows at one point ``φ_k``, as chunk accumulators summed in a fixed order. The reducer
(:func:`lm_update`) then

1. accepts ``φ_k`` if its χ² is below the best so far — or equal to it within rounding
   (:data:`TIE`) with a smaller Gauss–Newton decrement ``(Jᵀr)ᵀ(JᵀJ)⁻¹Jᵀr``, so that
   flat directions still converge on the gradient once χ² can no longer tell points apart
   — (the damping ``λ`` is divided by ``damping_factor``), or rejects it (``λ``
   multiplied), and
2. from the best point's statistics proposes ``φ_{k+1} = φ* + δ`` with
   ``(JᵀJ + λ diag(JᵀJ)) δ = -Jᵀr`` (Marquardt's scaling), shortened so that no
   parameter moves by more than ``max_step`` on the log scale (a factor e² by default:
   a nearly unidentified direction would otherwise send the rates to absurd values).

It stops — one definition of each tolerance, all used — when

- ``ftol``: an accepted step decreased χ² by at most ``ftol · |χ²|``, and so would the
  undamped Gauss–Newton step from there, ``(Jᵀr)ᵀ (JᵀJ)⁻¹ Jᵀr ≤ ftol · |χ²|`` (MINPACK's
  test: a slow stretch of damped steps is not mistaken for convergence);
- ``gtol``: ``max_j |(Jᵀr)_j| / √((JᵀJ)_jj ‖r‖²) ≤ gtol`` (the cosine between the residual
  and every Jacobian column, as in MINPACK);
- ``xtol``: the proposed step satisfies ``‖δ‖ ≤ xtol (‖φ*‖ + xtol)``;
- ``max_iterations`` passes were made, or ``λ`` exceeded 1e16 (no decrease can be found):
  stopped without convergence, and the result says so.

The state after each pass is a small JSON document, so the workflow can run one pass per
job and resume a killed run at the pass it reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from phasemake.fit.identifiability import fit_warnings
from phasemake.fit.state import Accumulator

if TYPE_CHECKING:
    from phasemake.data.obsmodel import ObservationModel

__all__ = ["LMSettings", "covariance", "fit_in_memory", "fit_summary", "lm_update"]

MAX_DAMPING = 1e16
#: How far (log scale) a parameter may move from the fit's start before the fit stops as a
#: runaway: a factor 10⁴. The start is already on the data's scale (phasemake.fit.start), so
#: a step beyond it follows a plateau of the likelihood towards 0 or ∞, where rates would
#: soon outgrow any evaluation budget.
RUNAWAY_LOG = float(np.log(1e4))
#: Relative χ² difference treated as a tie (sums of many terms round at ~1e-16 each).
TIE = 1e-13


@dataclass(frozen=True)
class LMSettings:
    """Levenberg–Marquardt settings (the config's ``nlsq`` block)."""

    max_iterations: int = 100
    ftol: float = 1e-10
    xtol: float = 1e-10
    gtol: float = 1e-10
    damping: float = 1e-3
    damping_factor: float = 10.0
    max_step: float = 2.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LMSettings:
        known = {k: config[k] for k in asdict(cls()) if k in config}
        return cls(**known)


def _acc_json(acc: Accumulator, phi: np.ndarray) -> dict[str, Any]:
    return {
        "phi": [float(x) for x in phi],
        "jtj": acc.jtj.tolist(),
        "jtr": acc.jtr.tolist(),
        "chi2": acc.chi2,
        "rr": acc.rr,
        "count": acc.count,
    }


def _acc(best: dict[str, Any]) -> tuple[Accumulator, np.ndarray]:
    acc = Accumulator(
        np.asarray(best["jtj"]), np.asarray(best["jtr"]), best["chi2"], best["rr"], best["count"]
    )
    return acc, np.asarray(best["phi"])


def _decrement(acc: Accumulator) -> float:
    """The Gauss–Newton decrement ``(Jᵀr)ᵀ (JᵀJ)⁻¹ Jᵀr`` (predicted χ² decrease)."""
    return float(acc.jtr @ np.linalg.lstsq(acc.jtj, acc.jtr, rcond=None)[0])


def lm_update(
    previous: dict[str, Any] | None,
    phi: np.ndarray,
    acc: Accumulator,
    settings: LMSettings,
) -> dict[str, Any]:
    """The state after pass ``k``: ``previous`` is the state after pass ``k-1`` (``None``
    for the first pass), ``acc`` the statistics at the point ``phi`` it proposed.

    Returns a JSON-able dict: ``iteration``, ``status`` (``running``, ``converged`` or
    ``stopped``), ``reason``, ``best`` (point and statistics), ``damping``, ``next`` (the
    point to evaluate in the next pass, or ``None``) and ``history``.

    Examples
    --------
    >>> import numpy as np
    >>> acc = Accumulator(np.eye(1), np.array([-1.0]), 2.0, 2.0, 10.0)
    >>> s = lm_update(None, np.zeros(1), acc, LMSettings())
    >>> s["status"], round(s["next"][0], 3)
    ('running', 0.999)
    """
    k = 0 if previous is None else previous["iteration"] + 1
    start = np.asarray(phi if previous is None else previous.get("start", previous["best"]["phi"]))
    chi2 = float(acc.chi2)
    reason = None
    if previous is None:
        accepted, best, damping = True, _acc_json(acc, phi), settings.damping
        history = []
    else:
        best = previous["best"]
        damping = previous["damping"]
        history = list(previous["history"])
        finite = np.isfinite(chi2) and np.isfinite(acc.jtj).all() and np.isfinite(acc.jtr).all()
        gn = _decrement(acc) if finite else np.inf
        tied = abs(chi2 - best["chi2"]) <= TIE * abs(best["chi2"])
        accepted = bool(
            np.isfinite(chi2) and (chi2 < best["chi2"] or (tied and gn < _decrement(_acc(best)[0])))
        )
        if accepted:
            decrease = max(best["chi2"] - chi2, 0.0) / max(abs(best["chi2"]), 1e-300)
            best = _acc_json(acc, phi)
            damping = max(damping / settings.damping_factor, 1e-15)
            predicted = gn / max(abs(chi2), 1e-300)
            if max(decrease, predicted) <= settings.ftol:
                reason = (
                    f"ftol: χ² decreased by {decrease:.3g} (relative), Gauss–Newton predicts "
                    f"{predicted:.3g} more, both <= {settings.ftol}"
                )
        else:
            damping *= settings.damping_factor
    history.append(
        {
            "iteration": k,
            "chi2": chi2 if np.isfinite(chi2) else None,  # JSON has no NaN
            "accepted": accepted,
            "damping": damping,
        }
    )
    best_acc, best_phi = _acc(best)
    scale = np.sqrt(np.maximum(np.diag(best_acc.jtj), 1e-300) * max(best_acc.rr, 1e-300))
    cosine = float(np.max(np.abs(best_acc.jtr) / scale))
    step = None
    if reason is None and cosine <= settings.gtol:
        reason = f"gtol: gradient cosine {cosine:.3g} <= {settings.gtol}"
    if reason is None:
        lhs = best_acc.jtj + damping * np.diag(np.diag(best_acc.jtj))
        step = np.linalg.lstsq(lhs, -best_acc.jtr, rcond=None)[0]
        # a nearly flat direction gives a huge Gauss–Newton step: cap each rate's change
        step *= min(1.0, settings.max_step / max(float(np.max(np.abs(step))), 1e-300))
        size = float(np.linalg.norm(step))
        if size <= settings.xtol * (float(np.linalg.norm(best_phi)) + settings.xtol):
            reason = f"xtol: step {size:.3g} <= xtol (|φ| + xtol)"
    status = "converged" if reason else "running"
    runaway = []
    if step is not None and status == "running":
        moved = best_phi + step - start
        runaway = [[i, 1 if moved[i] > 0 else -1] for i in np.flatnonzero(abs(moved) > RUNAWAY_LOG)]
        if runaway:
            status = "stopped"
            reason = (
                "runaway: the next step would move log θ"
                + ", ".join(f"[{i}] by {moved[i]:+.3g}" for i, _ in runaway)
                + f" from the start (limit ±{RUNAWAY_LOG:.3g}, a factor 10⁴): a plateau"
            )
    if status == "running" and damping > MAX_DAMPING:
        status, reason = "stopped", f"damping exceeded {MAX_DAMPING:g}: no decrease found"
    if status == "running" and k + 1 >= settings.max_iterations:
        status, reason = "stopped", f"max_iterations ({settings.max_iterations}) reached"
    return {
        "iteration": k,
        "status": status,
        "reason": reason or "",
        "accepted": accepted,
        "best": best,
        "damping": damping,
        "gradient_cosine": cosine,
        "next": None if status != "running" else [float(x) for x in best_phi + step],
        "history": history,
        "start": [float(x) for x in start],
        "runaway": [[int(i), int(sign)] for i, sign in runaway],
    }


def covariance(state: dict[str, Any], *, scale_known: bool) -> tuple[np.ndarray, float]:
    """``s² (JᵀJ)⁻¹`` at the best point (log scale) and ``s²``."""
    acc, _ = _acc(state["best"])
    p = acc.jtj.shape[0]
    s2 = 1.0 if scale_known else acc.chi2 / max(acc.count - p, 1.0)
    return s2 * np.linalg.inv(acc.jtj), s2


#: The normal quantile of a central 95% interval.
WALD_Z = 1.959963984540054


def fit_summary(model: ObservationModel, state: dict[str, Any]) -> dict[str, Any]:
    """The fit: estimates and standard errors by name, covariances (θ and log scale), χ²,
    passes and the stopping reason.

    Each free parameter has ``se`` (the delta-method standard error of θ) and ``wald95``,
    the 95% Wald interval computed on log θ (the scale of the fit) and mapped back, so it
    stays positive: ``exp(log θ̂ ± 1.96 se(log θ̂))``. ``warnings`` lists, as sentences,
    the parameters the data barely identify (:func:`phasemake.fit.identifiability.fit_warnings`)."""
    cov_phi, s2 = covariance(state, scale_known=model.scale_known)
    phi = np.asarray(state["best"]["phi"])
    theta = np.exp(phi)
    cov_theta = cov_phi * np.outer(theta, theta)  # delta method for θ = exp(φ)
    se = np.sqrt(np.diag(cov_theta))
    params = {}
    free = dict(zip(model.par.free_names, range(len(phi)), strict=True))
    for name, value in zip(model.par.names, model.par.values, strict=True):
        if name in free:
            i = free[name]
            half = WALD_Z * np.sqrt(cov_phi[i, i])  # on log θ: the interval stays positive
            params[name] = {
                "estimate": float(theta[i]),
                "se": float(se[i]),
                "fixed": False,
                "wald95": [float(np.exp(phi[i] - half)), float(np.exp(phi[i] + half))],
            }
        else:
            params[name] = {"estimate": value, "se": 0.0, "fixed": True}
    return {
        "parameters": params,
        "free": list(model.par.free_names),
        "covariance": cov_theta.tolist(),
        "log_covariance": cov_phi.tolist(),
        "scale": s2,
        "chi2": state["best"]["chi2"],
        "count": state["best"]["count"],
        "passes": state["iteration"] + 1,
        "status": state["status"],
        "converged": state["status"] == "converged",
        "reason": state["reason"],
        "history": state["history"],
        "warnings": fit_warnings(
            model.par.free_names,
            phi,
            cov_phi,
            status=state["status"],
            reason=state["reason"],
            runaway=state.get("runaway", []),
        ),
    }


def fit_in_memory(
    model: ObservationModel,
    parts: Iterable[Callable[[np.ndarray], Accumulator]] | list,
    *,
    settings: LMSettings | None = None,
    phi0: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run passes in one process: ``parts`` are callables ``phi -> Accumulator`` (one per
    chunk, summed in order). The workflow runs the same passes as jobs and files."""
    settings = settings or LMSettings()
    parts = list(parts)
    phi = model.par.phi0() if phi0 is None else np.asarray(phi0)
    state = None
    while True:
        acc = Accumulator.total([part(phi) for part in parts])
        state = lm_update(state, phi, acc, settings)
        if state["status"] != "running":
            return fit_summary(model, state)
        phi = np.asarray(state["next"])
