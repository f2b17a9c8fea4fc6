"""A two-epoch bottleneck fitted through the workflow from data msprime simulated (which no
one here wrote): the SFS of unlinked loci, and TMRCAs in generations.

msprime: 5 diploids (n = 10 genomes), size 2,500 for the last 6,000 generations and 10,000
before (pairs coalesce at 1/(2N) per generation). In the SFS model's units (2 × 10,000
generations, ``c_ancient`` fixed at 1) the truth is ``c_recent`` = 4, ``tau`` = 0.3 and
``mutation`` = 2 N μ = 2e-4 per site (μ = 1e-8). The TMRCA model is in generations:
``c_recent`` = 1/5000, ``c_ancient`` = 1/20000, with the boundary held at 6,000 (an
absorption time's density jumps at a boundary, so its likelihood is not smooth in it:
docs/epochs.md).

The truth must be inside the 95% Wald interval of NLSQ, and for the TMRCAs inside the 95%
posterior interval too (the seeds are the first ones tried: a correct method misses each
with probability 5%). The SFS analysis stops at NLSQ: a posterior of a boundary fitted from
the SFS needs a uniformisation budget for the fastest corner of the sampler's box, which
makes its shard job take many minutes (docs/epochs.md, limits).
"""

from __future__ import annotations

import msprime
import pytest

from phasemake.report.tables import read_fit, read_posterior_summary

pytestmark = pytest.mark.integration

N_RECENT, N_ANCIENT, T, MU, N = 2_500, 10_000, 6_000, 1e-8, 10
# many short unlinked loci: about one segregating site each, so that sites are nearly
# independent (the Poisson random field the sfs observation model assumes)
LOCI, LENGTH = 20_000, 1_000


def _demography():
    demography = msprime.Demography()
    demography.add_population(name="A", initial_size=N_RECENT)
    demography.add_population_parameters_change(time=T, initial_size=N_ANCIENT, population="A")
    return demography


def _sfs_file(path):
    rows = []
    sims = msprime.sim_ancestry(
        samples=N // 2,
        demography=_demography(),
        sequence_length=LENGTH,
        num_replicates=LOCI,
        random_seed=5,
    )
    for i, ts in enumerate(sims):
        mts = msprime.sim_mutations(ts, rate=MU, random_seed=100 + i, discrete_genome=False)
        afs = mts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False)
        rows.append([LENGTH, *afs[1:N].astype(int)])
    header = ",".join(["sites"] + [f"xi_{i}" for i in range(1, N)])
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def _tmrca_file(path):
    sims = msprime.sim_ancestry(
        samples=N // 2, demography=_demography(), num_replicates=2_000, random_seed=6
    )
    times = [ts.first().time(ts.first().root) for ts in sims]
    path.write_text("time\n" + "\n".join(f"{t:.17g}" for t in times) + "\n")


HISTORY = {
    "parameters": ["c_recent", "c_ancient", "tau"],
    "rates": [{"coal": "c_recent"}, {"coal": "c_ancient"}],
    "times": ["tau"],
}
# short chains for speed, the ESS gates scaled to their length
CMC = {"shards": 1, "warmup": 200, "samples": 200, "min_ess_bulk": 50, "min_ess_tail": 50}


def test_bottleneck_from_msprime_sfs_and_tmrcas(workflow):
    _sfs_file(workflow.root / "sfs.csv")
    _tmrca_file(workflow.root / "tmrca.csv")
    sfs_truth = {"c_recent": 4.0, "tau": T / (2 * N_ANCIENT), "mutation": 2 * N_ANCIENT * MU}
    tmrca_truth = {"c_recent": 1 / (2 * N_RECENT), "c_ancient": 1 / (2 * N_ANCIENT)}
    config = {
        "models": {
            "bottleneck_sfs": {
                "callback": "phasemake.models:block_counting",
                "params": {"n": N},
                "history": HISTORY,
            },
            "bottleneck_tmrca": {
                "callback": "phasemake.models:kingman",
                "params": {"n": N},
                "history": HISTORY,
            },
        },
        "analyses": {
            "sfs": {
                "model": "bottleneck_sfs",
                "observations": "sfs",
                "data": {"file": "sfs.csv", "truth": sfs_truth},
                "nlsq": {"fixed": {"c_ancient": 1.0}, "initial": {"c_recent": 2.0, "tau": 0.5}},
                "cmc": {"enabled": False},
            },
            "tmrca": {
                "model": "bottleneck_tmrca",
                "observations": "absorption_times",
                "data": {"file": "tmrca.csv", "truth": tmrca_truth},
                "nlsq": {
                    "fixed": {"tau": float(T)},
                    "initial": {"c_recent": 1e-4, "c_ancient": 1e-4},
                },
                "cmc": CMC,
            },
        },
    }
    workflow.write_config(config)
    workflow.snakemake(
        "--cores", "2", "results/sfs/nlsq/fit.json", "results/tmrca/cmc/consensus.json"
    )
    for analysis, truth in (("sfs", sfs_truth), ("tmrca", tmrca_truth)):
        fit = read_fit(workflow.root / f"results/{analysis}/nlsq/fit.json")
        assert fit["converged"], (analysis, fit["reason"])
        for name, value in truth.items():
            lo, hi = fit["parameters"][name]["wald95"]
            assert lo < value < hi, (analysis, name, value, lo, hi)
    post = read_posterior_summary(workflow.root / "results/tmrca/cmc/consensus.json")
    for name, value in tmrca_truth.items():
        q = post["parameters"][name]["quantiles"]
        assert q["0.025"] < value < q["0.975"], (name, value, q)
