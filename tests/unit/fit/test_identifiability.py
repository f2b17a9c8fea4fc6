"""Identifiability warnings of NLSQ fits, and the runaway stop on a likelihood plateau.

The reference for "near-confounded" is independent of the trace: the log-scale correlation
of the inverse outer product of per-row scores, from the dense sub-intensity matrix by
eigendecomposition (numpy; as in test_nlsq), at the fit's estimate. Fits are exact
simulations of the built-in two-deme model: 4 + 4 lineages and 3,000 times (the case of
issue 18, where the log-scale correlation was -0.994 on msprime data) and the default
analysis's 6 + 6 lineages with 20,000 times, which must not warn.
"""

from __future__ import annotations

import numpy as np
import pytest

import phasemake
from phasemake import build_graph
from phasemake.core.artefact import write_json_artefact
from phasemake.data.obsmodel import ObservationModel
from phasemake.data.simulation import simulate_absorption_times
from phasemake.fit.identifiability import MAX_CORRELATION, fit_warnings
from phasemake.fit.nlsq import RUNAWAY_LOG, LMSettings, fit_in_memory, fit_summary, lm_update
from phasemake.fit.state import Accumulator
from phasemake.models import kingman, two_deme
from phasemake.posterior.cmc import _fit_point
from phasemake.posterior.sampling import ImproperPosteriorError
from tests.unit.fit.test_nlsq import _dense_loglik


def _fit(graph, truth, size, seed):
    trace = phasemake.compile_trace(graph)
    obs = simulate_absorption_times(graph, np.asarray(truth), size=size, seed=seed)
    model = ObservationModel("absorption_times", trace)
    t_max = float(obs.columns["time"].max())
    block = obs.rows(0, obs.n_rows)
    fit = fit_in_memory(
        model, [lambda phi: model.accumulate(phi, block, budget=model.budget(phi, t_max))]
    )
    return obs, fit


def _reference_correlation(graph, obs, fit, h=1e-5):
    """Log-scale correlation of coal and mig from the dense outer product of scores."""
    phi = np.log([fit["parameters"][n]["estimate"] for n in fit["free"]])
    scores = np.stack(
        [
            (
                _dense_loglik(graph, np.exp(phi + h * e), obs)
                - _dense_loglik(graph, np.exp(phi - h * e), obs)
            )
            / (2 * h)
            for e in np.eye(len(phi))
        ],
        axis=1,
    )
    cov = np.linalg.inv(scores.T @ scores)
    return cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])


def test_four_plus_four_lineages_are_warned_about():
    graph = build_graph(two_deme, n1=4, n2=4)
    obs, fit = _fit(graph, [1.0, 0.5], 3000, seed=1)
    assert fit["converged"], fit["reason"]
    assert _reference_correlation(graph, obs, fit) < -MAX_CORRELATION  # the data's verdict
    confounded, weak = fit["warnings"]
    assert confounded.startswith("coal and mig are nearly confounded: their log-scale corr")
    assert "cmc.prior.mig: {lognormal: {loc: " in confounded and "nlsq.fixed.mig" in confounded
    assert weak.startswith("mig is weakly identified: the standard error of log mig is ")


def test_well_identified_fits_do_not_warn():
    graph = build_graph(two_deme, n1=6, n2=6)
    obs, fit = _fit(graph, [1.0, 0.5], 20_000, seed=1)
    assert abs(_reference_correlation(graph, obs, fit)) < MAX_CORRELATION
    assert fit["converged"] and fit["warnings"] == []
    _, fit = _fit(build_graph(kingman, n=10), [1.0], 2000, seed=3)
    assert fit["converged"] and fit["warnings"] == []


class _Plateau:
    """A one-parameter least-squares problem whose χ² = 1 + e^(-φ) decreases for ever as
    φ grows: every Gauss–Newton step walks up the plateau (what a two-deme fit does when
    migration cannot be told from panmixia)."""

    free_names = ("mig",)
    names = ("mig",)
    values = (None,)

    def __call__(self, phi):
        e = np.exp(-phi[0])
        r, j = np.sqrt(e), -0.5 * np.sqrt(e)  # residual r(φ) = e^(-φ/2), r² = e^(-φ)
        return Accumulator(np.array([[j * j]]), np.array([j * r]), 1.0 + r * r, 1.0 + r * r, 10.0)


def test_a_plateau_stops_as_a_runaway_and_names_the_parameter(tmp_path):
    problem = _Plateau()
    phi, state = np.zeros(1), None
    for _ in range(100):
        state = lm_update(state, phi, problem(phi), LMSettings(ftol=0, xtol=0, gtol=0))
        if state["status"] != "running":
            break
        phi = np.asarray(state["next"])
    assert state["status"] == "stopped" and state["reason"].startswith("runaway: ")
    assert state["runaway"] == [[0, 1]]
    assert RUNAWAY_LOG - 2.0 <= state["best"]["phi"][0] <= RUNAWAY_LOG  # max_step is 2

    class Model:
        par, scale_known = problem, False

    fit = fit_summary(Model(), state)
    assert fit["warnings"][0].startswith("mig runs off towards +∞: the fit stopped because")
    assert fit["status"] == "stopped" and not fit["converged"] and fit["runaway"] == ["mig"]

    # the CMC stage then refuses to sample under a flat prior, naming the parameter
    path = tmp_path / "fit.json"
    write_json_artefact(path, kind="phasemake.fit", version=1, payload=fit)
    with pytest.raises(ImproperPosteriorError) as err:
        _fit_point(Model(), path, prior={})
    assert "ran off along a plateau in mig, which has the default flat prior" in str(err.value)
    assert "cmc.prior.mig: {lognormal: {loc:" in str(err.value)  # the warning's concrete prior
    phi, _ = _fit_point(Model(), path, prior={"mig": {"lognormal": {"loc": 0, "scale": 1}}})
    assert phi.tolist() == state["best"]["phi"]


def test_near_singular_information_among_three_parameters():
    # a and b + c nearly equal: the weakest direction loads on all three, no pair beyond 0.99
    x = np.random.default_rng(0).normal(size=(1000, 3))
    x[:, 0] = (x[:, 1] + x[:, 2]) / np.sqrt(2) + 1e-3 * x[:, 0]
    cov = np.cov(x.T)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(corr - np.eye(3))) < MAX_CORRELATION
    (warning,) = fit_warnings(["a", "b", "c"], np.zeros(3), cov * 0.01)
    assert warning.startswith("The information matrix is nearly singular")
    assert "combination of a, b, c" in warning


@pytest.mark.parametrize("bad", [np.inf, 0.0])
def test_singular_information_names_the_parameter(bad):
    cov = np.diag([0.01, bad])
    (warning,) = fit_warnings(["coal", "mig"], np.zeros(2), cov)
    assert warning.startswith(
        "The information matrix is singular: no finite standard error for mig"
    )
