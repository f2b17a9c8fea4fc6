"""Results without a browser: a terminal summary of every analysis, and an export to CSV and
NetCDF.

``phasemake summary`` prints, per analysis, the NLSQ estimates with their standard errors and
95% Wald intervals, the posterior means and 95% intervals (where the analysis has a
posterior), the truth where the config gives one, and a status line (converged or not,
the consensus rule and refinement). ``phasemake export ANALYSIS`` writes the same numbers
as ``estimates.csv``, the consensus draws as ``draws.csv`` (θ scale, with importance weights
when the consensus was refined) and ``posterior.nc`` (ArviZ ``InferenceData``).

Only verified files are read (:mod:`phasemake.core.artefact`); an analysis whose fit is
missing is listed as not run yet.

Examples
--------
>>> import math
>>> rows = [["coal", 1.0, 0.01], ["mig", 0.25, math.nan]]
>>> print(format_table(["parameter", "estimate", "se"], rows))
parameter  estimate    se
coal              1  0.01
mig            0.25     –
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from phasemake.core.artefact import atomic_path
from phasemake.core.errors import PhasemakeError
from phasemake.report.tables import format_profile, read_fit, read_posterior_summary

__all__ = [
    "AnalysisResult",
    "closing_lines",
    "export_analysis",
    "find_results",
    "format_table",
    "summary_text",
    "watterson_theta",
]


class AnalysisResult(NamedTuple):
    """What the results folder holds for one analysis (``None``: not written yet)."""

    name: str
    fit: dict[str, Any] | None
    posterior: dict[str, Any] | None


def find_results(
    results: str | os.PathLike[str] = "results", *, analyses: Sequence[str] = ()
) -> list[AnalysisResult]:
    """The analyses under ``results`` (every folder, or only ``analyses``), in name order.

    Raises
    ------
    PhasemakeError
        If an analysis named in ``analyses`` has no folder under ``results``.
    """
    root = Path(results)
    names = list(analyses) or sorted(p.name for p in root.glob("*") if p.is_dir())
    found = []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            known = sorted(p.name for p in root.glob("*") if p.is_dir())
            raise PhasemakeError(
                f"no results for analysis {name!r} under {root}/; expected one of {known} "
                "(run snakemake first, or pass --results DIR)"
            )
        fit_path = folder / "nlsq" / "fit.json"
        post_path = folder / "cmc" / "consensus.json"
        fit = read_fit(fit_path) if fit_path.exists() else None
        post = read_posterior_summary(post_path) if post_path.exists() else None
        found.append(AnalysisResult(name, fit, post))
    return found


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, str):
        return x
    return f"{x:.4g}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned; numbers
    with 4 significant digits, missing or non-finite values as ``–``."""
    cells = [list(header)] + [[_num(c) if i else str(c) for i, c in enumerate(r)] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _interval(lo: Any = None, hi: Any = None) -> str:
    return f"[{_num(lo)}, {_num(hi)}]"


def _nlsq_interval(p: dict[str, Any]) -> str:
    """The fit's 95% interval of a free parameter: the profile's, else Wald's."""
    if "profile" in p:
        return format_profile(p["profile"])
    return _interval(*p.get("wald95", []))


def _rows(result: AnalysisResult) -> tuple[list[str], list[list[Any]]]:
    header = ["parameter", "NLSQ estimate", "se", "Wald 95%"]
    linked = result.fit.get("headline") == "robust"  # linked rows: the sandwich leads
    if linked:
        header += ["robust se", "robust 95%"]
    profiled = any("profile" in p for p in result.fit["parameters"].values())
    if profiled:
        header.append("profile 95%")
    post = result.posterior
    truth = (post or {}).get("truth", {})
    if post:
        header += ["posterior mean", "sd", "95% interval"]
    if truth:
        header += ["truth", "in 95%"]
    rows = []
    for name, p in result.fit["parameters"].items():
        if p["fixed"]:
            rows.append([name, p["estimate"], "fixed", *[""] * (len(header) - 3)])
            continue
        wald = p.get("wald95")
        row: list[Any] = [name, p["estimate"], p["se"], _interval(*wald) if wald else "–"]
        if linked:
            row += [p.get("se_robust", "–"), _interval(*p.get("robust95", []))]
        if profiled:
            row.append(format_profile(p["profile"]) if "profile" in p else "–")
        if post:
            q = post["parameters"][name]
            quantiles = q["quantiles"]
            lo, hi = quantiles.get("0.025"), quantiles.get("0.975")
            row += [q["mean"], q["sd"], _interval(lo, hi)]
        if truth:
            t = truth.get(name)
            inside = None if t is None else t.get("in_95")
            row += [t["true"] if t else "", {True: "yes", False: "NO"}.get(inside, "–")]
        rows.append(row)
    return header, rows


#: The derived row of an SFS fit: in the summary, and in ``estimates.csv`` (ASCII).
THETA_ROW, THETA_CSV = "θ=4Neμ/site", "theta_4Nemu_per_site"

#: The normal quantile of a central 95% interval.
_Z95 = 1.959963984540054


def watterson_theta(fit: dict[str, Any]) -> tuple[float, float, list[float]] | None:
    """θ = 4Neμ per site of an SFS fit, ``2 · mutation / coal``: with ``coal`` the rate at
    which a pair of lineages coalesces (1/(2Ne) per generation) and ``mutation`` the
    expected mutations per site per unit of time, a pair's expected differences per site
    is ``2 · mutation / coal`` = 4Neμ. Returns the estimate, its standard error and 95%
    interval (delta method on the log scale), or ``None`` without both parameters.

    Examples
    --------
    >>> fit = {"parameters": {"coal": {"estimate": 1.0, "fixed": True},
    ...                       "mutation": {"estimate": 0.001, "fixed": False}},
    ...        "free": ["mutation"], "log_covariance": [[0.0004]]}
    >>> estimate, se, _ = watterson_theta(fit)
    >>> round(estimate, 12), round(se, 12)
    (0.002, 4e-05)
    """
    params = fit["parameters"]
    if "mutation" not in params or "coal" not in params:
        return None
    estimate = 2 * params["mutation"]["estimate"] / params["coal"]["estimate"]
    free = list(fit.get("free", []))
    cov = np.asarray(fit.get("log_covariance", [[0.0]]))
    grad = np.zeros(len(free))  # d log θ / d log(free parameters)
    for name, sign in (("mutation", 1.0), ("coal", -1.0)):
        if name in free:
            grad[free.index(name)] = sign
    log_se = float(np.sqrt(max(grad @ cov @ grad, 0.0))) if len(free) else 0.0
    interval = [estimate * math.exp(-_Z95 * log_se), estimate * math.exp(_Z95 * log_se)]
    return estimate, estimate * log_se, interval


def _status(result: AnalysisResult) -> str:
    fit = result.fit
    state = "converged" if fit["converged"] else f"NOT converged ({fit['status']})"
    passes = fit["passes"]
    line = f"NLSQ {state} after {passes} pass{'' if passes == 1 else 'es'}"
    post = result.posterior
    if post is None:
        return line + "; no posterior"
    line += f"; posterior: {post['rule']} consensus of {post['shards']} shard(s)"
    line += _sampler(post.get("shard_diagnostics") or [])
    refinement = post.get("refinement")
    if refinement:
        applied = refinement.get("applied")
        line += ", refined" if applied else ", not refined"
        if refinement.get("pareto_k") is not None:
            line += f" (Pareto k {refinement['pareto_k']:.2f})"
    return line


def _sampler(diagnostics: Sequence[dict[str, Any]]) -> str:
    """The shards' worst sampler diagnostics: max R-hat, min bulk and tail ESS (over
    parameters and shards), divergent transitions in all."""
    if not diagnostics:
        return ""

    def worst(key: str, pick) -> float | None:
        values = [v for d in diagnostics for v in d.get(key) or []]
        return pick(values) if values else None

    parts = []
    for label, key, pick, fmt in (
        ("R-hat ≤", "r_hat", max, "{:.3f}"),
        ("bulk ESS ≥", "ess_bulk", min, "{:.0f}"),
        ("tail ESS ≥", "ess_tail", min, "{:.0f}"),
    ):
        value = worst(key, pick)
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
    parts.append(f"{sum(int(d.get('divergences', 0)) for d in diagnostics)} divergent")
    return f" ({', '.join(parts)})"


def summary_text(results: Sequence[AnalysisResult]) -> str:
    """The terminal summary of ``results`` (see the module docstring)."""
    blocks = []
    for r in results:
        if r.fit is None:
            blocks.append(f"{r.name}: not fitted yet (no nlsq/fit.json)")
            continue
        header, rows = _rows(r)
        theta = watterson_theta(r.fit)
        if theta is not None:
            est, se, (lo, hi) = theta
            rows.append([THETA_ROW, est, se, _interval(lo, hi)] + [""] * (len(header) - 4))
        block = f"{r.name}: {_status(r)}\n{format_table(header, rows)}"
        for warning in r.fit.get("warnings", []):
            block += f"\nwarning: {warning}"
        for warning in (r.posterior or {}).get("warnings", []):
            block += f"\nposterior warning: {warning}"
        blocks.append(block)
    return "\n\n".join(blocks) if blocks else "no analyses found"


def closing_lines(results: Sequence[AnalysisResult]) -> list[str]:
    """One line per fitted analysis for the end of a run: each free parameter's estimate
    and 95% interval (the posterior's where there is one, else the profile likelihood's,
    else Wald's), and the status.

    Examples
    --------
    >>> fit = {"parameters": {"coal": {"estimate": 1.02, "se": 0.03, "fixed": False,
    ...        "wald95": [0.96, 1.08]}}, "converged": True, "status": "converged",
    ...        "passes": 5}
    >>> closing_lines([AnalysisResult("times", fit, None)])
    ['times: coal 1.02 [0.96, 1.08] (NLSQ converged after 5 passes; no posterior)']
    """
    lines = []
    for r in results:
        if r.fit is None:
            continue
        parts = []
        for name, p in r.fit["parameters"].items():
            if p["fixed"]:
                continue
            if r.posterior:
                q = r.posterior["parameters"][name]
                lo, hi = q["quantiles"].get("0.025"), q["quantiles"].get("0.975")
                parts.append(f"{name} {_num(q['mean'])} {_interval(lo, hi)}")
            else:
                parts.append(f"{name} {_num(p['estimate'])} {_nlsq_interval(p)}")
        line = f"{r.name}: {', '.join(parts)} ({_status(r)})"
        warned = len(r.fit.get("warnings", [])) + len((r.posterior or {}).get("warnings", []))
        if warned:
            line += f"; {warned} warning{'' if warned == 1 else 's'}: phasemake summary {r.name}"
        lines.append(line)
    return lines


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def export_analysis(
    analysis: str,
    *,
    results: str | os.PathLike[str] = "results",
    out: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write ``estimates.csv``, and with a posterior ``draws.csv`` and ``posterior.nc``, of
    one analysis into ``out`` (default ``results/<analysis>/export``); returns the paths.

    ``draws.csv`` holds the sample the posterior's numbers come from: after refinement the
    importance sample with a ``weight`` column (normalised), else the consensus draws.
    ``posterior.nc`` (ArviZ) holds the consensus draws as chains, unweighted, for chain
    diagnostics and plots. SFS fits add the derived row ``theta_4Nemu_per_site``.

    Raises
    ------
    PhasemakeError
        If the analysis has no fit yet.
    """
    (result,) = find_results(results, analyses=[analysis])
    if result.fit is None:
        raise PhasemakeError(
            f"analysis {analysis!r} has no fit yet ({Path(results) / analysis}/nlsq/fit.json "
            "is missing); run snakemake first"
        )
    folder = Path(out) if out is not None else Path(results) / analysis / "export"
    folder.mkdir(parents=True, exist_ok=True)
    quantiles = ("0.025", "0.05", "0.5", "0.95", "0.975")
    header = ["parameter", "fixed", "estimate", "se", "wald95_low", "wald95_high"]
    header += ["profile95_low", "profile95_high"]  # empty: fixed, or open on that side
    header += ["se_robust", "robust95_low", "robust95_high"]  # the block sandwich
    post = result.posterior
    if post:
        header += ["posterior_mean", "posterior_sd", *(f"q{q}" for q in quantiles)]
    rows = []
    for name, p in result.fit["parameters"].items():
        wald = p.get("wald95") or [None, None]
        row = [name, p["fixed"], p["estimate"], p["se"], *wald, *p.get("profile", [None, None])]
        row += [p.get("se_robust"), *p.get("robust95", [None, None])]
        if post and name in post["parameters"]:
            q = post["parameters"][name]
            row += [q["mean"], q["sd"], *(q["quantiles"].get(k) for k in quantiles)]
        rows.append(row)
    theta = watterson_theta(result.fit)
    if theta is not None:  # SFS fits: θ = 4Neμ per site, derived (see watterson_theta)
        est, se, (lo, hi) = theta
        rows.append([THETA_CSV, "derived", est, se, lo, hi] + [None] * (len(header) - 6))
    written = [folder / "estimates.csv"]
    _write_csv(written[0], header, rows)
    consensus = Path(results) / analysis / "cmc" / "consensus.h5"
    if post and consensus.exists():
        from phasemake.posterior.consensus import read_weighted_consensus, to_arviz

        phi, weights, meta = read_weighted_consensus(consensus)
        flat = np.exp(phi.reshape(-1, phi.shape[-1]))
        names = list(meta["free"])
        draws_header = names + (["weight"] if weights is not None else [])
        draws = flat if weights is None else np.column_stack([flat, weights])
        written.append(folder / "draws.csv")
        _write_csv(written[-1], draws_header, draws.tolist())
        written.append(folder / "posterior.nc")
        with atomic_path(written[-1]) as tmp:
            to_arviz(consensus).to_netcdf(str(tmp))
    return written
