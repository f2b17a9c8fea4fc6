"""Coverage of 95% profile-likelihood and Wald intervals from NLSQ, by replicate studies.

Each case simulates ``--replicates`` data sets exactly (phasemake's simulator of absorption
times, one seed per replicate), fits them with NLSQ as the workflow does (same start: the
config's ``nlsq.initial``) and computes the profile intervals (:mod:`phasemake.fit.profile`,
range 100). It prints, per free parameter, the fraction of replicates whose interval
covers the truth, with its 95% Clopper–Pearson interval (the Monte Carlo error of the
study itself), for the profile and for the Wald interval side by side, and how many
profiles were open on a side and how many fits did not converge (counted as not covering:
a fit that fails gives no interval to trust).

Cases:

- ``two_deme``: the default analysis (config/config.yaml's ``two_deme_times``: 6 + 6
  lineages, coal = 1, mig = 0.25, censored at 12, start mig = 0.05) scaled down to
  ``--size`` times (1,000 by default, issue 18's study);
- ``two_deme_4_4``: 4 + 4 lineages, mig = 0.5, 300 times: the weakly identified case,
  where Wald intervals claim limits the data do not set.

Usage::

    python benchmarks/intervals.py [--replicates 100] [--size 1000] [--cases two_deme]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.stats

import phasemake
from phasemake.data.obsmodel import ObservationModel
from phasemake.data.simulation import simulate_absorption_times
from phasemake.fit.nlsq import fit_in_memory
from phasemake.models import two_deme

CASES = {
    "two_deme": {
        "params": {"n1": 6, "n2": 6},
        "truth": {"coal": 1.0, "mig": 0.25},
        "censor_at": 12.0,
        "initial": {"mig": 0.05},
        "size": None,  # --size
    },
    "two_deme_4_4": {
        "params": {"n1": 4, "n2": 4},
        "truth": {"coal": 1.0, "mig": 0.5},
        "censor_at": None,
        "initial": {"mig": 0.05},
        "size": 300,
    },
}


def _covers(interval, value) -> bool:
    low, high = interval
    return (low is None or low <= value) and (high is None or value <= high)


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    low = scipy.stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = scipy.stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def run_case(name: str, case: dict, replicates: int, size: int) -> list[list[str]]:
    graph = phasemake.build_graph(two_deme, **case["params"])
    trace = phasemake.compile_trace(graph)
    truth = case["truth"]
    theta = np.array([truth[n] for n in graph.parameters])
    size = case["size"] or size
    counts = {(p, k): 0 for p in truth for k in ("profile", "wald", "open")}
    failed, seconds = 0, 0.0
    for rep in range(replicates):
        obs = simulate_absorption_times(
            graph, theta, size=size, seed=10_000 + rep, censor_at=case["censor_at"]
        )
        model = ObservationModel("absorption_times", trace, initial=case["initial"])
        t_max = float(obs.columns["time"].max())
        block = obs.rows(0, obs.n_rows)
        t0 = time.perf_counter()

        def evaluate(phi, model=model, block=block, t_max=t_max):
            return model.accumulate(phi, block, budget=model.budget(phi, t_max))

        fit = fit_in_memory(model, [evaluate], profile=True)
        seconds += time.perf_counter() - t0
        if not fit["converged"]:
            failed += 1
            continue
        for p, value in truth.items():
            est = fit["parameters"][p]
            counts[p, "profile"] += _covers(est["profile"], value)
            counts[p, "wald"] += _covers(est["wald95"], value)
            counts[p, "open"] += None in est["profile"]
    rows = []
    for p, value in truth.items():
        row = [f"{name} ({size} times)", f"{p} = {value:g}"]
        for kind in ("profile", "wald"):
            k = counts[p, kind]
            low, high = _clopper_pearson(k, replicates)
            row.append(f"{k / replicates:.3f} [{low:.3f}, {high:.3f}]")
        row += [str(counts[p, "open"]), str(failed), f"{seconds / replicates:.2f}"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    header = [
        "case",
        "parameter",
        "profile coverage [95% CI]",
        "Wald coverage [95% CI]",
        "open profiles",
        "fits not converged",
        "s per fit + profile",
    ]
    print(
        f"Coverage of 95% intervals over {args.replicates} replicates (exact simulations; "
        "a fit that did not converge counts as not covering)\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.cases:
        for row in run_case(name, CASES[name], args.replicates, args.size):
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    from doc_table import recorded

    with recorded("intervals"):
        main()
