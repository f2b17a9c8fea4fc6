"""Figures of an analysis for the workflow's report: NLSQ convergence and posteriors.

Every ``*_figure`` function takes arrays and the summary dicts the workflow's files hold and
returns a :class:`matplotlib.figure.Figure`. Figures are drawn without ``pyplot``, so no
display, backend choice or global state is involved; :func:`save_figure` writes one
atomically. Parameters are shown on the θ scale: samplers work on φ = log θ, so draws arrive
as φ and are exponentiated here. Truth (simulated θ) is drawn as a red dashed line. The fit
of the model to the data is drawn by :mod:`phasemake.report.fitfigures`.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> rng = np.random.default_rng(0)
>>> shards = [rng.normal([0.0, -1.4], 0.1, (2, 200, 2)) for _ in range(2)]
>>> fig = marginals_figure(shards, np.mean(shards, axis=0), ["coal", "mig"],
...                        truth={"coal": 1.0, "mig": 0.25})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "marginals.png"
>>> save_figure(fig, path)
>>> path.read_bytes()[:4] == b"\\x89PNG"
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from phasemake.core.artefact import atomic_path

__all__ = [
    "marginals_figure",
    "nlsq_figure",
    "pair_figure",
    "pass_points",
    "save_figure",
    "trace_figure",
]

TRUTH = {"color": "crimson", "linestyle": "--", "linewidth": 1.6}
NLSQ, POSTERIOR, CONSENSUS = "tab:blue", "tab:orange", "black"
SHARDS = ("tab:cyan", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> None:
    """Write ``fig`` as PNG to ``path`` atomically (a temporary name, then a rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def _grid(n: int, *, cols: int, width: float = 4.2, height: float = 3.0, **kw: Any):
    """``n`` panels in rows of ``cols``, each ``width`` × ``height`` inches. Figures stay
    under about 950 pixels wide at 100 dpi: the report shows them at their own size beside
    its menu."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, **kw)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _shard_colour(s: int) -> str:
    return SHARDS[s % len(SHARDS)]


# -- NLSQ ------------------------------------------------------------------------------------
def pass_points(states: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The point (φ, free parameters) each NLSQ pass evaluated, from the pass states in
    order: pass 0 the initial point, pass k the point state k-1 proposed."""
    points = [states[0]["best"]["phi"]] + [s["next"] for s in states[:-1]]
    return np.asarray(points, dtype=np.float64)


def nlsq_figure(
    fit: Mapping[str, Any],
    *,
    points: np.ndarray | None = None,
    truth: Mapping[str, float] | None = None,
) -> Figure:
    """Convergence of a streaming Levenberg–Marquardt fit and its estimates.

    Parameters
    ----------
    fit
        The ``fit.json`` payload (``history``, ``parameters``, ``free``, ``reason``).
    points
        ``(passes, free)`` log θ evaluated in each pass (:func:`pass_points`); without it
        only the objective is drawn.
    truth
        Simulated θ by name, drawn as a dashed line.

    Returns
    -------
    Figure
        Panel 1: χ² minus its final value per pass (accepted steps filled, rejected ones
        as crosses). Then per free parameter the value evaluated in each pass, with the
        truth. Last: the estimates ± 1.96 standard errors on a common scale, (θ − θ̂)/se,
        with the truth's position on it.
    """
    free = list(fit["free"])
    fig, axes = _grid(2 + (0 if points is None else len(free)), cols=2, width=4.6, height=2.9)
    hist = fit["history"]
    it = np.array([h["iteration"] for h in hist])
    chi2 = np.array([np.nan if h["chi2"] is None else h["chi2"] for h in hist])
    ok = np.array([h["accepted"] for h in hist])
    gap = chi2 - fit["chi2"]
    ax = axes[0]
    ax.plot(it, gap, color="grey", linewidth=1)
    ax.plot(it[ok], gap[ok], "o", color=NLSQ, label="accepted step")
    if (~ok).any():
        ax.plot(it[~ok], gap[~ok], "x", color="crimson", markersize=8, label="rejected step")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_xlabel("pass")
    ax.set_ylabel("χ² − final χ²")
    ax.set_title(f"objective: {fit['status']} after {fit['passes']} passes", fontsize=10)
    ax.legend(fontsize=8)
    for j, name in enumerate(free if points is not None else []):
        ax = axes[1 + j]
        ax.plot(np.arange(len(points)), np.exp(points[:, j]), "o-", color=NLSQ, label="evaluated")
        if truth and name in truth:
            ax.axhline(truth[name], **TRUTH, label="truth")
        _scale(ax, np.exp(points[:, j]), "y")
        ax.set_xlabel("pass")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per pass", fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[-1]
    y = np.arange(len(free))[::-1]
    ax.errorbar(np.zeros(len(free)), y, xerr=1.96, fmt="o", color=NLSQ, capsize=4,
                label="estimate ± 1.96 se")  # fmt: skip
    for k, name in zip(y, free, strict=True):
        p = fit["parameters"][name]
        text = f"{name} = {p['estimate']:.4g} ± {p['se']:.2g}"
        if truth and name in truth and p["se"] > 0:
            z = (truth[name] - p["estimate"]) / p["se"]
            ax.plot([np.clip(z, -4.5, 4.5)], [k], "x", color="crimson", ms=9, mew=2,
                    label="truth" if k == y[0] else None)  # fmt: skip
            text += f"\ntrue {truth[name]:.4g} ({z:+.1f} se)"
        ax.annotate(text, (0, k), xytext=(0, 8), textcoords="offset points", ha="center",
                    fontsize=8)  # fmt: skip
    ax.set_xlim(-5, 5)
    ax.set_ylim(-0.6, len(free) + 0.1)
    ax.set_yticks([])
    ax.set_xlabel("(θ − estimate) / se")
    ax.set_title("estimates", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"NLSQ: {fit['reason']}", fontsize=9)
    return fig


def _scale(ax, values: np.ndarray, axis: str) -> None:
    """A log axis when the values span more than a factor of 20, else a linear one."""
    values = np.asarray(values)[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 20:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


# -- posteriors ------------------------------------------------------------------------------
def trace_figure(
    shards: Sequence[np.ndarray],
    consensus: np.ndarray,
    names: Sequence[str],
    *,
    max_shards: int = 6,
) -> Figure:
    """Trace plots: one row per parameter, one column per shard (its chains in shades)
    and a last column for the consensus draws, all on the θ scale.

    Parameters
    ----------
    shards, consensus
        φ draws, each ``(chains, draws, p)``.
    names
        The ``p`` free parameter names.
    max_shards
        Shards shown (the first ones) when there are more.
    """
    shown = list(shards[:max_shards])
    cols, p = len(shown) + 1, len(names)
    width = min(2.6, 8.5 / cols)  # at most about 950 pixels wide
    fig = Figure(figsize=(width * cols + 1, 2.0 * p + 0.6), layout="constrained")
    axes = fig.subplots(p, cols, squeeze=False, sharey="row")
    panels = [(f"shard {s}", d, _shard_colour(s)) for s, d in enumerate(shown)]
    panels.append(("consensus", consensus, CONSENSUS))
    for c, (title, draws, colour) in enumerate(panels):
        for i, name in enumerate(names):
            ax = axes[i, c]
            for k, chain in enumerate(np.exp(draws[..., i])):
                ax.plot(chain, color=colour, alpha=1.0 - 0.45 * (k % 2), linewidth=0.5)
            _scale(ax, np.exp(draws[..., i]), "y")
            if c == 0:
                ax.set_ylabel(name)
            if i == 0:
                ax.set_title(title, fontsize=10)
            if i == p - 1:
                ax.set_xlabel("draw")
    more = f" (first {max_shards} of {len(shards)} shards)" if len(shards) > max_shards else ""
    fig.suptitle(f"trace plots after warm-up, chains in alternating shades{more}", fontsize=9)
    return fig


def _density(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``x`` on ``grid`` (Silverman's rule-of-thumb bandwidth,
    1.06 σ n^-1/5)."""
    bw = 1.06 * np.std(x) * len(x) ** -0.2 or 1e-12
    z = (grid[:, None] - x[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(axis=1) / (len(x) * bw * np.sqrt(2 * np.pi))


def marginals_figure(
    shards: Sequence[np.ndarray],
    consensus: np.ndarray,
    names: Sequence[str],
    *,
    truth: Mapping[str, float] | None = None,
    fit: Mapping[str, Any] | None = None,
) -> Figure:
    """Marginal posterior densities of θ per parameter: each shard (thin), the consensus
    (black), the NLSQ normal approximation (``fit``, dotted) and the truth.

    Shard posteriors use 1/S of the data each, so they are about √S times wider than the
    consensus; the consensus should sit inside their overlap.
    """
    fig, axes = _grid(len(names), cols=2, width=4.6, height=3.2)
    for i, (ax, name) in enumerate(zip(axes, names, strict=True)):
        theta = np.exp(consensus[..., i].ravel())
        lo, hi = np.quantile(np.concatenate([np.exp(s[..., i].ravel()) for s in shards]), [0, 1])
        grid = np.linspace(lo, hi, 300)
        for s, draws in enumerate(shards):
            label = "shards" if s == 0 else None
            dens = _density(np.exp(draws[..., i].ravel()), grid)
            ax.plot(grid, dens, color=_shard_colour(s), linewidth=1, label=label)
        ax.plot(grid, _density(theta, grid), color=CONSENSUS, linewidth=2.2, label="consensus")
        if fit is not None and not fit["parameters"][name]["fixed"]:
            est, se = fit["parameters"][name]["estimate"], fit["parameters"][name]["se"]
            normal = np.exp(-0.5 * ((grid - est) / se) ** 2) / (se * np.sqrt(2 * np.pi))
            ax.plot(grid, normal, ":", color=NLSQ, linewidth=2, label="NLSQ ± se (normal)")
        if truth and name in truth:
            ax.axvline(truth[name], **TRUTH, label="truth")
        q = np.quantile(theta, [0.05, 0.5, 0.95])
        ax.set_title(
            f"{name}: median {q[1]:.4g}\n90% interval [{q[0]:.4g}, {q[2]:.4g}]", fontsize=10
        )
        ax.set_xlabel(name)
        ax.set_ylabel("density")
    legend = {}  # one legend under the panels, where it hides no curve
    for ax in axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=4, fontsize=9)
    return fig


def pair_figure(
    consensus: np.ndarray,
    names: Sequence[str],
    *,
    shards: Sequence[np.ndarray] = (),
    truth: Mapping[str, float] | None = None,
    max_points: int = 1500,
    seed: int = 0,
) -> Figure:
    """Pair plot of the posterior (θ; log axes where the draws span over 20×): histograms
    on the diagonal, the consensus draws (black) over every shard's draws (colours) below
    it, the truth as a red cross. With one free parameter it is the histogram alone."""
    p = len(names)
    size = min(2.6, 8.8 / p) if p > 1 else 4.0
    fig = Figure(figsize=(size * p + 0.6, size * p + 0.4), layout="constrained")
    axes = fig.subplots(p, p, squeeze=False, sharex="col")
    rng = np.random.default_rng(seed)

    def thin(draws: np.ndarray) -> np.ndarray:
        flat = np.exp(draws.reshape(-1, p))
        keep = rng.permutation(len(flat))[:max_points]
        return flat[np.sort(keep)]

    cons, parts = thin(consensus), [thin(s) for s in shards]
    for i in range(p):
        for j in range(p):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                every = np.concatenate([cons[:, i], *(part[:, i] for part in parts)])
                edges = np.linspace(every.min(), every.max(), 61)  # the column's range
                ax.hist(cons[:, i], bins=edges, color="grey", edgecolor="white")
                if truth and names[i] in truth:
                    ax.axvline(truth[names[i]], **TRUTH)
            else:
                for s, part in enumerate(parts):
                    ax.plot(part[:, j], part[:, i], ".", ms=1.5, alpha=0.3, color=_shard_colour(s))
                ax.plot(cons[:, j], cons[:, i], ".", ms=2, alpha=0.5, color=CONSENSUS)
                if truth and names[i] in truth and names[j] in truth:
                    ax.plot(truth[names[j]], truth[names[i]], "+", ms=14, mew=2, color="crimson")
                r = np.corrcoef(np.log(cons[:, j]), np.log(cons[:, i]))[0, 1]
                ax.set_title(f"corr(log) = {r:+.2f}", fontsize=9)
                _scale(ax, cons[:, i], "y")
            _scale(ax, cons[:, j], "x")
            if i == p - 1:
                ax.set_xlabel(names[j])
            if j == 0:
                ax.set_ylabel(names[i] if i else "count")
    lead = "consensus (black) over shards (colours)" if p > 1 else "one free parameter"
    fig.suptitle(f"posterior draws: {lead}", fontsize=9)
    return fig
