"""The combine step of consensus Monte Carlo: the shard posteriors to one posterior, and
its checks.

:func:`combine_shards` reads every shard file (in shard order) and writes the consensus
posterior (HDF5 draws) and its summary (JSON): means, sds, quantiles, correlations,
between-shard heterogeneity, per-shard diagnostics (R-hat, bulk and tail ESS), and the
true θ against the posterior when the data were simulated. On request it

- refines the consensus against the full-data posterior by importance sampling
  (:mod:`phasemake.posterior.refine`, ``cmc.refine: importance``), recording how much of
  the full-data posterior's mass lies beyond the consensus's tail quantiles;
- checks the draws' tails against a grid posterior (:mod:`phasemake.posterior.grid`,
  ``cmc.grid: true``, one or two free parameters).

What fails a check is a sentence in the summary's ``warnings``, never silently kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from phasemake.core.artefact import write_json_artefact
from phasemake.core.errors import DataError, PhasemakeError
from phasemake.data.observations import read_header, read_observations
from phasemake.posterior.consensus import combine, summarise_draws, write_consensus
from phasemake.posterior.grid import grid_check
from phasemake.posterior.priors import log_prior
from phasemake.posterior.refine import (
    MAX_PARETO_K,
    full_data_log_density,
    importance_refine,
    resample,
    tail_masses,
)
from phasemake.posterior.sampling import read_shard

if TYPE_CHECKING:
    from phasemake.data.obsmodel import ObservationModel

__all__ = ["combine_shards"]

log = logging.getLogger(__name__)

SUMMARY_KIND, VERSION = "phasemake.consensus_summary", 1


def _shard_row(path: str, post) -> dict[str, Any]:
    m = post.meta
    return {
        "file": os.fspath(path),
        "shard": m["shard"],
        "rows": m["rows"],
        "attempt": m["attempt"],
        "failed_attempts": m["failed_attempts"],
        "target_accept": m["settings"]["target_accept"],
        "divergences": m["divergences"],
        "r_hat": post.r_hat.tolist(),
        "ess": post.ess.tolist(),
        "ess_bulk": m.get("ess_bulk"),
        "ess_tail": m.get("ess_tail"),
        "step_size": post.step_size.tolist(),
        "mean_leapfrog_steps": float(np.mean(post.num_steps)),
    }


def combine_shards(
    paths: Sequence[str | os.PathLike[str]],
    draws_output: str | os.PathLike[str],
    summary_output: str | os.PathLike[str],
    *,
    cmc: Mapping[str, Any],
    model: ObservationModel | None = None,
    observations: str | os.PathLike[str] | None = None,
    truth: Mapping[str, float] | None = None,
    fit: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The consensus of the shard files (in shard order) by ``cmc.rule``: draws to
    ``draws_output`` (HDF5, :func:`phasemake.to_arviz` loads it), summary to
    ``summary_output`` (JSON). With ``cmc.refine = "importance"`` (needs ``model`` and
    ``observations``) the consensus is refined against the full-data posterior
    (:mod:`phasemake.posterior.refine`). ``truth``: the simulated θ, compared with the posterior.

    With the NLSQ ``fit`` of an analysis whose rows are linked (its ``headline`` is
    ``robust``), the draws are adjusted for the composite likelihood
    (:func:`phasemake.fit.linkage.adjust_draws`): the summary's ``parameters`` are then the
    adjusted ones, ``unadjusted`` keeps the raw summary and ``linkage`` says how (method,
    blocks, overdispersion, Ω)."""
    posts = [read_shard(p) for p in paths]
    metas = [p.meta for p in posts]
    for key in ("data", "shards", "free"):
        if len({repr(m[key]) for m in metas}) != 1:
            raise PhasemakeError(
                f"shard files {list(map(str, paths))} disagree on {key!r}; delete them so "
                "that they are resampled from the same data and plan"
            )
    free, shards = metas[0]["free"], metas[0]["shards"]
    if [m["shard"] for m in metas] != list(range(shards)):
        raise PhasemakeError(
            f"expected shards 0..{shards - 1} in order, got {[m['shard'] for m in metas]}"
        )
    draws, summary = combine([p.phi for p in posts], free, rule=cmc["rule"], seed=int(cmc["seed"]))
    summary["data"] = metas[0]["data"]
    summary["warnings"] = []
    arrays = {}
    if cmc.get("refine", "none") == "importance" and shards > 1:
        if model is None or observations is None:
            raise PhasemakeError("cmc.refine = 'importance' needs the model and observations")
        draws, arrays = _refine(model, observations, draws, summary, cmc=cmc)
    summary["shard_diagnostics"] = [_shard_row(p, q) for p, q in zip(paths, posts, strict=True)]
    summary["free"] = free
    if cmc.get("grid"):
        if model is None or observations is None:
            raise PhasemakeError("cmc.grid needs the model and observations")
        _grid(model, observations, draws, summary, posts, cmc=cmc)
    if fit is not None and fit.get("headline") == "robust" and fit.get("robust"):
        draws, arrays = _adjust(draws, arrays, summary, fit)
    if truth:
        summary["truth"] = _against_truth(summary, truth)
    summary.update(extra)
    write_consensus(draws_output, draws, summary, arrays=arrays, free=free, data=summary["data"])
    write_json_artefact(summary_output, kind=SUMMARY_KIND, version=VERSION, payload=summary)
    return summary


def _adjust(
    draws: np.ndarray, arrays: dict[str, np.ndarray], summary: dict[str, Any], fit: Mapping
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws (and a refinement's weighted proposals) adjusted for linked rows, around the
    posterior mean the summary has; the summary's parameters become theirs."""
    from phasemake.fit.linkage import adjust_draws

    names = summary["free"]
    centre = np.array([summary["parameters"][n]["log_mean"] for n in names])
    adjusted, omega = adjust_draws(draws, fit["robust"], centre=centre)
    raw = {k: summary[k] for k in ("parameters", "correlation", "log_correlation")}
    if "proposal_phi" in arrays:  # refined: the weighted sample is what the summary is of
        proposals, _ = adjust_draws(arrays["proposal_phi"], fit["robust"], centre=centre)
        weights = np.exp(arrays["log_weights"] - np.max(arrays["log_weights"]))
        summary.update(summarise_draws(proposals, names, weights=weights))
        arrays = {**arrays, "proposal_phi": proposals}
    else:
        summary.update(summarise_draws(adjusted, names))
    summary["unadjusted"] = raw
    summary["linkage"] = {
        "method": "open-faced sandwich (Shaby 2014) with the NLSQ block sandwich",
        "blocks": fit["robust"]["blocks"],
        "overdispersion": fit["robust"]["overdispersion"],
        "omega": omega.tolist(),
    }
    return adjusted, arrays


def _refine(model, observations, draws, summary, *, cmc) -> tuple[np.ndarray, dict]:
    """Importance-refine ``draws`` in place of ``summary``'s parameters when reliable;
    record the outcome under ``summary["refinement"]``."""
    header = read_header(observations)
    if header["checksum"] != summary["data"]:
        raise DataError(f"{observations} is not the data the shards were sampled from")
    density = full_data_log_density(
        model,
        read_observations(observations),
        log_prior=log_prior(model.par.free_names, cmc.get("prior", {})),
        t_max=header["t_max"],
    )
    record: dict[str, Any] = {"method": "importance", "proposals": int(cmc["refine_proposals"])}
    try:
        ref = importance_refine(
            density, draws, proposals=record["proposals"], seed=int(cmc["seed"])
        )
    except ValueError as err:  # e.g. a proposal point with absurd rates
        log.warning("refinement not applied: %s", err)
        summary["refinement"] = {**record, "applied": False, "reason": str(err)}
        return draws, {}
    record.update(pareto_k=ref.pareto_k, ess=ref.ess, failed_points=ref.failed)
    names = list(summary["parameters"])
    if not ref.reliable:
        reason = f"Pareto k {ref.pareto_k:.2f} > {MAX_PARETO_K}: the consensus is kept"
        log.warning("refinement not applied: %s", reason)
        summary["refinement"] = {**record, "applied": False, "reason": reason}
        summary["warnings"].append(
            f"The check of the consensus against the full-data posterior by importance "
            f"sampling is unreliable (Pareto k {ref.pareto_k:.2f} > {MAX_PARETO_K}), so the "
            "consensus draws are kept unchecked and their tails may be off. To check them: "
            "cmc.grid: true (one or two parameters), or full-data NUTS "
            "(results/<analysis>/cmc/compare_full.json)."
        )
        return draws, {}
    record["tails"] = tail_masses(ref, draws, names)
    for name, t in record["tails"].items():
        for side in ("below", "above"):
            if abs(t[side] - 0.025) > t["tolerance"]:
                log.info(
                    "the consensus under- or over-samples a tail of %s: the full-data "
                    "posterior has %.3f of its mass %s the consensus's %s quantile "
                    "(expected 0.025 ± %.3f); the refined posterior corrects it",
                    name,
                    t[side],
                    side,
                    "2.5%" if side == "below" else "97.5%",
                    t["tolerance"],
                )
    unrefined = {n: {k: summary["parameters"][n][k] for k in ("mean", "sd")} for n in names}
    summary.update(summarise_draws(ref.phi, names, weights=ref.weights))
    summary["refinement"] = {**record, "applied": True, "unrefined": unrefined}
    log.info(
        "refined against the full-data posterior: Pareto k %.2f, ESS %.0f of %d points",
        ref.pareto_k,
        ref.ess,
        record["proposals"],
    )
    resampled = resample(ref, draws.shape[:-1], seed=int(cmc["seed"]))
    return resampled, {"proposal_phi": ref.phi, "log_weights": ref.log_weights}


def _grid(model, observations, draws, summary, posts, *, cmc) -> None:
    """The grid check of the draws (:mod:`phasemake.posterior.grid`), recorded under
    ``summary["grid"]``; disagreements go to ``summary["warnings"]``."""
    free = summary["free"]
    if len(free) > 2:
        summary["grid"] = {"skipped": f"{len(free)} free parameters (a grid needs 1 or 2)"}
        return
    header = read_header(observations)
    density = full_data_log_density(
        model,
        read_observations(observations),
        log_prior=log_prior(model.par.free_names, cmc.get("prior", {})),
        t_max=header["t_max"],
    )
    refinement = summary.get("refinement") or {}
    if refinement.get("applied"):  # resampled from the weighted sample: its ESS
        ess_tail = [refinement["ess"]] * len(free)
    else:  # consensus draws: about as many effective draws as the weakest shard
        ess_tail = np.min([p.meta.get("ess_tail", p.ess) for p in posts], axis=0).tolist()
    record, problems = grid_check(density, draws, free, ess_tail=ess_tail)
    summary["grid"] = record
    summary["warnings"] += problems
    for problem in problems:
        log.warning("grid check: %s", problem)
    if not problems:
        log.info("grid check: the draws agree with the grid posterior in both tails")


def _against_truth(summary: dict[str, Any], truth: Mapping[str, float]) -> dict[str, Any]:
    """Per free parameter: the true value, the posterior mean and sd, the error in sds,
    and whether the truth is inside the central 90% and 95% intervals."""
    rows = {}
    for name, post in summary["parameters"].items():
        if name not in truth:
            continue
        true = float(truth[name])
        q = post["quantiles"]
        rows[name] = {
            "true": true,
            "mean": post["mean"],
            "sd": post["sd"],
            "z": (post["mean"] - true) / post["sd"],
            "in_90": bool(q["0.05"] <= true <= q["0.95"]),
            "in_95": bool(q["0.025"] <= true <= q["0.975"]) if "0.025" in q else None,
        }
    return rows
