"""Consensus Monte Carlo of one configured analysis, file by file.

The workflow's scripts call these three steps (``rules/posterior.smk``):

1. :func:`plan_shards` fixes the number of shards S (the config's ``cmc.shards``, or the
   cost-model rule of :mod:`phasemake.posterior.shards` for ``auto``) and writes it with the rule's
   inputs to ``plan.json``.
2. :func:`sample_shard` runs NUTS on one shard (:func:`phasemake.posterior.sampling.sample_nuts`),
   warm-started at the NLSQ fit, and writes the shard posterior file. Attempt ``k`` (1 +
   the gate failures recorded, :func:`shard_attempt`) uses the seed ``(seed, shard, k)``
   and a higher target acceptance.
3. :func:`phasemake.posterior.combination.combine_shards` reads every shard file and
   writes the consensus posterior and its summary, with its checks.

S = 1 is full-data NUTS; :func:`compare_posteriors` measures a consensus against it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from phasemake.core.artefact import atomic_path, read_json_artefact, write_json_artefact
from phasemake.core.errors import DataError
from phasemake.data.observations import read_header, read_observations
from phasemake.data.obsmodel import ObservationModel
from phasemake.posterior.consensus import (
    read_weighted_consensus,
    summarise_draws,
)
from phasemake.posterior.priors import log_prior, prior_box
from phasemake.posterior.sampling import (
    ImproperPosteriorError,
    NUTSSettings,
    ShardQualityError,
    read_shard,
    sample_nuts,
    write_shard,
)
from phasemake.posterior.shardplan import write_shard_plan
from phasemake.posterior.shards import LEAPFROG_STEPS, choose_shards, shard, work_per_point
from phasemake.trace.uniformisation import BLOCK

__all__ = [
    "REGION_SDS",
    "compare_full",
    "compare_posteriors",
    "plan_shards",
    "sample_shard",
    "shard_attempt",
    "shard_budget",
]

log = logging.getLogger(__name__)

SUMMARY_KIND, COMPARE_KIND, VERSION = (
    "phasemake.consensus_summary",
    "phasemake.posterior_comparison",
    1,
)
FIT_KIND, FIT_VERSIONS = "phasemake.fit", (1,)

#: Shard posterior sds (on log θ) the uniformisation budget covers around the NLSQ fit.
REGION_SDS = 6.0


def _fit_point(
    model: ObservationModel,
    fit_path: str | os.PathLike[str],
    prior: Mapping[str, Any] | None = None,
):
    """``(φ̂, cov φ̂)`` of the free parameters from an NLSQ ``fit.json``.

    Raises
    ------
    ImproperPosteriorError
        When the fit ran off along a plateau in a parameter that ``prior`` (``cmc.prior``)
        leaves at the default flat prior: its posterior would be improper, and no sampler
        run can succeed.
    """
    fit = read_json_artefact(fit_path, kind=FIT_KIND, versions=FIT_VERSIONS)
    free = list(model.par.free_names)
    if fit["free"] != free:
        raise DataError(
            f"{fit_path} has free parameters {fit['free']}, the analysis {free}; "
            "delete the NLSQ results so that they are refitted"
        )
    flat = [n for n in fit.get("runaway", []) if n not in (prior or {})]
    if flat:
        advice = [w for w in fit.get("warnings", []) if w.split(" ", 1)[0] in flat]
        raise ImproperPosteriorError(
            f"not sampled: the NLSQ fit ({fit_path}) ran off along a plateau in "
            f"{', '.join(flat)}, which has the default flat prior, so the posterior is "
            f"improper and no sampler can succeed. {' '.join(advice)}"
        )
    if not fit["converged"]:
        log.warning("NLSQ fit %s did not converge (%s); warm start anyway", fit_path, fit["reason"])
    phi = np.log([fit["parameters"][n]["estimate"] for n in free])
    cov = np.asarray(fit["log_covariance"], dtype=np.float64)
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
        raise DataError(
            f"{fit_path}: the NLSQ covariance is not positive ({np.diag(cov).tolist()}); a "
            "parameter is not identified by the data: fix it (nlsq.fixed) or add data"
        )
    return phi, cov


def shard_budget(
    model: ObservationModel,
    phi,
    cov,
    *,
    shards: int,
    t_max: float | None,
    prior: Mapping[str, Any] | None = None,
) -> int:
    """Uniformisation steps that reach every point within :data:`REGION_SDS` shard sds
    (``√(S · diag cov)``) of the fit: a shard's posterior is S times as wide.

    Where the fit lies inside its :func:`~phasemake.posterior.priors.prior_box` (``prior``:
    ``cmc.prior``), the region ends at that box too: on a likelihood plateau the NLSQ
    covariance is huge (two-deme 4 + 4: ± 4 sd reached mig ≈ 850, every leapfrog step
    paying for it) while the prior keeps the posterior far inside. A fit outside the box
    (data that overrule the prior) keeps the covariance's region.
    """
    phi = np.asarray(phi, dtype=float)
    half = REGION_SDS * np.sqrt(shards * np.diag(cov))
    lo, hi = phi - half, phi + half
    box_lo, box_hi = prior_box(model.par.free_names, prior, shards=shards)
    inside = (phi >= box_lo) & (phi <= box_hi)
    lo = np.where(inside, np.maximum(lo, box_lo), lo)
    hi = np.where(inside, np.minimum(hi, box_hi), hi)
    return model.region_budget(0.5 * (lo + hi), 0.5 * (hi - lo), t_max)


def plan_shards(
    model: ObservationModel,
    observations: str | os.PathLike[str],
    fit_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    cmc: Mapping[str, Any],
) -> dict[str, Any]:
    """Fix S (``cmc.shards``: an integer, or ``"auto"`` for the rule of
    :mod:`phasemake.posterior.shards`) and write the plan with the rule's inputs.

    Examples
    --------
    >>> plan = plan_shards(model, "observations.h5", "fit.json", "plan.json",
    ...                    cmc={"shards": "auto", ...})  # doctest: +SKIP
    >>> plan["shards"], plan["choice"]["rule"]  # doctest: +SKIP
    (4, 'smallest S with 3 I (a + b N/S) <= target_work')
    """
    header = read_header(observations)
    points = int(header["n_rows"])
    phi, cov = _fit_point(model, fit_path, cmc.get("prior"))
    p = len(phi)
    settings = NUTSSettings.from_config(cmc)
    iterations = settings.chains * (settings.warmup + settings.samples) * LEAPFROG_STEPS
    budget = shard_budget(model, phi, cov, shards=1, t_max=header["t_max"], prior=cmc.get("prior"))
    shared, per_point = work_per_point(
        model.kind,
        budget=budget,
        n_edges=model.trace.n_edges,
        n_vertices=model.trace.n_vertices,
        n_classes=model.n_classes,
        block=BLOCK,
    )
    choice = choose_shards(
        points=points,
        parameters=p,
        shared=shared,
        per_point=per_point,
        iterations=iterations,
        target_work=float(cmc["target_work"]),
        min_points=int(cmc["min_points"]),
        min_points_per_parameter=int(cmc["min_points_per_parameter"]),
    )
    if cmc["shards"] == "auto":
        shards = choice["shards"]
        how = f"auto: {choice['rule']}" + (
            f" gives {choice['wanted']}, capped at {choice['cap']} by the points floor"
            if choice["wanted"] > choice["cap"]
            else ""
        )
    else:
        shards = int(cmc["shards"])
        how = "set in the config (cmc.shards)"
        if shards > points:
            raise DataError(
                f"cmc.shards = {shards} but the data have {points} rows; expected at most "
                f"{points} (the rule would choose {choice['shards']}); lower cmc.shards"
            )
    plan = {
        "shards": shards,
        "how": how,
        "choice": choice,
        "points": points,
        "points_per_shard": [points // shards + (s < points % shards) for s in range(shards)],
        "data": header["checksum"],
    }
    write_shard_plan(output, plan)
    return plan


def shard_attempt(history, job_attempt: int) -> tuple[int, list[dict[str, Any]]]:
    """The attempt a shard job makes, and the earlier attempts' gate failures.

    The attempt is 1 + the number of gate failures recorded in ``history`` (a JSON-lines
    file, kept across Snakemake's retries because Snakemake deletes a job's log before
    one), not Snakemake's own attempt counter: a job that was killed (or failed for any
    reason but its gates) recorded nothing, so its retry makes the same attempt again with
    the same seed and settings, and the shard file does not depend on whether a job was
    killed. ``job_attempt`` is Snakemake's counter: 1 is a fresh job, whose history starts
    afresh (a record left by an earlier run belongs to other inputs or settings). Without
    a history file the attempt is ``job_attempt``.

    Examples
    --------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "attempts.jsonl")
    >>> shard_attempt(path, 2)  # killed on attempt 1: nothing recorded
    (1, [])
    >>> with open(path, "w") as fh:
    ...     _ = fh.write(json.dumps({"attempt": 1, "problem": "R-hat 1.2"}) + "\\n")
    >>> shard_attempt(path, 3)[0], shard_attempt(path, 1)[0]
    (2, 1)
    """
    if history is None:
        return job_attempt, []
    if job_attempt == 1 or not os.path.exists(history):
        return 1, []
    with open(history) as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    failures = [r for r in records if r.get("problem")]
    return 1 + len(failures), failures


def _record_attempt(path, records: list[dict[str, Any]]) -> None:
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def sample_shard(
    model: ObservationModel,
    observations: str | os.PathLike[str],
    fit_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    cmc: Mapping[str, Any],
    index: int,
    shards: int,
    attempt: int = 1,
    attempts: int = 1,
    threads: int = 1,
    label: str = "",
    history: str | os.PathLike[str] | None = None,
) -> None:
    """NUTS on shard ``index`` of ``shards`` (all the data when ``shards`` is 1), written
    to ``output``; each attempt after a gate failure uses a new seed and a higher target
    acceptance (:meth:`NUTSSettings.for_attempt`), up to ``attempts`` in all. ``history``: a
    JSON-lines file of the attempts' outcomes, kept across retries; the attempt made is 1 +
    the gate failures recorded there (:func:`shard_attempt`; ``attempt`` is Snakemake's
    counter, 1 for a fresh job), and the failed ones also go into the shard file
    (``meta["failed_attempts"]``).

    Raises
    ------
    ShardQualityError
        Naming ``label``, the shard, the attempt and every earlier failure, when the gates
        fail.
    """
    if not 0 <= index < shards:
        raise DataError(f"shard {index}: expected 0 to {shards - 1}")
    where = f"{label}shard {index} of {shards}"
    job_attempt = attempt
    attempt, earlier = shard_attempt(history, job_attempt)
    if attempt != job_attempt:
        log.info(
            "%s: Snakemake's attempt %d, but %d gate failure(s) recorded: attempt %d "
            "(an attempt that recorded nothing, e.g. a killed job, is made again)",
            where,
            job_attempt,
            len(earlier),
            attempt,
        )
    before = "".join(f"; attempt {r['attempt']}: {r['problem']}" for r in earlier)
    improper = [r for r in earlier if r.get("improper")]
    if improper:  # a plateau: another seed cannot help, so the retry stops at once
        raise ImproperPosteriorError(
            f"{where}: not sampled again: attempt {improper[0]['attempt']} found an improper "
            f"posterior, which another seed cannot fix: {improper[0]['problem']}"
        )
    if attempt > attempts:
        raise ShardQualityError(
            f"{where}: attempt {attempt} but cmc.retries allows {attempts - 1} retries{before}"
        )
    header = read_header(observations)
    obs = read_observations(observations)
    part = obs if shards == 1 else shard(obs, index, shards, seed=int(cmc["seed"]))
    phi, cov = _fit_point(model, fit_path, cmc.get("prior"))
    budget = shard_budget(
        model, phi, cov, shards=shards, t_max=header["t_max"], prior=cmc.get("prior")
    )
    settings = NUTSSettings.from_config(cmc).for_attempt(attempt)
    seed = (int(cmc["seed"]), index, attempt)
    log.info(
        "%s: %d rows, attempt %d of %d (target acceptance %.4g), %d uniformisation steps",
        where,
        part.n_rows,
        attempt,
        attempts,
        settings.target_accept,
        budget,
    )
    record = {"attempt": attempt, "seed": list(seed), "target_accept": settings.target_accept}
    try:
        post = sample_nuts(
            model,
            part,
            log_prior=log_prior(model.par.free_names, cmc.get("prior", {})),
            shards=shards,
            init_phi=phi,
            init_cov=cov,
            budget=budget,
            settings=settings,
            seed=seed,
            threads=threads,
            pad_rows=-(-obs.n_rows // shards),  # every shard: one shape, one program
        )
    except ShardQualityError as err:
        plateau = isinstance(err, ImproperPosteriorError)
        _record_attempt(history, [*earlier, {**record, "problem": str(err), "improper": plateau}])
        if plateau:
            raise ImproperPosteriorError(
                f"{where} failed its quality gates on attempt {attempt} of {attempts}: {err}"
                f"{before}; no retry: another seed cannot make an improper posterior proper"
            ) from None
        if attempt >= attempts:
            retry = (
                "no retries left: raise cmc.warmup or cmc.retries; if a parameter's draws "
                "drift far from the NLSQ estimate, give it a prior (cmc.prior) or fix it"
            )
        elif job_attempt < attempts:
            retry = "Snakemake retries it with a new seed"
        else:
            retry = (
                "Snakemake's retries were used by attempts that recorded nothing (killed "
                "jobs): run snakemake again"
            )
        raise ShardQualityError(
            f"{where} failed its quality gates on attempt {attempt} of {attempts}: {err}"
            f"{before}; {retry}"
        ) from None
    _record_attempt(history, [*earlier, {**record, "problem": None}])
    write_shard(
        output,
        post,
        shard=index,
        attempt=attempt,
        failed_attempts=earlier,
        data=header["checksum"],
    )
    log.info(
        "%s: R-hat %s, ESS %s (bulk %s, tail %s), %d divergent%s",
        where,
        np.round(post.r_hat, 4).tolist(),
        np.round(post.ess).astype(int).tolist(),
        np.round(post.meta["ess_bulk"]).astype(int).tolist(),
        np.round(post.meta["ess_tail"]).astype(int).tolist(),
        post.meta["divergences"],
        f" (after failed attempts{before})" if earlier else "",
    )


def compare_posteriors(
    consensus: np.ndarray,
    reference: np.ndarray,
    names: Sequence[str],
    *,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """A consensus (φ draws, importance ``weights`` if refined) against a full-data
    posterior: per parameter the mean difference in reference sds and the sd ratio
    (θ scale), and the largest difference of the θ correlations."""
    a = summarise_draws(consensus, names, weights=weights)
    b = summarise_draws(reference, names)
    rows = {
        n: {
            "mean_diff_in_sd": (a["parameters"][n]["mean"] - b["parameters"][n]["mean"])
            / b["parameters"][n]["sd"],
            "sd_ratio": a["parameters"][n]["sd"] / b["parameters"][n]["sd"],
        }
        for n in names
    }
    corr = float(np.max(np.abs(np.array(a["correlation"]) - np.array(b["correlation"]))))
    return {"parameters": rows, "max_correlation_diff": corr, "consensus": a, "reference": b}


#: Agreement a consensus must show with full-data NUTS (means in reference sds, relative
#: sds, absolute correlations): the thresholds of the project's acceptance tests.
AGREEMENT = {"mean_diff_in_sd": 0.15, "sd_ratio_minus_1": 0.15, "correlation_diff": 0.1}


def compare_full(
    consensus_path: str | os.PathLike[str],
    full_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
) -> dict[str, Any]:
    """:func:`compare_posteriors` of a consensus file and a full-data (S = 1) shard file
    on the same data, with each :data:`AGREEMENT` threshold checked, written as JSON."""
    draws, weights, meta = read_weighted_consensus(consensus_path)
    full = read_shard(full_path)
    if full.meta["shards"] != 1:
        raise DataError(f"{full_path} is shard {full.meta['shard']} of {full.meta['shards']}")
    if meta["data"] != full.meta["data"] or meta["free"] != full.meta["free"]:
        raise DataError(f"{consensus_path} and {full_path} come from different data or models")
    result = compare_posteriors(draws, full.phi, meta["free"], weights=weights)
    rows = result["parameters"].values()
    result["agreement"] = {
        "thresholds": AGREEMENT,
        "means": all(abs(r["mean_diff_in_sd"]) <= AGREEMENT["mean_diff_in_sd"] for r in rows),
        "sds": all(abs(r["sd_ratio"] - 1) <= AGREEMENT["sd_ratio_minus_1"] for r in rows),
        "correlations": result["max_correlation_diff"] <= AGREEMENT["correlation_diff"],
    }
    result["shards"] = meta["summary"]["shards"]
    write_json_artefact(output, kind=COMPARE_KIND, version=VERSION, payload=result)
    return result
