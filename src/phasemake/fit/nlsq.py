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
from phasemake.fit.linkage import BlockScores, robust_parameters, robust_summary
from phasemake.fit.profile import DEFAULT_RANGE, profile_intervals
from phasemake.fit.state import Accumulator

if TYPE_CHECKING:
    from phasemake.data.obsmodel import ObservationModel

__all__ = [
    "LMSettings",
    "covariance",
    "fit_in_memory",
    "fit_summary",
    "lm_update",
    "profile_state",
]

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
    out = {
        "phi": [float(x) for x in phi],
        "jtj": acc.jtj.tolist(),
        "jtr": acc.jtr.tolist(),
        "chi2": acc.chi2,
        "rr": acc.rr,
        "count": acc.count,
    }
    if acc.blocks is not None:
        out["blocks"] = acc.blocks.to_json()
    return out


def _acc(best: dict[str, Any]) -> tuple[Accumulator, np.ndarray]:
    p = len(best["phi"])
    blocks = BlockScores.from_json(best["blocks"], p) if "blocks" in best else None
    acc = Accumulator(
        np.asarray(best["jtj"]),
        np.asarray(best["jtr"]),
        best["chi2"],
        best["rr"],
        best["count"],
        blocks,
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
#: The normal quantile of a central 90% interval.
WALD_Z90 = 1.6448536269514722


def _finite_exp(x: float) -> float | None:
    """``exp(x)``, or ``None`` where it overflows (a Wald end of a runaway fit: JSON has no
    ∞)."""
    with np.errstate(over="ignore"):
        value = np.exp(x)
    return float(value) if np.isfinite(value) else None


def _wald(log_estimate: float, log_sd: float, z: float) -> list[float | None]:
    """A Wald interval on log θ mapped back to θ (positive; an overflowing end is None)."""
    return [_finite_exp(log_estimate - z * log_sd), _finite_exp(log_estimate + z * log_sd)]


def fit_summary(
    model: ObservationModel, state: dict[str, Any], *, profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fit: estimates and standard errors by name, covariances (θ and log scale), χ²,
    passes and the stopping reason.

    Each free parameter has ``se`` (the delta-method standard error of θ) and ``wald95``,
    the 95% Wald interval computed on log θ (the scale of the fit) and mapped back, so it
    stays positive: ``exp(log θ̂ ± 1.96 se(log θ̂))`` (an end beyond floating point, after
    a runaway, is ``None``), and ``wald90`` likewise. ``runaway`` names the parameters a
    fit stopped on because they ran off along a plateau. With ``profile`` (the result of
    :func:`phasemake.fit.profile.profile_intervals`), each also has ``profile``, its 95%
    profile-likelihood interval ``[low, high]`` with ``None`` for a side that stays open
    within the profile's range, and the fit has ``profile_range`` (and ``profile_skipped``,
    the reason, where no profile was computed: see :func:`profile_state`). ``warnings`` lists, as
    sentences, the parameters the data barely identify
    (:func:`phasemake.fit.identifiability.fit_warnings`).

    With the best point's block scores (:mod:`phasemake.fit.linkage`), each free parameter
    also has ``se_robust`` (the block sandwich), ``robust95``, ``variance_ratio`` and, with
    bootstrap replicates, ``bootstrap95``; ``robust`` holds the number of blocks, the
    sandwich covariance on the log scale and the overdispersion, and ``headline`` says
    which intervals the summaries lead with: ``robust`` when the analysis declares its
    rows linked (``linked``), else ``model``."""
    cov_phi, s2 = covariance(state, scale_known=model.scale_known)
    acc, _ = _acc(state["best"])
    robust = robust_summary(acc.blocks) if acc.blocks is not None else None
    phi = np.asarray(state["best"]["phi"])
    theta = np.exp(phi)
    cov_theta = cov_phi * np.outer(theta, theta)  # delta method for θ = exp(φ)
    se = np.sqrt(np.diag(cov_theta))
    params = {}
    free = dict(zip(model.par.free_names, range(len(phi)), strict=True))
    for name, value in zip(model.par.names, model.par.values, strict=True):
        if name in free:
            i = free[name]
            sd = np.sqrt(cov_phi[i, i])  # on log θ: the intervals stay positive
            params[name] = {
                "estimate": float(theta[i]),
                "se": float(se[i]),
                "fixed": False,
                "wald95": _wald(phi[i], sd, WALD_Z),
                "wald90": _wald(phi[i], sd, WALD_Z90),
            }
            if profile is not None and name in profile["parameters"]:
                params[name]["profile"] = profile["parameters"][name]["profile"]
        else:
            params[name] = {"estimate": value, "se": 0.0, "fixed": True}
    extra: dict[str, Any] = {"robust": None, "headline": "model"}
    if robust is not None:
        for name, entry in zip(free, robust_parameters(phi, cov_phi, robust), strict=True):
            params[name].update(entry)
        boot = np.asarray(robust.pop("bootstrap", []))
        extra["robust"] = {**robust, "bootstrap_replicates": int(boot.shape[0])}
        extra["headline"] = "robust" if getattr(model, "linked", False) else "model"
    if profile is not None:
        extra["profile_range"] = profile["range"]
        if profile.get("skipped"):
            extra["profile_skipped"] = profile["skipped"]
    return {
        "parameters": params,
        **extra,
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
        "runaway": [model.par.free_names[i] for i, _ in state.get("runaway", [])],
        "history": state["history"],
        "warnings": fit_warnings(
            model.par.free_names,
            phi,
            cov_phi,
            status=state["status"],
            reason=state["reason"],
            runaway=state.get("runaway", []),
            profile=profile,
        )
        + _linkage_warning(model, acc, robust),
    }


def _linkage_warning(model: ObservationModel, acc: Accumulator, robust) -> list[str]:
    """A sentence when the analysis declares linked rows but no sandwich could be made."""
    if not getattr(model, "linked", False) or robust is not None:
        return []
    blocks = "no block scores" if acc.blocks is None else f"{acc.blocks.blocks} block(s)"
    return [
        f"The rows are declared linked, but the block sandwich could not be computed "
        f"({blocks} for {len(model.par.free)} free parameter(s), or no information at the "
        "fit): the intervals are model-based and too narrow for linked rows. Use shorter "
        "blocks (linkage.block_bases or block_rows) or more data."
    ]


def fit_in_memory(
    model: ObservationModel,
    parts: Iterable[Callable[[np.ndarray], Accumulator]] | list,
    *,
    settings: LMSettings | None = None,
    phi0: np.ndarray | None = None,
    profile: bool = False,
    profile_range: float = DEFAULT_RANGE,
) -> dict[str, Any]:
    """Run passes in one process: ``parts`` are callables ``phi -> Accumulator`` (one per
    chunk, summed in order). The workflow runs the same passes as jobs and files.

    With ``profile``, the 95% profile-likelihood interval of every free parameter is added
    (followed up to a factor ``profile_range`` from the estimate; see
    :mod:`phasemake.fit.profile`), as the workflow's ``profile_nlsq`` job does."""
    settings = settings or LMSettings()
    parts = list(parts)
    phi = model.par.phi0() if phi0 is None else np.asarray(phi0)
    state = None

    def evaluate(phi):
        return Accumulator.total([part(phi) for part in parts])

    while True:
        state = lm_update(state, phi, evaluate(phi), settings)
        if state["status"] != "running":
            break
        phi = np.asarray(state["next"])
    intervals = (
        profile_state(model, state, evaluate, range_factor=profile_range, settings=settings)
        if profile
        else None
    )
    return fit_summary(model, state, profile=intervals)


def profile_state(
    model: ObservationModel,
    state: dict[str, Any],
    evaluate: Callable[[np.ndarray], Accumulator],
    *,
    range_factor: float = DEFAULT_RANGE,
    settings: LMSettings | None = None,
) -> dict[str, Any]:
    """The profile intervals (:func:`phasemake.fit.profile.profile_intervals`) around the
    best point of a final NLSQ ``state``, with ``evaluate`` giving the statistics of all
    the observations at a point.

    A fit that did not converge has no profiles (``parameters`` is empty and ``skipped``
    says why): its best point is not an optimum (after a runaway, it lies on a plateau
    where every evaluation is expensive and the profile would say nothing new)."""
    if state["status"] != "converged":
        return {
            "parameters": {},
            "evaluations": 0,
            "range": range_factor,
            "better": 0.0,
            "skipped": f"the fit did not converge ({state['reason'] or state['status']})",
        }
    cov_phi, s2 = covariance(state, scale_known=model.scale_known)
    return profile_intervals(
        evaluate,
        model.par.free_names,
        state["best"]["phi"],
        state["best"]["chi2"],
        cov_phi,
        scale=s2,
        range_factor=range_factor,
        max_step=(settings or LMSettings()).max_step,
    )
