"""Coalescence times in generations, simulated by msprime (which no one here wrote), fitted
through the workflow with the default settings: no rescaling, no starting value.

Kingman, n = 10 sampled genomes (5 diploids), Ne = 10,000: a pair coalesces at rate
1/(2 Ne) = 5e-5 per generation, and TMRCAs are ~3.6e4 generations. With the old start
(coal = 1) the first chunk job wrote an infinite χ²; now the start matches the data's mean.
"""

from __future__ import annotations

import msprime
import numpy as np
import pytest

from phasemake.report.tables import read_fit, read_posterior_summary

pytestmark = pytest.mark.integration

NE, SAMPLES, REPLICATES = 10_000, 5, 2_000


def test_msprime_generations_fit_with_defaults(workflow):
    sims = msprime.sim_ancestry(
        samples=SAMPLES, population_size=NE, ploidy=2, num_replicates=REPLICATES, random_seed=11
    )
    times = np.array([ts.first().time(ts.first().root) for ts in sims])
    assert times.mean() > 1e4  # generations, not coalescent units
    (workflow.root / "tmrca.csv").write_text("time\n" + "\n".join(f"{t:.17g}" for t in times))
    config = {
        "models": {"kingman": {"callback": "phasemake.models:kingman", "params": {"n": 10}}},
        "analyses": {
            "tmrca": {
                "model": "kingman",
                "observations": "absorption_times",
                "data": {"file": "tmrca.csv", "truth": {"coal": 1 / (2 * NE)}},
                "cmc": {"grid": True},  # one parameter: check the draws against a grid
            }
        },
    }
    workflow.write_config(config)
    workflow.snakemake("--cores", "2", "results/tmrca/cmc/consensus.json")
    truth = 1 / (2 * NE)
    fit = read_fit(workflow.root / "results/tmrca/nlsq/fit.json")
    coal = fit["parameters"]["coal"]
    assert fit["converged"], fit["reason"]
    # 3 standard errors: a correct fit fails this with probability 0.3%
    assert abs(coal["estimate"] - truth) < 3 * coal["se"], coal
    post = read_posterior_summary(workflow.root / "results/tmrca/cmc/consensus.json")
    q = post["parameters"]["coal"]["quantiles"]
    assert q["0.025"] < truth < q["0.975"], q
    assert post["truth"]["coal"]["in_95"] is True
    # the draws agree with the grid posterior in both tails, on the data's own scale
    grid = post["grid"]["parameters"]["coal"]
    assert post["grid"]["agrees"] and post["warnings"] == [], post["warnings"]
    assert grid["grid95"][0] < truth < grid["grid95"][1]
    np.testing.assert_allclose(grid["grid95"], [q["0.025"], q["0.975"]], rtol=0.02)
