"""Calibration of NLSQ intervals for linked windows: a replicate study on msprime
chromosomes with recombination (issue 17).

Each replicate simulates one chromosome with msprime (``--length`` bases, recombination
rate 1e-8 per base, Ne = 10^4 diploids, mutation rate 1e-8: θ = 4Neμ = 4·10^-4 per site;
5 diploid samples, n = 10), cuts it into windows of 100 kb and takes each window's
polarised SFS from tskit (the extraction itself is tested exactly against this in
tests/unit/data/test_vcf.py). phasemake fits the one-deme coalescent's ``mutation`` (2Neμ
per site in coalescent time units of 2Ne generations; the truth is 2·10^-4) with the size
fixed, and reports per replicate whether the truth lies inside

- the model-based Wald 95% interval (``wald95``, quasi-Poisson: ``s² (JᵀJ)⁻¹``),
- the block-sandwich 95% interval (``robust95``, blocks of ``--block-windows`` windows,
  t on B - 1 degrees of freedom), and
- the block bootstrap's 95% interval (``bootstrap95``, 1,000 Poisson-weighted replicates).

The study runs once per history of ``--histories``: ``constant`` size, and ``two_epoch``
(the size Ne/4 beyond 0.5·2Ne generations back, i.e. a fourfold expansion then; the
chromosomes are simulated under it and the fit knows its shape, so that study too is about
the mutation rate).

For the first ``--posteriors`` replicates of each history it also runs full-data NUTS
(phasemake's sampler, 2 chains × 1,000 draws after 500 warm-up, the default prior) and
counts how often the raw posterior's 95% interval and the open-faced sandwich adjusted one
(:func:`phasemake.fit.linkage.adjust_draws`, as the consensus step applies it) cover the
truth.

It prints the coverage of each interval with its 95% Clopper–Pearson interval (the Monte
Carlo error of the study), the mean ratio of robust to model-based variance, and writes
the table to docs/performance/calibration.md.

Usage::

    python benchmarks/calibration.py [--replicates 100] [--length 10_000_000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.stats

import phasemake
from phasemake import build_graph
from phasemake.data.observations import Observations
from phasemake.data.obsmodel import ObservationModel
from phasemake.fit.linkage import block_ids
from phasemake.fit.nlsq import fit_in_memory
from phasemake.models import block_counting

NE, MU, RHO, WINDOW, SAMPLES = 10_000, 1e-8, 1e-8, 100_000, 5
#: The fitted parameter's truth: 2·Ne·μ per site per 2Ne generations.
TRUTH = 2 * NE * MU
#: Histories: msprime demography events (time in generations, size) and the phasemake
#: history (epochs of coalescence rate relative to the present, boundaries in 2Ne units).
HISTORIES = {
    "constant": {"events": [], "history": None},
    "two_epoch": {
        # looking back: the size is Ne until 0.5·2Ne generations, then Ne/4 (a bottleneck
        # that never recovers backwards in time: an expansion forwards)
        "events": [(0.5 * 2 * NE, NE / 4)],
        "history": {
            "parameters": ["coal"],
            "rates": [{"coal": "coal"}, {"coal": "4 * coal"}],
            "times": [0.5],
        },
    },
}


def simulate(seed: int, length: float, history: str) -> Observations:
    import msprime

    demography = msprime.Demography()
    demography.add_population(name="A", initial_size=NE)
    for when, size in HISTORIES[history]["events"]:
        demography.add_population_parameters_change(time=when, initial_size=size, population="A")
    ts = msprime.sim_ancestry(
        samples={"A": SAMPLES},
        demography=demography,
        sequence_length=length,
        recombination_rate=RHO,
        random_seed=seed,
    )
    ts = msprime.sim_mutations(ts, rate=MU, random_seed=seed)
    breaks = np.arange(0.0, length + 1, WINDOW)
    afs = ts.allele_frequency_spectrum(
        windows=breaks, mode="site", polarised=True, span_normalise=False
    )
    counts = afs[:, 1:-1]
    return Observations(
        "sfs",
        {
            "sites": np.diff(breaks),
            "counts": counts,
            "contig": np.zeros(len(counts)),
            "start": breaks[:-1],
        },
    )


def trace_for(history: str):
    graph = build_graph(block_counting, n=2 * SAMPLES)
    trace = phasemake.compile_trace(graph)
    spec = HISTORIES[history]["history"]
    if spec is None:
        return graph, trace
    from phasemake.trace.epochs import epochs
    from phasemake.trace.epochtrace import EpochTrace

    h = epochs(spec["parameters"], rates=spec["rates"], times=spec["times"], graph=graph)
    return graph, EpochTrace(trace, h)


def _covers(interval, value) -> bool:
    low, high = interval
    return low is not None and high is not None and low <= value <= high


def _cp(k: int, n: int) -> tuple[float, float]:
    lo = scipy.stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    hi = scipy.stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--length", type=float, default=10_000_000)
    parser.add_argument("--block-windows", type=int, default=10)
    parser.add_argument(
        "--histories", nargs="+", choices=sorted(HISTORIES), default=["constant", "two_epoch"]
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--posteriors", type=int, default=20)
    args = parser.parse_args()
    for history in args.histories:
        study(args, history)


def study(args, history: str) -> None:
    graph, trace = trace_for(history)
    linkage = {"block_bases": args.block_windows * WINDOW}
    hits = {"wald95": 0, "robust95": 0, "bootstrap95": 0}
    ratios, failed, t0 = [], 0, time.perf_counter()
    post = {"raw": 0, "adjusted": 0, "runs": 0}
    for r in range(args.replicates):
        obs = simulate(1000 + r, args.length, history)
        cols = {**obs.columns, "block": block_ids(obs.columns, linkage).astype(float)}
        obs = Observations("sfs", cols)
        model = ObservationModel(
            "sfs", trace, states=graph.states, fixed={"coal": 1.0},
            initial={"mutation": 1e-4}, bootstrap=args.bootstrap, bootstrap_seed=r, linked=True,
        )  # fmt: skip
        fit = fit_in_memory(model, [lambda phi, o=obs, m=model: m.accumulate(phi, o, budget=0)])
        p = fit["parameters"]["mutation"]
        if not fit["converged"] or "robust95" not in p:
            failed += 1
            continue
        for key in hits:
            hits[key] += _covers(p[key], TRUTH)
        ratios.append(p["variance_ratio"])
        if r < args.posteriors:
            raw, adjusted = posterior_intervals(model, obs, fit, seed=r)
            post["raw"] += _covers(raw, TRUTH)
            post["adjusted"] += _covers(adjusted, TRUTH)
            post["runs"] += 1
    seconds = time.perf_counter() - t0
    n = args.replicates
    print(
        f"\n## {history}\n\n{n} msprime chromosomes of {args.length / 1e6:g} Mb, "
        f"windows of {WINDOW // 1000} kb, blocks of {args.block_windows} windows, n = "
        f"{2 * SAMPLES}; truth mutation = {TRUTH:g}; {failed} fits failed (counted as not "
        f"covering); {seconds:.0f} s\n"
    )
    print("| interval | coverage of the truth | 95% Clopper–Pearson |")
    print("|---|---:|---|")
    names = {
        "wald95": "model-based Wald 95% (quasi-Poisson)",
        "robust95": "block sandwich 95% (`robust95`)",
        "bootstrap95": "block bootstrap 95% (`bootstrap95`)",
    }
    for key, label in names.items():
        lo, hi = _cp(hits[key], n)
        print(f"| {label} | {hits[key] / n:.3f} | [{lo:.3f}, {hi:.3f}] |")
    for key, label in (
        ("raw", "posterior 95% (full-data NUTS)"),
        ("adjusted", "posterior 95%, open-faced sandwich"),
    ):
        k, m = post[key], post["runs"]
        if m:
            lo, hi = _cp(k, m)
            print(f"| {label}, first {m} replicates | {k / m:.3f} | [{lo:.3f}, {hi:.3f}] |")
    print(
        f"\nMean robust / model-based variance of log mutation: {np.mean(ratios):.2f} "
        f"(median {np.median(ratios):.2f})."
    )


def posterior_intervals(model, obs, fit, *, seed: int):
    """The raw and the adjusted 95% posterior intervals of ``mutation`` (full-data NUTS)."""
    from phasemake.fit.linkage import adjust_draws
    from phasemake.posterior.priors import log_prior
    from phasemake.posterior.sampling import NUTSSettings, sample_nuts

    phi_hat = np.log([fit["parameters"][n]["estimate"] for n in model.par.free_names])
    settings = NUTSSettings(warmup=500, samples=1000)
    draws = sample_nuts(
        model, obs, log_prior=log_prior(model.par.free_names), shards=1, init_phi=phi_hat,
        init_cov=np.asarray(fit["log_covariance"]), budget=model.budget(phi_hat, None),
        settings=settings, seed=(seed, 0, 1),
    ).phi  # fmt: skip
    adjusted, _ = adjust_draws(draws, fit["robust"])
    i = model.par.free_names.index("mutation")

    def interval(phi):
        return np.exp(np.quantile(phi.reshape(-1, phi.shape[-1])[:, i], [0.025, 0.975]))

    return interval(draws), interval(adjusted)


if __name__ == "__main__":
    from doc_table import recorded

    with recorded("calibration"):
        main()
