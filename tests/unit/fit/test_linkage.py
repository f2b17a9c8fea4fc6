"""Linked rows (phasemake.fit.linkage): the block sandwich against closed forms written
here, chunking that cannot change it, the block bootstrap against the sandwich, the
posterior adjustment, misidentification and folding.

References: the MLE of exponential times is 1/mean and its score 1 - c·t (closed form);
the SFS with only the mutation scaling free has the Poisson score Σ_i (y - μ) per window
and the information Σ μ (closed form, E[ξ_i] = 2/(i·coal)). Tolerances: the fits run to
xtol = gtol = 1e-11, so the robust covariance at the fit agrees with the closed form at
the exact MLE to 1e-6 relative; bootstrap and Monte Carlo checks use 2,000 replicates
(the relative sd of an sd estimate is ~1/√(2·2000) ≈ 1.6%, so 8% is 5 of them).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.core.errors import DataError
from phasemake.data.observations import Observations
from phasemake.data.obsmodel import ObservationModel, fold
from phasemake.data.simulation import simulate_sfs
from phasemake.fit.linkage import BlockScores, adjust_draws, block_ids, robust_summary
from phasemake.fit.nlsq import LMSettings, fit_in_memory
from phasemake.models import block_counting, kingman

TIGHT = LMSettings(ftol=0.0, xtol=1e-11, gtol=1e-11, max_iterations=200)


def _clustered_times(groups: int, size: int, seed: int) -> Observations:
    """Exponential times of rate 1, scaled by a shared gamma factor per group (linked)."""
    rng = np.random.default_rng(seed)
    factor = np.repeat(rng.gamma(4.0, 0.25, groups), size)
    t = rng.exponential(1.0, groups * size) * factor
    cols = {"time": t, "censored": np.zeros(t.size), "weight": np.ones(t.size)}
    cols["group"] = np.repeat(np.arange(groups), size).astype(float)
    cols["block"] = block_ids(cols, {"groups": True}).astype(float)
    return Observations("absorption_times", cols)


@pytest.fixture(scope="module")
def exponential():
    graph = build_graph(kingman, n=2)  # T ~ Exp(coal)
    return graph, phasemake.compile_trace(graph)


def _parts(model, obs, edges):
    blocks = [obs.rows(a, b) for a, b in itertools.pairwise(edges)]
    return [
        lambda phi, b=b: model.accumulate(phi, b, budget=model.budget(phi, 50.0)) for b in blocks
    ]


def test_sandwich_equals_the_closed_form_for_exponential_times(exponential):
    _, trace = exponential
    obs = _clustered_times(groups=60, size=25, seed=3)
    model = ObservationModel("absorption_times", trace, linked=True)
    fit = fit_in_memory(model, _parts(model, obs, [0, obs.n_rows]), settings=TIGHT)
    t, group = obs.columns["time"], obs.columns["group"]
    c = 1.0 / t.mean()  # the MLE
    g = 1.0 - c * t  # d/d log c of log c - c t
    s_b = np.bincount(group.astype(int), weights=g)
    b = len(s_b)
    ref = b / (b - 1) * np.sum(s_b**2) / np.sum(g**2) ** 2
    coal = fit["parameters"]["coal"]
    assert coal["estimate"] == pytest.approx(c, rel=1e-9)
    assert fit["robust"]["log_covariance"][0][0] == pytest.approx(ref, rel=1e-6)
    assert coal["se_robust"] == pytest.approx(c * np.sqrt(ref), rel=1e-6)
    assert fit["robust"]["blocks"] == 60 and fit["headline"] == "robust"
    # the groups share a factor: the robust variance is several times the model's
    assert coal["variance_ratio"] > 2.0
    lo, hi = coal["robust95"]
    assert lo < c < hi and np.log(hi / lo) > 2 * 1.96 * coal["se"] / c


def test_chunks_split_inside_a_block_change_nothing(exponential):
    _, trace = exponential
    obs = _clustered_times(groups=30, size=10, seed=4)
    model = ObservationModel("absorption_times", trace, bootstrap=50, bootstrap_seed=9)
    phi = np.log([0.9])
    one = model.accumulate(phi, obs, budget=model.budget(phi, 50.0)).blocks.closed_all()
    cuts = [0, 3, 4, 57, 58, 200, obs.n_rows]  # through blocks, and a one-row part
    parts = [f(phi).blocks for f in _parts(model, obs, cuts)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    merged = merged.closed_all()
    assert merged.closed == one.closed == 30
    np.testing.assert_allclose(merged.meat, one.meat, rtol=1e-12)
    np.testing.assert_allclose(merged.boot, one.boot, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged.bread, one.bread, rtol=1e-12)


def test_sfs_sandwich_uses_the_poisson_score_and_information():
    n = 6
    graph = build_graph(block_counting, n=n)
    trace = phasemake.compile_trace(graph)
    closed = 2.0 / np.arange(1, n)
    rng = np.random.default_rng(2)
    sites = rng.integers(500, 1500, size=120).astype(float)
    # windows in runs of 4 share a rate multiplier: linked, overdispersed
    rate = np.repeat(rng.gamma(5.0, 0.2, 30), 4)
    obs = simulate_sfs(0.004 * closed, sites=sites * rate, seed=5)
    cols = {**obs.columns, "sites": sites}
    cols["block"] = block_ids(cols, {"block_rows": 4}).astype(float)
    obs = Observations("sfs", cols)
    model = ObservationModel(
        "sfs", trace, states=graph.states, fixed={"coal": 1.0}, initial={"mutation": 0.01},
        linked=True,
    )  # fmt: skip
    fit = fit_in_memory(model, [lambda phi: model.accumulate(phi, obs, budget=0)], settings=TIGHT)
    y = obs.columns["counts"]
    m = y.sum() / (sites.sum() * closed.sum())  # the Poisson MLE of the scaling
    mu = m * sites[:, None] * closed[None, :]
    s_b = (y - mu).sum(axis=1).reshape(30, 4).sum(axis=1)
    info = mu.sum()
    ref = 30 / 29 * np.sum(s_b**2) / info**2
    assert fit["parameters"]["mutation"]["estimate"] == pytest.approx(m, rel=1e-9)
    assert fit["robust"]["information"][0][0] == pytest.approx(info, rel=1e-9)
    assert fit["robust"]["log_covariance"][0][0] == pytest.approx(ref, rel=1e-6)
    assert fit["robust"]["overdispersion"] > 2.0


def test_block_bootstrap_agrees_with_the_sandwich():
    rng = np.random.default_rng(6)
    scores = rng.standard_t(5, size=(6000, 2)) @ np.array([[1.0, 0.4], [0.0, 1.0]])
    ids = np.repeat(np.arange(2000), 3)
    bread = np.array([[5000.0, 900.0], [900.0, 4000.0]])
    s = BlockScores.from_rows(ids, scores - scores.mean(0), bread=bread, replicates=2000, seed=1)
    out = robust_summary(s)
    boot = np.asarray(out["bootstrap"])
    np.testing.assert_allclose(
        np.sqrt(np.diag(np.cov(boot.T))),
        np.sqrt(np.diag(out["log_covariance"])),
        rtol=0.08,
    )


def test_adjusted_draws_have_the_sandwich_covariance():
    rng = np.random.default_rng(7)
    info = np.array([[400.0, 120.0], [120.0, 100.0]])
    draws = rng.multivariate_normal([0.3, -1.0], np.linalg.inv(info), size=(2, 4000))
    robust = {"information": info.tolist(), "log_covariance": [[0.01, 0.002], [0.002, 0.05]]}
    adjusted, _ = adjust_draws(draws, robust)
    assert adjusted.shape == draws.shape
    flat = adjusted.reshape(-1, 2)
    np.testing.assert_allclose(flat.mean(0), draws.reshape(-1, 2).mean(0), atol=1e-12)
    np.testing.assert_allclose(np.cov(flat.T), robust["log_covariance"], rtol=0.08, atol=2e-4)


def test_block_ids_refuse_groups_that_are_not_consecutive():
    cols = {"time": np.ones(5), "group": np.array([1.0, 1, 2, 1, 3])}
    with pytest.raises(DataError, match=r"rows 1 and 4 have the same group \[1.0\]"):
        block_ids(cols, {"groups": True})
    with pytest.raises(DataError, match="needs a 'group' column"):
        block_ids({"time": np.ones(2)}, {"groups": True})
    with pytest.raises(DataError, match="needs rows with a contig"):
        block_ids({"time": np.ones(2)}, {"block_bases": 10})
    positional = {"contig": np.array([0.0, 0, 1, 1]), "start": np.array([0.0, 2e6, 0, 5e5])}
    assert block_ids(positional, None).tolist() == [0, 1, 2, 2]  # 1 Mb blocks by default


def test_misidentification_and_folding_match_closed_forms():
    n = 6
    graph = build_graph(block_counting, n=n)
    trace = phasemake.compile_trace(graph)
    closed = 2.0 / np.arange(1, n)
    eps, mut = 0.05, 0.003
    mixed = (1 - eps) * closed + eps * closed[::-1]
    model = ObservationModel(  # coal fixed: with it free only mutation/coal is identified
        "sfs", trace, states=graph.states, misidentification=True,
        initial={"mutation": mut, "misid": eps}, fixed={"coal": 1.0},
    )  # fmt: skip
    assert model.par.names == ("coal", "mutation", "misid")
    np.testing.assert_allclose(model._expected_sfs(model.par.phi0()), mut * mixed, rtol=1e-12)
    folded = ObservationModel("sfs", trace, states=graph.states, folded=True)
    want = np.array([closed[0] + closed[4], closed[1] + closed[3], closed[2]])
    np.testing.assert_allclose(folded._expected_sfs(folded.par.phi0()), want, rtol=1e-12)
    assert folded.n_classes == 3 and fold(5).shape == (2, 4)
    # ε recovered from data simulated with it (2,000 windows of 10^4 sites)
    obs = simulate_sfs(mut * mixed, sites=np.full(2000, 1e4), seed=8)
    fit = fit_in_memory(model, [lambda phi: model.accumulate(phi, obs, budget=0)])
    got = fit["parameters"]["misid"]
    assert abs(got["estimate"] - eps) < 3 * got["se"]
    with pytest.raises(DataError, match="folding removes what ε changes"):
        ObservationModel("sfs", trace, states=graph.states, folded=True, misidentification=True)


def test_no_robust_summary_without_enough_blocks_or_information():
    scores = np.ones((3, 2))
    few = BlockScores.from_rows(np.array([0, 0, 1]), scores, bread=np.eye(2))
    assert robust_summary(few) is None  # 2 blocks for 2 parameters: the meat is singular
    many = BlockScores.from_rows(np.arange(3), scores, bread=np.zeros((2, 2)))
    assert robust_summary(many) is None  # no information: nothing to sandwich


def test_linked_rows_without_a_sandwich_are_warned_about(exponential):
    _, trace = exponential
    obs = _clustered_times(groups=1, size=50, seed=5)  # one group: one block
    model = ObservationModel("absorption_times", trace, linked=True)
    fit = fit_in_memory(model, _parts(model, obs, [0, obs.n_rows]), settings=TIGHT)
    assert fit["robust"] is None and fit["headline"] == "model"
    assert any("1 block(s) for 1 free parameter(s)" in w for w in fit["warnings"])
