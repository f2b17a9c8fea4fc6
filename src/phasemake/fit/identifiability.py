"""Warnings about what an NLSQ fit cannot tell: parameters the data barely constrain.

A least-squares or likelihood fit always returns numbers; the Fisher information says how
far to trust them. :func:`fit_warnings` reads it (the log-scale covariance of the fit, the
scale the fit works on) and returns plain sentences, each naming the parameters concerned
and what would help:

- **near-confounded pairs**: a log-scale correlation beyond ±0.99 (e.g. ``coal`` and
  ``mig`` of two demes whose times cannot tell fast migration from one population);
- **a near-singular information matrix** among three or more parameters (the log-scale
  correlation matrix's condition number above 10⁴), naming the parameters of its weakest
  direction;
- **weakly identified parameters**: a standard error of log θ above 1, so that the 95%
  Wald interval spans more than a factor e^3.9 ≈ 50 and its lower and upper ends are not to
  be read as limits (a plateau of the likelihood is the usual cause);
- **a fit that stopped** before its convergence test held;
- **open profile intervals**: a 95% profile-likelihood interval
  (:mod:`phasemake.fit.profile`) that does not close within its range on a side, so the
  data set no limit there whatever the Wald interval says;
- **a profile that found a better fit** than the estimate (the fit had not reached the
  optimum).

The sentences go into ``fit.json`` (``warnings``), the terminal summary and the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["BETTER_FIT", "MAX_CONDITION", "MAX_CORRELATION", "MAX_LOG_SE", "fit_warnings"]

#: |log-scale correlation| beyond which two parameters are reported as near-confounded.
MAX_CORRELATION = 0.99
#: Condition number of the log-scale correlation matrix beyond which the information is
#: near singular (p >= 3; for p = 2 it is (1 + |r|) / (1 - |r|), 199 at |r| = 0.99).
MAX_CONDITION = 1e4
#: Standard error of log θ beyond which a parameter is reported as weakly identified.
MAX_LOG_SE = 1.0

_HELP = (
    "What would help: more data, another observation type, an informative prior "
    "({priors}) or fixing a parameter ({fixed})."
)


def _help(names: Sequence[str], log_estimates: Mapping[str, float]) -> str:
    priors = "; ".join(
        f"cmc.prior.{n}: {{lognormal: {{loc: {log_estimates[n]:.3g}, scale: 1}}}}" for n in names
    )
    return _HELP.format(priors=priors, fixed=" or ".join(f"nlsq.fixed.{n}" for n in names))


def fit_warnings(
    names: Sequence[str],
    phi: Sequence[float],
    log_covariance: Any,
    *,
    status: str = "converged",
    reason: str = "",
    runaway: Sequence[Sequence[int]] = (),
    profile: Mapping[str, Any] | None = None,
) -> list[str]:
    """Sentences about the parameters an NLSQ fit barely identifies (module docstring).

    Parameters
    ----------
    names
        The free parameters, in the order of ``phi``.
    phi
        The estimate on the log scale.
    log_covariance
        The covariance of ``phi`` (``fit.json``'s ``log_covariance``).
    status, reason
        The fit's status (``converged`` or ``stopped``) and stopping reason.
    runaway
        ``[index, ±1]`` of each parameter whose next step ran off towards ±∞ (the state's
        ``runaway``, see :data:`phasemake.fit.nlsq.RUNAWAY_LOG`).
    profile
        The profile intervals (:func:`phasemake.fit.profile.profile_intervals`), if
        computed.

    Examples
    --------
    >>> cov = np.array([[0.01, -0.0995], [-0.0995, 1.0]])
    >>> for w in fit_warnings(["coal", "mig"], [0.0, -0.6], cov):
    ...     print(w[:60])
    coal and mig are nearly confounded: their log-scale correlat
    >>> fit_warnings(["coal"], [0.0], [[0.0004]])
    []
    """
    names = list(names)
    phi = np.asarray(phi, dtype=np.float64)
    cov = np.atleast_2d(np.asarray(log_covariance, dtype=np.float64))
    log_estimates = dict(zip(names, phi.tolist(), strict=True))
    out = []
    for i, sign in runaway:
        n = names[i]
        out.append(
            f"{n} runs off towards {'+' if sign > 0 else '-'}∞: the fit stopped because its "
            f"next step would take log {n} more than a factor 10⁴ from the start. The "
            "likelihood is flat that way (a plateau, e.g. two demes merging as migration "
            "grows), so the data set no limit on that side and the estimate is only the "
            "last point reached. " + _help([n], log_estimates)
        )
    if status != "converged" and not runaway:
        out.append(
            f"The fit stopped before converging ({reason or status}): its estimates and "
            "standard errors are those of the best point found, not of an optimum. Raise "
            "nlsq.max_iterations, or give nlsq.initial values nearer the truth."
        )
    out += _profile_warnings(names, phi, profile, log_estimates)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    if not np.all(np.isfinite(cov)) or np.any(se == 0):
        bad = [n for n, s in zip(names, se, strict=True) if not np.isfinite(s) or s == 0]
        out.append(
            "The information matrix is singular: no finite standard error for "
            f"{', '.join(bad) or 'some parameters'}, so the data do not determine them. "
            + _help(bad or names, log_estimates)
        )
        return out
    corr = cov / np.outer(se, se)
    flagged: set[str] = set()
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            r = float(corr[i, j])
            if abs(r) > MAX_CORRELATION:
                pair = [names[i], names[j]]
                flagged.update(pair)
                out.append(
                    f"{pair[0]} and {pair[1]} are nearly confounded: their log-scale "
                    f"correlation is {r:.3f} (beyond ±{MAX_CORRELATION}), so the data "
                    "constrain a combination of them, not each one, and their separate "
                    "intervals overstate what is known. " + _help([pair[1]], log_estimates)
                )
    if len(names) >= 3:
        eigval, eigvec = np.linalg.eigh(corr)
        condition = float(eigval[-1] / max(eigval[0], 1e-300))
        weak = [n for n, v in zip(names, eigvec[:, 0], strict=True) if abs(v) > 0.3]
        if condition > MAX_CONDITION and not set(weak) <= flagged:
            flagged.update(weak)
            out.append(
                f"The information matrix is nearly singular (log-scale correlation "
                f"condition number {condition:.3g} > {MAX_CONDITION:g}): the data barely "
                f"constrain a combination of {', '.join(weak)}. " + _help(weak, log_estimates)
            )
    for n, s, p in zip(names, se, phi, strict=True):
        if s > MAX_LOG_SE:
            with np.errstate(over="ignore"):
                factor = float(np.exp(2 * 1.959963984540054 * s))  # ∞ prints as "inf"
            out.append(
                f"{n} is weakly identified: the standard error of log {n} is {s:.3g} "
                f"(> {MAX_LOG_SE:g}), so its 95% Wald interval spans a factor of "
                f"{factor:.3g} around {np.exp(p):.3g} and its ends are not limits the data "
                "set (a flat likelihood, a plateau, is the usual cause). "
                + _help([n], log_estimates)
            )
    return out


#: A profile finding χ² lower than the fit's by more than this (units of s²) is reported.
BETTER_FIT = 0.01


def _profile_warnings(
    names: Sequence[str],
    phi: np.ndarray,
    profile: Mapping[str, Any] | None,
    log_estimates: Mapping[str, float],
) -> list[str]:
    """Sentences for open sides of profile intervals and for a better fit found."""
    if profile is None:
        return []
    out = []
    factor = profile["range"]
    for name, p in zip(names, phi, strict=True):
        if name not in profile["parameters"]:  # not profiled (a fit that did not converge)
            continue
        low, high = profile["parameters"][name]["profile"]
        open_sides = [
            (side, np.exp(p) * factor ** (1 if side == "above" else -1))
            for side, bound in (("below", low), ("above", high))
            if bound is None
        ]
        for side, edge in open_sides:
            limit = "upper" if side == "above" else "lower"
            out.append(
                f"{name}'s 95% profile-likelihood interval is open {side}: up to {name} = "
                f"{edge:.4g} (a factor {factor:g} from the estimate {np.exp(p):.4g}) the "
                "log-likelihood, maximised over the other parameters, stays within 1.92 of "
                f"its maximum, so the data set no {limit} limit on {name} (fit.json reports "
                f"that side as null; the Wald interval's {limit} end is not a limit). "
                + _help([name], log_estimates)
            )
    if profile.get("better", 0.0) > BETTER_FIT:
        out.append(
            f"A profile found a better fit than the estimate (χ² lower by "
            f"{profile['better']:.3g} in units of the scale): the fit had not reached the "
            "optimum, so its estimates and intervals are approximate. Tighten nlsq.ftol or "
            "give nlsq.initial values near the profile's best point."
        )
    return out
