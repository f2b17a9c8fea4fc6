"""Consensus rules on draws with known answers (no sampler)."""

from __future__ import annotations

import numpy as np
import pytest

from phasemake.posterior.consensus import combine, gaussian_product, heterogeneity, scott_consensus


def _gaussian_shards(mean, cov, shards, draws, seed):
    """Exact draws from S Gaussian shard posteriors whose product is N(mean, cov): each
    shard is N(mean_s, S cov) with the mean_s averaging to mean."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 0.1, (shards, len(mean)))
    offsets -= offsets.mean(axis=0)
    return [rng.multivariate_normal(mean + o, shards * cov, size=(2, draws)) for o in offsets]


CORRELATED = np.array([[1.0, -0.9], [-0.9, 1.0]]) * 0.04


@pytest.mark.parametrize("shards", [2, 4])
def test_scott_recovers_a_gaussian_product_with_its_correlation(shards):
    mean = np.array([0.1, -0.5])
    parts = _gaussian_shards(mean, CORRELATED, shards, 4000, seed=shards)
    draws = scott_consensus(parts).reshape(-1, 2)
    # 8000 draws: the sample mean is within ~4 sd/sqrt(8000) = 0.009 of the truth and the
    # sample covariance within ~5% (chi-square spread at this size)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), CORRELATED, rtol=0.06, atol=2e-3)
    g_mean, g_cov, g_draws = gaussian_product(parts, seed=1)
    np.testing.assert_allclose(g_mean, mean, atol=0.01)
    np.testing.assert_allclose(g_cov, CORRELATED, rtol=0.06, atol=2e-3)
    assert g_draws.shape == parts[0].shape


def test_a_marginal_combination_loses_the_correlation_scott_keeps():
    parts = _gaussian_shards(np.zeros(2), CORRELATED, 4, 4000, seed=3)
    consensus = scott_consensus(parts).reshape(-1, 2)
    assert np.corrcoef(consensus, rowvar=False)[0, 1] == pytest.approx(-0.9, abs=0.02)
    # homodyne's rule: per-parameter precision-weighted marginals, drawn independently
    flat = [p.reshape(-1, 2) for p in parts]
    prec = np.array([1 / f.var(axis=0) for f in flat])
    mean = (prec * np.array([f.mean(axis=0) for f in flat])).sum(0) / prec.sum(0)
    sd = 1 / np.sqrt(prec.sum(0))
    marginal = np.random.default_rng(0).normal(mean, sd, size=(8000, 2))
    assert abs(np.corrcoef(marginal, rowvar=False)[0, 1]) < 0.05


def test_heterogeneity_flags_a_shard_that_disagrees():
    parts = _gaussian_shards(np.zeros(2), CORRELATED, 4, 2000, seed=5)
    fine = heterogeneity(parts, scott_consensus(parts).reshape(-1, 2).mean(axis=0))
    assert fine["df"] == 6 and fine["p_value"] > 0.01
    parts[2] = parts[2] + np.array([1.5, 0.0])  # 3.75 shard sds away
    off = heterogeneity(parts, scott_consensus(parts).reshape(-1, 2).mean(axis=0))
    assert off["p_value"] < 1e-6 and off["per_parameter_I2"][0] > 0.5


def test_combine_summary_and_errors():
    parts = _gaussian_shards(np.log([1.0, 0.5]), CORRELATED, 2, 500, seed=7)
    draws, summary = combine(parts, ["coal", "mig"], rule="scott", seed=0)
    assert draws.shape == parts[0].shape and summary["shards"] == 2
    coal = summary["parameters"]["coal"]
    assert coal["quantiles"]["0.05"] < coal["quantiles"]["0.5"] < coal["quantiles"]["0.95"]
    assert summary["correlation"][0][1] < -0.5
    _, g = combine(parts, ["coal", "mig"], rule="gaussian", seed=0)
    assert g["parameters"]["coal"]["mean"] == pytest.approx(coal["mean"], rel=0.05)
    with pytest.raises(ValueError, match="consensus rule 'median'"):
        combine(parts, ["coal", "mig"], rule="median")
    with pytest.raises(ValueError, match="different shapes"):
        scott_consensus([parts[0], parts[1][:, :10]])
