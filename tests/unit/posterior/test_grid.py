"""The grid posterior and the check of draws against it.

References: closed forms. φ = log X with X ~ Gamma(a, 1) has the quantiles
``log gamma.ppf(q, a)``; the full-data posterior of Kingman n = 2 (absorption times
Exp(c)) under the default lognormal(0, 10) prior is ``N φ − e^φ Σt − φ²/200`` on φ,
integrated here by SciPy's quad. Tolerances: a grid of 61 points over ± 8 sd has cells of
0.27 sd and reads quantiles linearly within a cell: 0.05 sd.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats

import phasemake
from phasemake import build_graph
from phasemake.data.obsmodel import ObservationModel
from phasemake.data.simulation import simulate_absorption_times
from phasemake.models import kingman
from phasemake.posterior.grid import grid_check, grid_posterior
from phasemake.posterior.priors import log_prior
from phasemake.posterior.refine import full_data_log_density

A = 8.0


def log_gamma_target(phi):
    return A * phi[:, 0] - np.exp(phi[:, 0])


def gamma_draws(n=4000, seed=0):
    return np.log(np.random.default_rng(seed).gamma(A, size=(n, 1)))


def test_grid_quantiles_equal_the_closed_form():
    sd = np.sqrt(scipy.special.polygamma(1, A))
    mean = scipy.special.digamma(A)
    grid = grid_posterior(log_gamma_target, [mean - 8 * sd], [mean + 8 * sd])
    for q in (0.025, 0.5, 0.975):
        ref = np.log(scipy.stats.gamma.ppf(q, A))
        assert np.log(grid.quantile(0, q)) == pytest.approx(ref, abs=0.05 * sd), q
    assert grid.failed == 0 and grid.edge_mass(0) < 1e-6  # left-skewed: 9e-9 below


def test_exact_draws_agree_and_truncated_tails_do_not():
    record, problems = grid_check(log_gamma_target, gamma_draws(), ["x"], ess_tail=[4000])
    assert problems == [] and record["agrees"]
    g = record["parameters"]["x"]
    np.testing.assert_allclose(g["grid95"], scipy.stats.gamma.ppf([0.025, 0.975], A), rtol=0.02)
    # a sampler that never visits the upper 10%: what issue 18's NUTS did to mig
    draws = gamma_draws()
    kept = draws[draws[:, 0] < np.quantile(draws[:, 0], 0.9)]
    record, problems = grid_check(log_gamma_target, kept, ["x"], ess_tail=[kept.shape[0]])
    assert not record["agrees"]
    (problem,) = problems
    assert problem.startswith("the draws of x disagree with the grid posterior in the upper")
    assert "under-samples" in problem


def test_mass_at_the_edges_after_widening_is_reported():
    def plateau(phi):  # flat above 0: an improper posterior on φ
        return np.where(phi[:, 0] < 0, -0.5 * phi[:, 0] ** 2, 0.0)

    draws = np.random.default_rng(1).normal(size=(2000, 1)) * 0.3
    record, problems = grid_check(plateau, draws, ["mig"], ess_tail=[2000])
    assert record["widenings"] == 3
    assert any("still has" in p and "cmc.prior.mig" in p for p in problems)


def test_full_data_posterior_of_kingman_on_a_grid():
    graph = build_graph(kingman, n=2)
    obs = simulate_absorption_times(graph, [1.3], size=500, seed=2)
    model = ObservationModel("absorption_times", phasemake.compile_trace(graph))
    t = obs.columns["time"]
    density = full_data_log_density(model, obs, log_prior=log_prior(["coal"]), t_max=float(t.max()))

    def exact(x):  # log posterior on φ up to a constant
        return t.size * x - np.exp(x) * t.sum() - x**2 / 200.0

    mode = np.log(t.size / t.sum())
    sd = 1 / np.sqrt(t.size)
    norm = scipy.integrate.quad(lambda x: np.exp(exact(x) - exact(mode)), mode - 1, mode + 1)[0]

    def cdf(x):
        return scipy.integrate.quad(lambda y: np.exp(exact(y) - exact(mode)), mode - 1, x)[0] / norm

    draws = np.random.default_rng(3).normal(mode, sd, size=(4000, 1))
    record, problems = grid_check(density, draws, ["coal"], ess_tail=[4000])
    for q, value in zip((0.025, 0.975), record["parameters"]["coal"]["grid95"], strict=True):
        ref = scipy.optimize.brentq(lambda x, q=q: cdf(x) - q, mode - 0.5, mode + 0.5)
        assert np.log(value) == pytest.approx(ref, abs=0.05 * sd)
    assert problems == []  # the posterior is nearly normal: normal draws pass
