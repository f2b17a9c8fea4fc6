"""Consensus Monte Carlo: combining shard posteriors into one posterior.

Shards are combined on the sampling scale φ = log θ, where each shard density carries
``p_φ^{1/S}`` so that their product is the full posterior.

``scott`` (default; Scott et al. 2016, "Bayes and big data: the consensus Monte Carlo
algorithm")
    Draw ``i`` of the consensus is the matrix-weighted average of draw ``i`` of every
    shard, ``φ_i = (Σ_s W_s)⁻¹ Σ_s W_s φ_{s,i}`` with ``W_s = Σ_s⁻¹`` the inverse of shard
    ``s``'s posterior covariance. Full matrices keep the correlation structure (combining
    each parameter's marginals separately, as homodyne does, loses it). Exact when the
    shard posteriors are Gaussian.
``gaussian`` (parametric)
    The product of the shards' Gaussian approximations: ``Σ = (Σ_s Σ_s⁻¹)⁻¹``,
    ``μ = Σ Σ_s Σ_s⁻¹ μ_s``, drawn with a seeded generator in the same shape.

Between-shard heterogeneity: ``Q = Σ_s (μ_s - μ)ᵀ Σ_s⁻¹ (μ_s - μ)`` with ``(S-1) p``
degrees of freedom (a χ² under homogeneity; its p-value is reported), and per parameter
Cochran's ``Q`` and ``I² = max(0, (Q - (S-1)) / Q)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from phasemake.core.artefact import read_artefact, write_artefact

__all__ = [
    "CONSENSUS_KIND",
    "RULES",
    "combine",
    "gaussian_product",
    "heterogeneity",
    "read_consensus",
    "read_weighted_consensus",
    "scott_consensus",
    "summarise_draws",
    "to_arviz",
]

CONSENSUS_KIND, CONSENSUS_VERSION = "phasemake.consensus_posterior", 1
RULES = ("scott", "gaussian")
QUANTILES = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)


def _flat(phi: np.ndarray) -> np.ndarray:
    return phi.reshape(-1, phi.shape[-1])


def _moments(shards: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    means = np.stack([_flat(s).mean(axis=0) for s in shards])
    covs = np.stack([np.atleast_2d(np.cov(_flat(s), rowvar=False)) for s in shards])
    return means, covs


def scott_consensus(shards: Sequence[np.ndarray]) -> np.ndarray:
    """Draw-wise matrix-weighted average of shard draws, each ``(chains, draws, p)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0, 1, (2, 500, 1)), rng.normal(2, 1, (2, 500, 1))
    >>> abs(float(scott_consensus([a, b]).mean()) - 1.0) < 0.1  # similar weights: midpoint
    True
    """
    shapes = {s.shape for s in shards}
    if len(shapes) != 1:
        raise ValueError(f"shard draws have different shapes {sorted(shapes)}; expected one")
    _, covs = _moments(shards)
    weights = np.linalg.inv(covs)  # (S, p, p)
    total = np.linalg.inv(weights.sum(axis=0))
    weighted = sum(s @ w.T for s, w in zip(shards, weights, strict=True))  # W_s φ per draw
    return weighted @ total.T


def gaussian_product(
    shards: Sequence[np.ndarray], *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, covariance, draws)`` of the product of the shards' Gaussian fits."""
    means, covs = _moments(shards)
    precisions = np.linalg.inv(covs)
    cov = np.linalg.inv(precisions.sum(axis=0))
    mean = cov @ np.einsum("sij,sj->i", precisions, means)
    rng = np.random.default_rng([seed, 0x47415553])
    draws = rng.multivariate_normal(mean, cov, size=shards[0].shape[:-1], method="cholesky")
    return mean, cov, draws


def heterogeneity(shards: Sequence[np.ndarray], center: np.ndarray) -> dict[str, Any]:
    """Between-shard heterogeneity around the consensus mean ``center`` (see module)."""
    import scipy.stats  # here: shard jobs import this module and need no SciPy stats

    means, covs = _moments(shards)
    s, p = means.shape
    dev = means - center
    q = float(sum(d @ np.linalg.solve(c, d) for d, c in zip(dev, covs, strict=True)))
    df = (s - 1) * p
    per_q = ((dev**2) / np.diagonal(covs, axis1=1, axis2=2)).sum(axis=0)
    i2 = np.where(per_q > 0, np.maximum(0.0, (per_q - (s - 1)) / np.maximum(per_q, 1e-300)), 0.0)
    return {
        "Q": q,
        "df": df,
        "p_value": float(scipy.stats.chi2.sf(q, df)) if df > 0 else 1.0,
        "per_parameter_Q": per_q.tolist(),
        "per_parameter_I2": i2.tolist(),
        "shard_means": means.tolist(),
        "shard_sds": np.sqrt(np.diagonal(covs, axis1=1, axis2=2)).tolist(),
    }


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of a weighted sample (linear interpolation of the weighted ECDF at the
    midpoints of each point's weight; equal weights give ``np.quantile``'s "hazen")."""
    order = np.argsort(x)
    xs, ws = x[order], w[order] / w.sum()
    mid = np.cumsum(ws) - 0.5 * ws
    return np.interp(qs, mid, xs)


def _weighted_corr(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    c = np.atleast_2d(np.cov(x, rowvar=False, aweights=w))
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


def summarise_draws(
    phi: np.ndarray, names: Sequence[str], *, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Mean, sd and quantiles of θ = e^φ per parameter; correlations of θ and of φ.
    ``weights``: importance weights of the flattened draws (normalised here)."""
    flat = _flat(phi)
    theta = np.exp(flat)
    w = np.full(len(flat), 1.0 / len(flat)) if weights is None else weights / np.sum(weights)

    def sd(x):
        m = w @ x
        return float(np.sqrt((w @ (x - m) ** 2) / (1.0 - np.sum(w**2))))  # unbiased

    params = {}
    for i, name in enumerate(names):
        q = (
            np.quantile(theta[:, i], QUANTILES)
            if weights is None
            else _weighted_quantiles(theta[:, i], w, QUANTILES)
        )
        params[name] = {
            "mean": float(w @ theta[:, i]),
            "sd": sd(theta[:, i]),
            "quantiles": {f"{k:g}": float(v) for k, v in zip(QUANTILES, q, strict=True)},
            "log_mean": float(w @ flat[:, i]),
            "log_sd": sd(flat[:, i]),
        }
    one = np.ones((1, 1))
    corr = _weighted_corr(theta, w) if len(names) > 1 else one
    log_corr = _weighted_corr(flat, w) if len(names) > 1 else one
    return {
        "parameters": params,
        "correlation": np.atleast_2d(corr).tolist(),
        "log_correlation": np.atleast_2d(log_corr).tolist(),
    }


def combine(
    shards: Sequence[np.ndarray], names: Sequence[str], *, rule: str = "scott", seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Consensus draws (φ scale) by ``rule`` and a summary with both rules' results and
    the heterogeneity statistics."""
    if rule not in RULES:
        raise ValueError(f"consensus rule {rule!r}: expected one of {RULES}")
    scott = scott_consensus(shards) if len(shards) > 1 else np.asarray(shards[0])
    g_mean, g_cov, g_draws = gaussian_product(shards, seed=seed)
    draws = scott if rule == "scott" else g_draws
    summary = {
        "rule": rule,
        "shards": len(shards),
        **summarise_draws(draws, names),
        "gaussian_product": {
            "log_mean": g_mean.tolist(),
            "log_covariance": g_cov.tolist(),
        },
        "heterogeneity": heterogeneity(shards, _flat(draws).mean(axis=0)),
    }
    return draws, summary


def write_consensus(
    path,
    draws: np.ndarray,
    summary: dict[str, Any],
    *,
    arrays: dict[str, np.ndarray] | None = None,
    **meta: Any,
) -> None:
    """Write the consensus posterior (atomic, versioned, checksummed HDF5): equally
    weighted draws ``phi`` and, when refined, the weighted sample ``proposal_phi`` and
    ``log_weights`` (:mod:`phasemake.posterior.refine`)."""
    write_artefact(
        path,
        kind=CONSENSUS_KIND,
        version=CONSENSUS_VERSION,
        arrays={"phi": draws, **(arrays or {})},
        meta={"summary": summary, **meta},
    )


def read_consensus(path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(phi draws, meta)`` of a consensus file, verified."""
    arrays, meta = read_artefact(path, kind=CONSENSUS_KIND, versions=(CONSENSUS_VERSION,))
    return arrays["phi"], meta


def read_weighted_consensus(path) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """``(draws, weights, meta)``: the importance sample (``(n, p)`` points and normalised
    weights) of a refined consensus file, else its equally weighted draws and ``None``."""
    arrays, meta = read_artefact(path, kind=CONSENSUS_KIND, versions=(CONSENSUS_VERSION,))
    if "log_weights" in arrays:
        return arrays["proposal_phi"], np.exp(arrays["log_weights"]), meta
    return arrays["phi"], None, meta


def to_arviz(path):
    """Load a shard or consensus posterior file as an ``arviz.InferenceData``: the
    posterior of each free parameter on the θ scale (and ``log_<name>``), plus, for a
    shard, ``sample_stats`` (``diverging``, ``lp``, ``n_steps``, ``step_size``).

    Examples
    --------
    >>> idata = to_arviz("results/two_deme_times/cmc/consensus.h5")  # doctest: +SKIP
    >>> arviz.summary(idata)  # doctest: +SKIP
    """
    import warnings

    import h5py

    with warnings.catch_warnings():  # ArviZ 0.x announces its 1.0 refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az

    from phasemake.posterior.sampling import SHARD_KIND, read_shard

    with h5py.File(path, "r") as f:
        kind = f.attrs.get("format")
    if kind == SHARD_KIND:
        post = read_shard(path)
        phi, names = post.phi, post.meta["free"]
        stats = {
            "diverging": post.diverging,
            "lp": post.log_density,
            "n_steps": post.num_steps,
            "step_size": np.broadcast_to(post.step_size[:, None], post.diverging.shape),
        }
    else:
        phi, meta = read_consensus(path)
        names, stats = meta["free"], None
    posterior = {n: np.exp(phi[..., i]) for i, n in enumerate(names)}
    posterior.update({f"log_{n}": phi[..., i] for i, n in enumerate(names)})
    return az.from_dict(posterior=posterior, sample_stats=stats)
