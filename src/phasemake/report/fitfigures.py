"""Fit vs data for the workflow's report: the model's predictions against the observations.

Absorption times: a histogram of the observed times against the model density, and the
data's life-table survival against the model's, with the censored fraction observed and
predicted. SFS: counts per derived-allele class against the expected counts, and Pearson
residuals. Curves are drawn at the NLSQ estimate and, as a pointwise 90% band, at posterior
draws. The data are binned block by block (:func:`time_histogram`), so any data size fits.

Examples
--------
>>> import numpy as np
>>> from phasemake.data.observations import Observations
>>> t = np.random.default_rng(0).exponential(1.0, 1000)
>>> block = Observations("absorption_times",
...                      {"time": t, "censored": np.zeros(1000), "weight": np.ones(1000)})
>>> hist = time_histogram([block], t_max=float(t.max()), bins=20)
>>> int(hist.events.sum()), hist.censor_at
(1000, None)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from phasemake.report.figures import NLSQ, POSTERIOR, _grid

__all__ = [
    "TimeHistogram",
    "absorption_fit_figure",
    "predict",
    "sfs_fit_figure",
    "time_histogram",
]


class TimeHistogram(NamedTuple):
    """Weighted counts of absorption times per bin: ``events`` (observed times) and
    ``censored`` (censored times, i.e. lower bounds), with the bin ``edges``; the censoring
    times when they all equal one value (``censor_at``, else ``None``)."""

    edges: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    censor_at: float | None


def time_histogram(blocks: Iterable[Any], *, t_max: float, bins: int = 60) -> TimeHistogram:
    """Bin absorption-time observations block by block (streaming: any data size).

    ``blocks`` are :class:`phasemake.data.observations.Observations` blocks (``time``,
    ``censored``, ``weight`` columns); times above ``t_max`` fall in the last bin.
    """
    edges = np.linspace(0.0, t_max, bins + 1)
    events, censored = np.zeros(bins), np.zeros(bins)
    cuts: set[float] = set()
    for block in blocks:
        t, c, w = (np.asarray(block.columns[k]) for k in ("time", "censored", "weight"))
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
        cen = c > 0
        events += np.bincount(idx[~cen], weights=w[~cen], minlength=bins)
        censored += np.bincount(idx[cen], weights=w[cen], minlength=bins)
        cuts.update(np.unique(t[cen]).tolist()[:2])
    censor_at = cuts.pop() if len(cuts) == 1 else None
    return TimeHistogram(edges, events, censored, censor_at)


def _life_table(h: TimeHistogram) -> np.ndarray:
    """Empirical survival at the bin edges (actuarial life table: a censored row counts
    half at risk in its bin)."""
    at_risk = (h.events + h.censored).sum() - np.concatenate(
        [[0], np.cumsum(h.events + h.censored)[:-1]]
    )
    risk = np.maximum(at_risk - 0.5 * h.censored, 1e-300)
    return np.concatenate([[1.0], np.cumprod(1.0 - h.events / risk)])


def _band(ax, x: np.ndarray, draws: np.ndarray | None, label: str) -> None:
    if draws is not None and len(draws) > 1:
        lo, mid, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(x, lo, hi, color=POSTERIOR, alpha=0.3, label=f"{label} 90% band")
        ax.plot(x, mid, color=POSTERIOR, linewidth=1.5, label=f"{label} median")


def absorption_fit_figure(
    hist: TimeHistogram,
    *,
    grid: np.ndarray,
    nlsq: tuple[np.ndarray, np.ndarray],
    posterior: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """Absorption-time density and survival against the data.

    Parameters
    ----------
    hist
        The binned data (:func:`time_histogram`).
    grid
        Times at which the model curves were evaluated.
    nlsq
        ``(pdf, survival)`` on ``grid`` at the NLSQ estimate.
    posterior
        ``(pdf, survival)``, each ``(draws, len(grid))``, at posterior draws (a band).

    Returns
    -------
    Figure
        Left: histogram of observed times (per unit time, as a fraction of all rows, so
        it estimates the density wherever no censoring has happened yet) with the model
        density. Right: life-table survival of the data against the model's, log scale,
        with the censoring time and the censored fraction, observed vs predicted.
    """
    fig, (left, right) = _grid(2, cols=2, width=4.7, height=3.6)
    total = hist.events.sum() + hist.censored.sum()
    width = np.diff(hist.edges)
    left.stairs(
        hist.events / (total * width),
        hist.edges,
        fill=True,
        color="lightgrey",
        label="observed times",
    )
    left.plot(grid, nlsq[0], "--", color=NLSQ, linewidth=2, label="NLSQ estimate", zorder=3)
    _band(left, grid, None if posterior is None else posterior[0], "posterior")
    left.set_xlabel("absorption time")
    left.set_ylabel("density")
    left.set_title(f"density: {total:.0f} rows", fontsize=10)
    surv = _life_table(hist)
    right.plot(hist.edges, surv, "o", color="grey", ms=3.5, label="data (life table)")
    right.plot(grid, nlsq[1], "--", color=NLSQ, linewidth=2, label="NLSQ estimate", zorder=3)
    _band(right, grid, None if posterior is None else posterior[1], "posterior")
    title = "survival P(T > t)"
    if hist.censored.sum() > 0:
        share = hist.censored.sum() / total
        if hist.censor_at is not None:
            right.axvline(hist.censor_at, color="black", linestyle=":", label="censoring time")
            k = int(np.argmin(np.abs(grid - hist.censor_at)))
            title += f"\ncensored: {share:.2%} observed, {nlsq[1][k]:.2%} predicted"
        else:
            title += f"\ncensored: {share:.2%} of rows, at several times"
    right.set_yscale("log")
    right.set_xlabel("absorption time")
    right.set_ylabel("P(T > t)")
    right.set_title(title, fontsize=10)
    for ax in (left, right):
        ax.legend(fontsize=8)
    return fig


def sfs_fit_figure(
    observed: np.ndarray,
    *,
    sites: float,
    windows: int,
    nlsq: np.ndarray,
    posterior: np.ndarray | None = None,
) -> Figure:
    """Expected vs observed site frequency spectrum, summed over windows.

    Parameters
    ----------
    observed
        ``(n-1,)`` counts ξ_i summed over all windows.
    sites, windows
        Total sites and number of windows.
    nlsq
        ``(n-1,)`` per-site expected SFS at the NLSQ estimate.
    posterior
        ``(draws, n-1)`` per-site expected SFS at posterior draws (a band).

    Returns
    -------
    Figure
        Left: counts per class i (log scale), observed with ±1.96 √count, expected lines.
        Right: Pearson residuals (observed − expected)/√expected at the NLSQ estimate.
    """
    fig, (left, right) = _grid(2, cols=2, width=4.7, height=3.6)
    i = np.arange(1, len(observed) + 1)
    err = 1.96 * np.sqrt(np.maximum(observed, 1.0))
    left.errorbar(i, observed, yerr=err, fmt="o", color="black", label="observed ± 1.96 √n")
    expected = sites * np.asarray(nlsq)
    left.plot(i, expected, "--", color=NLSQ, lw=2, label="expected at NLSQ estimate", zorder=3)
    _band(left, i, None if posterior is None else sites * np.asarray(posterior), "posterior")
    left.set_yscale("log")
    left.set_xlabel("i (derived allele count)")
    left.set_ylabel("sites with ξ = i")
    left.set_title(f"SFS over {windows} windows, {sites:.3g} sites", fontsize=10)
    left.legend(fontsize=8)
    resid = (observed - expected) / np.sqrt(expected)
    right.bar(i, resid, color=NLSQ)
    right.axhline(0, color="black", linewidth=0.8)
    for y in (-2, 2):
        right.axhline(y, color="grey", linestyle=":")
    right.set_xlabel("i (derived allele count)")
    right.set_ylabel("(observed − expected) / √expected")
    right.set_title(
        f"Pearson residuals, χ² = {np.sum(resid**2):.3g} on {len(i)} classes", fontsize=10
    )
    return fig


def predict(model: Any, phi: np.ndarray, *, grid: np.ndarray | None = None) -> Any:
    """What an :class:`phasemake.ObservationModel` predicts at the points ``phi``
    (``(k, free)`` log θ), as numpy arrays with a leading axis of length ``k``:
    ``(pdf, survival)`` on ``grid`` for ``absorption_times``, the per-site expected SFS
    for ``sfs``. One uniformisation budget (the largest the points need) serves them all.
    """
    import jax

    phi = np.atleast_2d(np.asarray(phi, dtype=np.float64))
    thetas = np.stack([np.asarray(model.par.theta(p)) for p in phi])
    trace = model.trace
    if model.kind == "sfs":
        budget = max(model.budget(p, None) for p in phi)  # 0 without a history
        return np.asarray(jax.vmap(lambda p: model._expected_sfs(p, budget))(phi))
    if grid is None:
        raise ValueError("absorption_times: expected a time grid")
    budget = max(trace.n_terms(t, [float(np.max(grid))]) for t in thetas)
    pdf, surv = jax.vmap(lambda t: trace.pdf_and_survival(t, grid, n_terms=budget))(thetas)
    return np.asarray(pdf), np.asarray(surv)
