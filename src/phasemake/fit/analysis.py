"""One configured analysis: its observations and its NLSQ passes, file by file.

The workflow's scripts call these; :func:`phasemake.fit.nlsq.fit_in_memory` runs the same
passes in one process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from phasemake.core.artefact import (
    read_artefact,
    read_json_artefact,
    write_artefact,
    write_json_artefact,
)
from phasemake.data.datafiles import read_data_file
from phasemake.data.observations import (
    Observations,
    block_ranges,
    fold,
    iter_blocks,
    observed_classes,
    observed_sfs,
    read_header,
)
from phasemake.data.simulation import simulate_absorption_times, simulate_sfs
from phasemake.fit.linkage import BlockScores, block_choice
from phasemake.fit.nlsq import LMSettings, fit_summary, lm_update, profile_state
from phasemake.fit.state import CHUNK_KIND, CHUNK_VERSION, Accumulator, read_state, write_state

if TYPE_CHECKING:  # JAX is imported on first use: the reducer job does without it
    from phasemake.data.obsmodel import ObservationModel

__all__ = [
    "accumulate_chunk",
    "check_observations",
    "discard_foreign_observations",
    "enable_compilation_cache",
    "model_for",
    "model_from_files",
    "prepare_observations",
    "profile_fit",
    "read_fit",
    "read_state",
    "step_nlsq",
    "streamed_evaluator",
    "write_fit",
]

log = logging.getLogger(__name__)

ACC_KIND, FIT_KIND, PROFILE_KIND = CHUNK_KIND, "phasemake.fit", "phasemake.profile"
VERSION = 1


def enable_compilation_cache(directory: str | os.PathLike[str]) -> None:
    """Use JAX's persistent compilation cache in ``directory`` for every later compilation,
    however small or quick (JAX's defaults keep only programs that took a second), and count
    compilations and cache hits (:mod:`phasemake.core.compiletime`).

    Entries are written to a temporary file and renamed into place
    (:class:`phasemake.core.compiletime.AtomicFileCache`), so a full disk or a killed job
    never leaves a truncated entry, and one that cannot be read back is dropped and
    recompiled. A write that fails (a read-only shared cache) is skipped.

    The environment variable ``PHASEMAKE_JAX_CACHE``, when set, replaces ``directory``
    (a private folder for users of a shared cache they do not trust to hold programs,
    docs/security.md); set to ``off``, no persistent cache is used.

    Call it before the job compiles anything: JAX decides once per process whether the
    cache is used, so the decision is reset here. It logs the devices JAX runs on (the
    GPU, where JAX for CUDA is installed and sees one).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from phasemake.core.compiletime import start_counting, use_atomic_file_cache

    override = os.environ.get("PHASEMAKE_JAX_CACHE")
    if override is not None:
        directory = override
    compilation_cache.reset_cache()
    start_counting()
    if os.fspath(directory) in ("", "off"):
        jax.config.update("jax_compilation_cache_dir", None)
    else:
        jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no minimum
        use_atomic_file_cache(directory)
    # which devices the job's programs run on (a GPU when JAX for CUDA sees one)
    log.info("JAX %s on %s", jax.__version__, ", ".join(str(d) for d in jax.devices()))


def model_for(
    analysis: dict[str, Any],
    trace,
    states: np.ndarray,
    *,
    moments: dict[str, float] | None = None,
) -> ObservationModel:
    """The observation model of a configured analysis (its ``nlsq`` initial and fixed).

    With the data's ``moments`` (the ``moments`` of an observations file's header), free
    parameters without an ``nlsq.initial`` value start at the data's scale
    (:mod:`phasemake.fit.start`); without, at 1.
    """
    from phasemake.data.obsmodel import ObservationModel
    from phasemake.fit.start import start_values

    nlsq = analysis.get("nlsq", {})
    initial, fixed = dict(nlsq.get("initial", {})), nlsq.get("fixed", {})
    if moments:
        kind = analysis["observations"]
        start = start_values(kind, trace, states, moments, initial=initial, fixed=fixed)
        initial = {**start, **initial}
    linkage = analysis.get("linkage") or {}
    return ObservationModel(
        analysis["observations"],
        trace,
        states=states,
        initial=initial,
        fixed=fixed,
        folded=bool(analysis.get("data", {}).get("folded", False)),
        misidentification=bool(analysis.get("misidentification", False)),
        bootstrap=int(linkage.get("bootstrap", 0)),
        bootstrap_seed=int(linkage.get("seed", 0)),
        linked=bool(block_choice(linkage)) or "vcf" in analysis.get("data", {}),
    )


def model_from_files(
    analysis: dict[str, Any],
    *,
    trace: str | os.PathLike[str],
    graph: str | os.PathLike[str],
    observations: str | os.PathLike[str] | None = None,
) -> ObservationModel:
    """:func:`model_for` with the trace and the graph read (and verified) from their files:
    each must hold the spec its cache path names, and the trace must be the graph's (same
    spec, same parameters), else :class:`~phasemake.core.errors.ArtefactError` is raised.
    With ``observations``, the start is matched to the data's scale (see :func:`model_for`).

    Examples
    --------
    >>> model = model_from_files(analysis, trace="cache/traces/<spec>.h5",
    ...                          graph="cache/graphs/<spec>.h5")  # doctest: +SKIP
    """
    from phasemake.graph.files import read_graph
    from phasemake.trace.files import load_trace

    g = read_graph(graph)  # a cache path: must hold the spec of its name
    spec = g.provenance.get("spec")
    moments = read_header(observations).get("moments") if observations is not None else None
    tr = with_history(analysis, g, load_trace(trace, spec=spec, parameters=g.parameters))
    return model_for(analysis, tr, g.states, moments=moments)


def with_history(analysis: dict[str, Any], graph, trace):
    """The trace under the analysis's ``history`` (an :class:`~phasemake.EpochTrace`,
    whose parameters are the history's), or the trace itself without one."""
    history = analysis.get("history")
    if not history:
        return trace
    from phasemake.trace.epochs import epochs
    from phasemake.trace.epochtrace import EpochTrace

    if "demes" in history:
        from phasemake.graph.demesconfig import demes_history

        return EpochTrace(trace, demes_history(history, graph))
    spec = epochs(
        history["parameters"],
        rates=history["rates"],
        times=history.get("times", []),
        graph=graph,
    )
    return EpochTrace(trace, spec)


def prepare_observations(
    analysis: dict[str, Any],
    graph,
    trace,
    *,
    regions: list[str | os.PathLike[str]] | None = None,
) -> Observations:
    """Read and validate ``data.file``, join the extracted ``regions`` of ``data.vcf``
    (:func:`phasemake.data.genomedata.join_regions`), or simulate ``data.simulate``
    exactly; then number the blocks of linked rows (the ``block`` column,
    :func:`phasemake.fit.linkage.block_ids`)."""
    from phasemake.fit.linkage import block_ids

    obs = _observations(analysis, graph, trace, regions)
    blocks = block_ids(obs.columns, analysis.get("linkage"))
    return Observations(obs.kind, {**obs.columns, "block": blocks.astype(np.float64)})


def _observations(analysis, graph, trace, regions) -> Observations:
    from phasemake.data.obsmodel import MISID, MUTATION

    kind, data = analysis["observations"], analysis["data"]
    trace = with_history(analysis, graph, trace)
    n_classes = graph.states.shape[1] - 1 if kind == "sfs" else None
    folded = bool(data.get("folded", False))
    if "vcf" in data:
        from phasemake.data.genomedata import join_regions, skipped_text

        obs, info = join_regions(
            regions or [], n_classes=observed_classes(n_classes, folded=folded),
            source=data["vcf"]["file"],
        )  # fmt: skip
        log.info(
            "%d records read; skipped: %s; %d windows without a callable site dropped",
            info["records"],
            skipped_text(info["skipped"]),
            info["dropped_windows"],
        )
        return obs
    if "file" in data:
        return read_data_file(
            data["file"],
            kind=kind,
            n_classes=observed_classes(n_classes, folded=folded),
            windows=data.get("windows", 1),
        )
    sim = data["simulate"]
    misid = bool(analysis.get("misidentification"))
    names = tuple(trace.parameters) + ((MUTATION,) if kind == "sfs" else ()) + ((MISID,) * misid)
    missing = [n for n in names if n not in sim["theta"]]
    if missing or set(sim["theta"]) - set(names):
        raise ValueError(
            f"data.simulate.theta has {sorted(sim['theta'])}; expected exactly {list(names)}"
        )
    theta = np.array([sim["theta"][n] for n in trace.parameters], dtype=np.float64)
    if kind == "absorption_times" and analysis.get("history"):
        from phasemake.data.epochsim import simulate_epoch_times

        return simulate_epoch_times(
            graph,
            trace.history,
            theta,
            size=sim["size"],
            seed=sim["seed"],
            censor_at=sim.get("censor_at"),
        )
    if kind == "absorption_times":
        return simulate_absorption_times(
            graph, theta, size=sim["size"], seed=sim["seed"], censor_at=sim.get("censor_at")
        )
    rewards = graph.states[:, :n_classes].astype(np.float64)
    expected = np.asarray(trace.expectation(theta, rewards)) * sim["theta"][MUTATION]
    expected = observed_sfs(
        expected,
        misid=sim["theta"][MISID] if misid else None,
        fold_matrix=fold(n_classes + 1) if folded else None,
    )
    sites = np.full(sim["windows"], float(sim["sites"]))
    return simulate_sfs(expected, sites=sites, seed=sim["seed"])


def _observed(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``data`` section less what does not make the observations (``truth``: what the
    estimates are compared with)."""
    return None if data is None else {k: v for k, v in data.items() if k != "truth"}


def check_observations(
    path: str | os.PathLike[str],
    meta: dict[str, Any],
    *,
    data: dict[str, Any] | None = None,
    previous_state: str | os.PathLike[str] | None = None,
) -> None:
    """Check that the observations file ``path`` (its verified header ``meta``) holds what
    the fit asks for: the configured ``data`` section it was made from, and the data (by
    checksum) that the previous pass's state was computed on.

    Raises
    ------
    phasemake.core.errors.ArtefactError
        Naming the file, what it holds and what was expected; deleting it gets it rebuilt.
    """
    from phasemake.core.errors import ArtefactError

    made_from = _observed(meta.get("provenance", {}).get("data"))
    if data is not None and made_from != _observed(data):
        raise ArtefactError(
            f"{path} was made from data {made_from}, but the config's data is {data}; "
            "delete it so it is rebuilt"
        )
    if previous_state is not None:
        fitted = read_state(previous_state).get("data")
        if fitted != meta["checksum"]:
            raise ArtefactError(
                f"{path} holds data {meta['checksum']}, but {previous_state} was computed "
                f"on data {fitted}; delete {os.path.dirname(os.fspath(previous_state))} "
                "and the later passes so the fit is redone"
            )


def discard_foreign_observations(
    path: str | os.PathLike[str], data: dict[str, Any], *, dry_run: bool = False
) -> list[str]:
    """Parse time: remove the observations file ``path`` if it is corrupt or was not made
    from the configured ``data`` (see :func:`check_observations`), so that Snakemake
    rebuilds it; a dry run only reports. Returns one message per problem.

    Examples
    --------
    >>> discard_foreign_observations("no/such/observations.h5", {})
    []
    """
    from phasemake.core.errors import ArtefactError

    if not os.path.exists(path):
        return []
    try:
        check_observations(path, read_header(path), data=data)
    except ArtefactError as err:
        if dry_run:
            return [f"{err} (dry run: not removed; a real run removes it)"]
        os.unlink(path)
        return [f"{err}; removed it so it is rebuilt"]
    return []


def _phi(model: ObservationModel, previous_state: str | None) -> np.ndarray:
    if previous_state is None:
        return model.par.phi0()
    state = read_state(previous_state)
    if state["next"] is None:
        raise ValueError(f"{previous_state} has stopped ({state['reason']}); nothing to evaluate")
    return np.asarray(state["next"])


def accumulate_chunk(
    model: ObservationModel,
    observations: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    chunk: int,
    chunks: int,
    previous_state: str | None,
    data: dict[str, Any] | None = None,
) -> Accumulator:
    """One chunk job: statistics of chunk ``chunk`` of ``chunks`` at the point the
    previous state proposed (the initial point for the first pass), streamed block by
    block; written as a checksummed HDF5 file. The observations must be those of the
    configured ``data`` (if given) and of the previous pass (see
    :func:`check_observations`)."""
    meta = read_header(observations)
    check_observations(observations, meta, data=data, previous_state=previous_state)
    phi = _phi(model, previous_state)
    budget = model.budget(phi, meta["t_max"])
    blocks = block_ranges(len(meta["block_checksums"]), chunks)[chunk]
    parts, rows, compute = [], 0, 0.0
    for block in iter_blocks(observations, blocks):
        t0 = time.perf_counter()
        parts.append(model.accumulate(phi, block, budget=budget, rows=meta["block_rows"]))
        compute += time.perf_counter() - t0
        rows += block.n_rows
        log.info(
            "block of %d rows done; %d rows, %.3f s of compute so far", block.n_rows, rows, compute
        )
    if parts:
        acc = Accumulator.total(parts)
    else:  # more chunks than blocks: an empty chunk
        p = len(phi)
        empty = BlockScores.from_rows(
            np.zeros(0), np.zeros((0, p)), replicates=model.bootstrap, seed=model.bootstrap_seed
        )  # (its bread: zeros)
        acc = Accumulator(np.zeros((p, p)), np.zeros(p), 0.0, 0.0, 0.0, empty)
    block_arrays, block_meta = acc.blocks.to_arrays()
    write_artefact(
        output,
        kind=ACC_KIND,
        version=CHUNK_VERSION,
        arrays={"jtj": acc.jtj, "jtr": acc.jtr, "phi": phi, **block_arrays},
        meta={
            "chi2": acc.chi2,
            "rr": acc.rr,
            "count": acc.count,
            **block_meta,
            "data": meta["checksum"],
            "chunk": chunk,
            "chunks": chunks,
            "budget": budget,
        },
    )
    return acc


def step_nlsq(
    chunk_files: list[str],
    output: str | os.PathLike[str],
    *,
    previous_state: str | None,
    settings: LMSettings,
) -> dict[str, Any]:
    """The reducer: sum the chunk files in order, take one LM step, write the state."""
    accs, phis, data = [], [], set()
    for path in chunk_files:
        arrays, meta = read_artefact(path, kind=ACC_KIND, versions=(CHUNK_VERSION,))
        blocks = BlockScores.from_arrays(arrays, meta)
        accs.append(
            Accumulator(
                arrays["jtj"], arrays["jtr"], meta["chi2"], meta["rr"], meta["count"], blocks
            )
        )
        phis.append(arrays["phi"])
        data.add(meta["data"])
    if len(data) != 1 or any(not np.array_equal(p, phis[0]) for p in phis):
        raise ValueError(f"chunk files {chunk_files} were computed on different data or points")
    previous = None if previous_state is None else read_state(previous_state)
    state = lm_update(previous, phis[0], Accumulator.total(accs), settings)
    state["data"] = data.pop()
    write_state(output, state)
    return state


def streamed_evaluator(
    model: ObservationModel, observations: str | os.PathLike[str], *, chunks: int = 1
) -> Callable[[np.ndarray], Accumulator]:
    """``φ ↦`` the statistics of every row of ``observations`` at ``φ``, streamed block by
    block in file order (memory: one block), with the budget a chunk job would use and
    summed as a pass of ``chunks`` chunk jobs sums them (bit for bit)."""
    meta = read_header(observations)
    groups = block_ranges(len(meta["block_checksums"]), chunks)

    def evaluate(phi: np.ndarray) -> Accumulator:
        budget = model.budget(phi, meta["t_max"])
        totals = []
        for blocks in groups:
            parts = [
                model.accumulate(phi, block, budget=budget, rows=meta["block_rows"])
                for block in iter_blocks(observations, blocks)
            ]
            if parts:
                totals.append(Accumulator.total(parts))
        return Accumulator.total(totals)

    return evaluate


def profile_fit(
    model: ObservationModel,
    observations: str | os.PathLike[str],
    state_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    range_factor: float,
    settings: LMSettings,
    chunks: int = 1,
) -> dict[str, Any]:
    """The ``profile_nlsq`` job: the 95% profile-likelihood interval of every free
    parameter around the final state's best point (:mod:`phasemake.fit.profile`), each
    evaluation a streamed pass over the observations summed as a pass of ``chunks`` chunk
    jobs would sum it; written as a checksummed JSON artefact that :func:`write_fit` merges
    into ``fit.json``."""
    meta = read_header(observations)
    state = read_state(state_path)
    check_observations(observations, meta, previous_state=state_path)
    evaluate = streamed_evaluator(model, observations, chunks=chunks)
    calls = 0

    def counted(phi: np.ndarray) -> Accumulator:
        nonlocal calls
        calls += 1
        acc = evaluate(phi)
        log.info("evaluation %d at θ = %s: χ² %.12g", calls, np.exp(phi).tolist(), acc.chi2)
        return acc

    profile = profile_state(model, state, counted, range_factor=range_factor, settings=settings)
    profile = {**profile, "data": state["data"], "state": state["best"]["phi"]}
    write_json_artefact(output, kind=PROFILE_KIND, version=VERSION, payload=profile)
    return profile


def write_fit(
    model: ObservationModel,
    state_path: str,
    output: str,
    *,
    profile: str | os.PathLike[str] | None = None,
    **extra: Any,
) -> dict:
    """The fit summary of the final state (see :func:`phasemake.fit.nlsq.fit_summary`),
    with the profile intervals of the ``profile`` file (:func:`profile_fit`) if given;
    that file must be of this state's best point and data."""
    state = read_state(state_path)
    intervals = None
    if profile is not None:
        intervals = read_json_artefact(profile, kind=PROFILE_KIND, versions=(VERSION,))
        if intervals["data"] != state["data"] or intervals["state"] != state["best"]["phi"]:
            from phasemake.core.errors import ArtefactError

            raise ArtefactError(
                f"{profile} was computed around another fit than {state_path}; delete it "
                "so it is recomputed"
            )
    fit = {**fit_summary(model, state, profile=intervals), "data": state["data"], **extra}
    write_json_artefact(output, kind=FIT_KIND, version=VERSION, payload=fit)
    return fit


def read_fit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified ``fit.json`` (:func:`write_fit`)."""
    return read_json_artefact(path, kind=FIT_KIND, versions=(VERSION,))
