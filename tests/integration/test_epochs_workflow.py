"""A two-epoch bottleneck fitted through the workflow from data msprime simulated (which no
one here wrote): the SFS of unlinked loci, and TMRCAs in generations.

msprime: 5 diploids (n = 10 genomes), size 2,500 for the last 6,000 generations and 10,000
before (pairs coalesce at 1/(2N) per generation). In the SFS model's units (2 × 10,000
generations, ``c_ancient`` fixed at 1) the truth is ``c_recent`` = 4, ``tau`` = 0.3 and
``mutation`` = 2 N μ = 2e-4 per site (μ = 1e-8). The TMRCA model is in generations:
``c_recent`` = 1/5000, ``c_ancient`` = 1/20000, with the boundary held at 6,000 (an
absorption time's density jumps at a boundary, so its likelihood is not smooth in it:
docs/epochs.md).

The same SFS is also fitted with the model named in the config as a demes file
(``models.<name>.demes``), in the file's units: the recent size and the bottleneck's start
in generations, with ``mutation`` = μ per site per generation fixed at the simulated 1e-8
(absolute sizes and times need a known μ: with it free, size, time and μ trade off along
the data's ridge). The file holds other values (5,000 and 3,000), where NLSQ starts.

The truth must be inside the 95% Wald interval of NLSQ and inside the 95% posterior
interval (the seeds are the first ones tried: a correct method misses each with
probability 5%). The bottleneck's start has a weakly informative prior (log-normal, sd 1
on the log scale, centred at 0.5 and at the file's 3,000 generations, not at the truth):
as it goes to 0 the recent epoch vanishes and the likelihood tends to a constant, so
under the default, nearly flat prior on its log the posterior is improper, and the
sampler says so (its plateau check). The SFS rows are blocks of 100 loci summed, which
keeps the likelihood (up to a constant) and makes the long chains the SFS posteriors
need take about a minute.
"""

from __future__ import annotations

import math

import msprime
import numpy as np
import pytest

from phasemake.report.tables import read_fit, read_posterior_summary

pytestmark = pytest.mark.integration

N_RECENT, N_ANCIENT, T, MU, N = 2_500, 10_000, 6_000, 1e-8, 10
# many short unlinked loci: about one segregating site each, so that sites are nearly
# independent (the Poisson random field the sfs observation model assumes)
LOCI, LENGTH, BLOCK = 20_000, 1_000, 100


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
    # rows of BLOCK consecutive loci summed: the Poisson likelihood of the sums is that of
    # the loci up to a constant (same estimates, intervals and posterior), at 1/BLOCK of
    # the cost per evaluation
    rows = [
        [int(x) for x in sum(map(np.array, rows[i : i + BLOCK]))] for i in range(0, LOCI, BLOCK)
    ]
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


# the demes file: the ancient size as simulated, the bottleneck's size and start elsewhere
DEMES = f"""\
time_units: generations
demes:
  - name: A
    epochs:
      - {{start_size: {N_ANCIENT}, end_time: 3000}}
      - {{start_size: 5000}}
"""
FREE = ["A.epochs[1].start_size", "A.epochs[0].end_time"]


def _lognormal(centre):
    return {"lognormal": {"loc": math.log(centre), "scale": 1.0}}


SFS_TRUTH = {"c_recent": 4.0, "tau": T / (2 * N_ANCIENT), "mutation": 2 * N_ANCIENT * MU}
TMRCA_TRUTH = {"c_recent": 1 / (2 * N_RECENT), "c_ancient": 1 / (2 * N_ANCIENT)}
DEMES_TRUTH = {FREE[0]: float(N_RECENT), FREE[1]: float(T)}


def _config(sfs_cmc):
    """The three analyses; ``sfs_cmc``: the two SFS analyses' chains (without priors)."""
    return {
        "models": {
            "bottleneck_demes": {
                "demes": {"file": "bottleneck.yaml", "samples": {"A": N}, "free": FREE, "sfs": True}
            },
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
                "data": {"file": "sfs.csv", "truth": SFS_TRUTH},
                "nlsq": {"fixed": {"c_ancient": 1.0}, "initial": {"c_recent": 2.0, "tau": 0.5}},
                "cmc": {**sfs_cmc, "prior": {"tau": _lognormal(0.5)}},
            },
            "sfs_demes": {
                "model": "bottleneck_demes",
                "observations": "sfs",
                "data": {"file": "sfs.csv", "truth": DEMES_TRUTH},
                # sizes and times in generations need μ, as in any absolute-unit analysis
                "nlsq": {"fixed": {"mutation": MU}},
                "cmc": {**sfs_cmc, "prior": {FREE[1]: _lognormal(3000.0)}},
            },
            "tmrca": {
                "model": "bottleneck_tmrca",
                "observations": "absorption_times",
                "data": {"file": "tmrca.csv", "truth": TMRCA_TRUTH},
                "nlsq": {
                    "fixed": {"tau": float(T)},
                    "initial": {"c_recent": 1e-4, "c_ancient": 1e-4},
                },
                "cmc": CMC,
            },
        },
    }


def _write_inputs(root):
    _sfs_file(root / "sfs.csv")
    _tmrca_file(root / "tmrca.csv")
    (root / "bottleneck.yaml").write_text(DEMES)


def _check(root, cases):
    for analysis, truth in cases.items():
        fit = read_fit(root / f"results/{analysis}/nlsq/fit.json")
        assert fit["converged"], (analysis, fit["reason"])
        post = read_posterior_summary(root / f"results/{analysis}/cmc/consensus.json")
        for name, value in truth.items():
            lo, hi = fit["parameters"][name]["wald95"]
            assert lo < value < hi, (analysis, name, value, lo, hi)
            q = post["parameters"][name]["quantiles"]
            assert q["0.025"] < value < q["0.975"], (analysis, name, value, q)


def test_bottleneck_from_msprime_sfs_and_tmrcas(workflow):
    """NLSQ and the posterior of the three analyses."""
    _write_inputs(workflow.root)
    # the SFS posteriors mix slowly (size and time trade off along a curved ridge):
    # measured bulk and tail ESS of 135-190 from 2 × 4,000 draws (autocorrelation times
    # near 40), so their gates ask for 100 in all, not the default 200
    sfs_cmc = {"shards": 1, "warmup": 1000, "samples": 4000, "min_ess_bulk": 50, "min_ess_tail": 50}
    workflow.write_config(_config(sfs_cmc))
    cases = {"sfs": SFS_TRUTH, "sfs_demes": DEMES_TRUTH, "tmrca": TMRCA_TRUTH}
    workflow.snakemake("--cores", "2", *(f"results/{a}/cmc/consensus.json" for a in cases))
    _check(workflow.root, cases)
