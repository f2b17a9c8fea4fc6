"""Helpers the Snakemake workflow calls at parse time (this module never imports snakemake)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from phasemake.configcheck import ConfigError, check_model_params
from phasemake.core.artefact import atomic_path
from phasemake.core.errors import ArtefactError, DataError, GraphBuildError, PhasemakeError
from phasemake.core.expressions import check_expression
from phasemake.data.datafiles import check_data_head
from phasemake.data.genomedata import check_genome_analysis
from phasemake.data.observations import observed_classes
from phasemake.graph.build import DEFAULT_MAX_STATES
from phasemake.graph.cache import GraphCache
from phasemake.graph.demesconfig import resolve_demes_model
from phasemake.graph.files import read_graph
from phasemake.graph.model import Model
from phasemake.graph.resolve import load_model
from phasemake.graph.spechash import spec_hash

__all__ = [
    "GraphRecipe",
    "ModelSpec",
    "attach_histories",
    "check_analyses",
    "check_history",
    "count_states",
    "data_rows",
    "discard_invalid_artefacts",
    "remember_artefacts",
    "resolve_chunks",
    "resolve_model_specs",
    "sfs_classes",
]


class ModelSpec(NamedTuple):
    """A configured model: its config name, callback reference, params and spec hash."""

    name: str
    callback: str
    params: dict[str, Any]
    max_states: int
    spec: str
    model: Model
    history: dict[str, Any] | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        """What the analyses fit: the history's parameters, else the callback's."""
        if self.history:
            return tuple(self.history["parameters"])
        return tuple(self.model.parameters)


class GraphRecipe(NamedTuple):
    """What ``build_graph`` needs to build a spec's graph, as one Snakemake param whose
    ``repr`` (what Snakemake's params trigger compares) is the spec alone: renaming a model,
    moving its file or raising its ``max_states`` leaves the graph, named by its spec, as it
    is (docs/cache.md)."""

    name: str
    callback: str
    params: dict[str, Any]
    max_states: int
    spec: str

    def __repr__(self) -> str:
        return f"GraphRecipe(spec={self.spec!r})"

    @classmethod
    def of(cls, model: ModelSpec) -> GraphRecipe:
        """The recipe of a configured model."""
        return cls(model.name, model.callback, dict(model.params), model.max_states, model.spec)


def check_history(name: str, history: dict[str, Any], model: Model) -> None:
    """Parse-time check of ``models.<name>.history`` (no JAX): K-1 boundaries for K epochs,
    rates named after the callback's, and every expression allowed and in the history's
    parameters (:mod:`phasemake.core.expressions`).

    Raises
    ------
    PhasemakeError
        Naming ``models.<name>.history.<key>`` and what was expected.
    """
    where = f"config models.{name}.history"
    for key in ("parameters", "rates"):
        if not history.get(key):
            raise PhasemakeError(
                f"{where}.{key} is missing; a history needs parameters (the names to fit) "
                "and rates (one mapping per epoch), e.g. parameters: [c1, c2, tau], rates: "
                "[{coal: c1}, {coal: c2}], times: [tau]"
            )
    names = list(history["parameters"])
    if len(set(names)) != len(names):
        raise PhasemakeError(f"{where}.parameters: duplicate names in {names}")
    rates, times = history["rates"], history.get("times", [])
    if len(times) != len(rates) - 1:
        raise PhasemakeError(
            f"{where}: {len(rates)} epochs (rates) need {len(rates) - 1} boundaries (times); "
            f"got {len(times)}"
        )
    for k, epoch in enumerate(rates):
        for rate, expr in epoch.items():
            if rate not in model.parameters:
                raise PhasemakeError(
                    f"{where}.rates[{k}].{rate}: not a rate of model {model.name!r}; expected "
                    f"one of {list(model.parameters)}"
                )
            check_expression(expr, names, f"{where}.rates[{k}].{rate}")
    for k, expr in enumerate(times):
        check_expression(expr, names, f"{where}.times[{k}]")


def attach_histories(analyses: dict[str, dict[str, Any]], models: dict[str, ModelSpec]) -> None:
    """Copy each model's history into its analyses' settings (``history``), so that the
    jobs of an analysis evaluate it, and a change of it re-runs them (params trigger)."""
    for a in analyses.values():
        spec = models.get(a["model"])
        if spec is not None and spec.history:
            a["history"] = spec.history
            if "theta0" in spec.history:  # a demes model: NLSQ starts at the file's values
                nlsq = a.setdefault("nlsq", {})
                start = dict(zip(spec.history["parameters"], spec.history["theta0"], strict=True))
                nlsq["initial"] = {**start, **(nlsq.get("initial") or {})}
        else:
            a.pop("history", None)


def resolve_model_specs(
    models: dict[str, dict[str, Any]], *, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, ModelSpec]:
    """Load every configured model and compute its spec hash (no graph is built).

    Parameters
    ----------
    models
        The validated ``models:`` section of the config: name → ``{callback, params,
        max_states}``.
    base_dir
        Directory that relative model-file paths are resolved against (default: the
        current working directory).

    Returns
    -------
    dict
        Config name → :class:`ModelSpec`, in config order.

    Raises
    ------
    PhasemakeError
        Naming the config entry (``models.<name>``) whose callback or params are invalid:
        unknown or missing param names, or values the initial distribution rejects (see
        :func:`phasemake.configcheck.check_model_params`).

    Examples
    --------
    >>> specs = resolve_model_specs(
    ...     {"k": {"callback": "phasemake.models:kingman", "params": {"n": 5},
    ...            "max_states": 100}})
    >>> len(specs["k"].spec)
    32
    """
    out = {}
    for name, entry in models.items():
        params = dict(entry.get("params") or {})
        callback = entry.get("callback")
        try:
            history = entry.get("history") or {}
            if not any(history.get(k) for k in ("parameters", "rates", "times")):
                history = {}  # the schema's default: one epoch
            if entry.get("demes"):
                model, callback, params, history = resolve_demes_model(
                    {**entry, "history": history}, base_dir=base_dir
                )
            elif not callback:
                raise PhasemakeError(
                    "neither callback nor demes is given; expected callback: "
                    "'path/to/file.py:name' (or 'package.module:name'), or demes: "
                    "{file: 'path/to/model.yaml', samples: {A: 20}}"
                )
            else:
                model = load_model(callback, base_dir=base_dir)
                check_model_params(name, model, params)
                if history:
                    check_history(name, history, model)
            spec = spec_hash(model, **params)
        except ConfigError:
            raise  # already names models.<name>.params
        except PhasemakeError as err:
            raise type(err)(f"config models.{name}: {err}") from err
        out[name] = ModelSpec(
            name=name,
            callback=callback,
            params=params,
            max_states=int(entry.get("max_states", DEFAULT_MAX_STATES)),
            spec=spec,
            model=model,
            history=history or None,
        )
    return out


#: Rows per NLSQ chunk job when ``chunks`` is ``auto`` (the schema's default of
#: ``chunk_rows``): about 12 s of work a pass for a two-deme model (0.5 µs a row, measured),
#: ten times a job's fixed cost. Memory does not grow with it: a chunk streams its blocks.
DEFAULT_CHUNK_ROWS = 25_000_000

#: The verification memo of a cache directory: artefact path -> stat stamp when verified.
VERIFIED = "verified.json"
#: Files modified more recently than this (seconds) are verified but not remembered: a
#: rewrite within the file system's timestamp resolution could keep size and mtime.
SETTLE_SECONDS = 2.0


#: Snakemake command-line options (``args`` attributes) under which the workflow is parsed
#: but no job runs: the parse must then change no file, only report.
def _stamp(path: Path) -> list[int] | None:
    """Size, modification time, inode and status-change time: ``os.utime`` can restore a
    modification time, but any write or ``utime`` since a file was verified moves its
    ctime, so a file changed in place is read again."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _read_memo(cache: Path) -> dict[str, list[int]]:
    try:
        memo = json.loads((cache / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(cache: Path, memo: dict[str, list[int]]) -> None:
    try:
        with atomic_path(cache / VERIFIED) as tmp:
            tmp.write_text(json.dumps(memo, sort_keys=True))
    except OSError:  # a read-only shared cache: verify again next time
        pass


def _artefacts(graphs: GraphCache, specs: list[str]) -> Iterator[tuple[str, Path, str | None]]:
    """``(kind, path, None)`` of each graph, stitched trace and unit file of ``specs``, and
    ``("plan", path, why)`` for each plan (``why`` is ``None`` if it is valid, else why
    not: a plan that cannot be read, or of another spec, is re-planned)."""
    from phasemake.trace.files import read_plan

    for spec in specs:
        yield "graph", graphs.graph_path(spec), None
        yield "trace", graphs.trace_dir / f"{spec}.h5", None
        plan = graphs.plan_path(spec)
        if not plan.exists():
            continue
        try:
            units, _ = read_plan(plan, spec=spec)
        except ArtefactError as err:
            yield "plan", plan, str(err)
            continue
        yield "plan", plan, None
        for unit in units:
            yield "unit", graphs.unit_path(unit.key), None


def _verify(kind: str, path: Path, spec: str) -> None:
    """Read ``path`` as an artefact of ``kind`` for ``spec``; raise ArtefactError if it is
    corrupt, truncated, foreign or of another spec (or unit key)."""
    from phasemake.trace.files import read_trace_artefact, read_unit

    if kind == "graph":
        read_graph(path, spec=spec)
    elif kind == "trace":
        read_trace_artefact(path, spec=spec)
    else:
        read_unit(path)


_VERB = {"graph": "rebuilt", "trace": "re-stitched", "unit": "recomputed", "plan": "re-planned"}


def discard_invalid_artefacts(
    cache: str | os.PathLike[str], specs: list[str], *, dry_run: bool = False
) -> list[str]:
    """Verify the cached graphs, plans, stitched traces and trace units of ``specs``;
    delete invalid ones (report them only when ``dry_run``).

    Called at parse time so that Snakemake sees a corrupt, truncated or foreign file (a
    valid file of another spec or unit key at this path) as missing and recomputes it (and
    everything downstream). A dry run (``snakemake -n``) changes nothing: it only reports
    (the real run then removes and rebuilds). Returns one message per invalid file. A file
    already verified (or recorded by :func:`remember_artefacts` after the run that wrote
    it) with the same size, modification time, inode and ctime is not read again: the memo
    ``{cache}/verified.json`` keeps a dry run of a workflow with hundreds of units fast.
    ``phasemake cache verify`` reads everything.

    Examples
    --------
    >>> import tempfile
    >>> discard_invalid_artefacts(tempfile.mkdtemp(), ["0" * 32])
    []
    """
    root = Path(cache)
    graphs = GraphCache(root)
    memo = _read_memo(root)
    changed, messages, now = False, [], time.time()
    for spec in specs:
        for kind, path, problem in _artefacts(graphs, [spec]):
            stamp, key = _stamp(path), str(path.relative_to(root))
            if problem is None and kind != "plan":
                if stamp is None or memo.get(key) == stamp:
                    continue
                try:
                    _verify(kind, path, spec)
                except ArtefactError as err:
                    problem = str(err)
                else:
                    if now - stamp[1] / 1e9 > SETTLE_SECONDS and not dry_run:
                        memo[key] = stamp
                        changed = True
                    continue
            if problem is None:
                continue
            if dry_run:
                messages.append(f"{problem} (dry run: not removed; a real run removes it)")
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as err:  # a read-only (shared) cache: its writer must rebuild it
                messages.append(
                    f"{problem}; it cannot be removed ({err.strerror}): a read-only cache? "
                    "ask whoever writes the cache to rebuild it (phasemake cache verify)"
                )
                continue
            changed |= memo.pop(key, None) is not None
            messages.append(f"{problem}; removed it so it is {_VERB[kind]}")
    if changed:
        _write_memo(root, memo)
    return messages


def remember_artefacts(cache: str | os.PathLike[str], specs: list[str]) -> int:
    """Record the graph, trace and unit files of ``specs`` as verified without reading them
    (at the end of a run: each was either verified at parse time or written by a job of
    the run). Returns how many were recorded."""
    root = Path(cache)
    memo = _read_memo(root)
    count = 0
    for kind, path, _ in _artefacts(GraphCache(root), specs):
        stamp = _stamp(path) if kind != "plan" else None
        if stamp is not None:
            key = str(path.relative_to(root))
            count += memo.get(key) != stamp
            memo[key] = stamp
    if count:
        _write_memo(root, memo)
    return count


def data_rows(analysis: dict[str, Any]) -> int:
    """Rows of an analysis's data, known at parse time without reading the data: the
    simulated size (or windows), else from the file's header (``.npy``, ``.npz``, ``.h5``)
    or its line count (text); 0 when that fails (the data job then reports why). An HDF5
    file with a link or a non-numeric column is refused here (DataError naming the column):
    its links are inspected, never followed."""
    data = analysis["data"]
    if "simulate" in data:
        sim = data["simulate"]
        return int(
            sim["size"] if analysis["observations"] == "absorption_times" else sim["windows"]
        )
    if "vcf" in data:
        from phasemake.data.genomedata import genome_windows

        return genome_windows(analysis)
    path = Path(data["file"])
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from phasemake.data.hdf5input import hdf5_rows

        try:  # a link or a non-numeric column: a DataError here, at parse time
            return hdf5_rows(path)  # links are inspected, never followed
        except OSError:
            return 0
    try:
        if suffix == ".trees":
            return int(data.get("windows", 1))
        if suffix == ".npy":
            import numpy as np

            return int(np.load(path, mmap_mode="r").shape[0])
        if suffix == ".npz":
            import zipfile

            import numpy as np

            with zipfile.ZipFile(path) as z, z.open(z.namelist()[0]) as fh:
                fmt = np.lib.format
                major, _ = fmt.read_magic(fh)
                read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
                shape = read(fh)[0]
            return int(shape[0])
        with open(path, "rb") as fh:  # text: one row a line, less the header
            return max(
                sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1, 0
            )
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def resolve_chunks(analyses: dict[str, dict[str, Any]]) -> set[str]:
    """Replace ``chunks: auto`` in each analysis with ``ceil(rows / chunk_rows)`` (at least
    1), in place, so that the rest of the workflow sees a number. The count depends on the
    data only, never on ``--cores``: results stay the same on any machine.

    Returns the analyses whose passes have one chunk of at most ``chunk_rows`` rows (their
    chunk job runs in Snakemake's main process); a ``chunks: 1`` set by hand is counted.

    Examples
    --------
    >>> a = {"observations": "sfs", "chunks": "auto", "chunk_rows": 100,
    ...      "data": {"simulate": {"windows": 250}}}
    >>> b = {"observations": "sfs", "chunks": 1, "chunk_rows": 100,
    ...      "data": {"simulate": {"windows": 50}}}
    >>> resolve_chunks({"x": a, "y": b}), a["chunks"]
    ({'y'}, 3)
    """
    small = set()
    for name, a in analyses.items():
        limit = int(a.get("chunk_rows", DEFAULT_CHUNK_ROWS))
        if a.get("chunks", "auto") == "auto":
            a["chunks"] = max(1, -(-data_rows(a) // limit))
            one_small = a["chunks"] == 1
        else:
            one_small = a["chunks"] == 1 and data_rows(a) <= limit
        if one_small:
            small.add(name)
    return small


#: States that ``phasemake check`` explores per model before it stops counting.
CHECK_STATES = 20_000


def count_states(spec: ModelSpec, *, bound: int = CHECK_STATES) -> int | None:
    """The number of states of a configured model, or ``None`` when it has more than
    ``bound`` (the exploration stops there: the build job explores up to ``max_states``).

    Raises
    ------
    PhasemakeError
        Naming ``models.<name>.max_states`` when the model has more states than that cap
        (found within ``bound``), or naming the model when its callback fails.

    Examples
    --------
    >>> specs = resolve_model_specs(
    ...     {"k": {"callback": "phasemake.models:kingman", "params": {"n": 5}}})
    >>> count_states(specs["k"])
    5
    """
    from phasemake.graph.build import build_graph

    cap = min(bound, spec.max_states)
    try:
        return build_graph(spec.model, max_states=cap, **spec.params).n_vertices
    except GraphBuildError as err:
        if "has more than max_states=" not in str(err):
            raise PhasemakeError(f"config models.{spec.name}: {err}") from err
        if cap == spec.max_states:
            raise PhasemakeError(
                f"config models.{spec.name}.max_states = {spec.max_states}: the model has "
                f"more states; raise models.{spec.name}.max_states if the state space is "
                f"finite and fits in memory, or reduce models.{spec.name}.params"
            ) from None
        return None


def sfs_classes(spec: ModelSpec, *, where: str) -> int:
    """The number of SFS classes (n - 1) of a block-counting model, checked on its initial
    states: the SFS rewards are ``state[i - 1]``, the lineages subtending ``i`` of the ``n``
    samples, so every initial state must have length n >= 2 and ``sum (i + 1) state[i] = n``.

    Raises
    ------
    PhasemakeError
        Naming ``where`` and the model when a state does not have that shape.

    Examples
    --------
    >>> specs = resolve_model_specs(
    ...     {"k": {"callback": "phasemake.models:kingman", "params": {"n": 5}},
    ...      "b": {"callback": "phasemake.models:block_counting", "params": {"n": 5}}})
    >>> sfs_classes(specs["b"], where="analyses.a.observations")
    4
    >>> sfs_classes(specs["k"], where="analyses.a.observations")
    Traceback (most recent call last):
    ...
    phasemake.core.errors.PhasemakeError: analyses.a.observations = 'sfs' needs ...
    """
    for state, _ in spec.model.initial_distribution(**spec.params):
        n = len(state)
        if n < 2 or sum((i + 1) * c for i, c in enumerate(state)) != n:
            raise PhasemakeError(
                f"{where} = 'sfs' needs a block-counting model (state[i-1] = lineages "
                f"subtending i of the n samples, so that sum(i * state[i-1]) = n = the "
                f"state's length), but model {spec.name!r} starts in state {list(state)}; "
                "use phasemake.models:block_counting, or observations: absorption_times"
            )
    return n - 1


def check_analyses(analyses: dict[str, dict[str, Any]], models: dict[str, ModelSpec]) -> None:
    """Parse-time checks of the validated ``analyses:`` section against the models.

    Raises
    ------
    PhasemakeError
        Naming ``analyses.<name>.<key>``: an unknown model, parameter names that are not
        the model's (or, for a prior, not free), simulated parameter values that do not
        match them, more shards than simulated rows, or a data file that does not exist.
    """
    for name, a in analyses.items():
        where = f"analyses.{name}"
        if a["model"] not in models:
            raise PhasemakeError(
                f"{where}.model = {a['model']!r} is not a configured model; expected one of "
                f"{sorted(models)}"
            )
        names = list(models[a["model"]].parameters)
        if a["observations"] == "sfs":
            names.append("mutation")
        if a.get("misidentification"):
            names.append("misid")
        nlsq = a.get("nlsq", {})
        for key, values in (
            ("nlsq.initial", nlsq.get("initial", {})),
            ("nlsq.fixed", nlsq.get("fixed", {})),
        ):
            for p in values:
                if p not in names:
                    raise PhasemakeError(f"{where}.{key}.{p}: unknown parameter; expected {names}")
        cmc = a.get("cmc", {})
        free = [n for n in names if n not in nlsq.get("fixed", {})]
        for p in cmc.get("prior", {}):
            if p not in free:
                raise PhasemakeError(
                    f"{where}.cmc.prior.{p}: not a free parameter; expected one of {free}"
                )
        data = a["data"]
        size = data.get("simulate", {}).get(
            "size" if a["observations"] == "absorption_times" else "windows"
        )
        shards = cmc.get("shards", "auto")
        if isinstance(shards, int) and size is not None and shards > size:
            raise PhasemakeError(
                f"{where}.cmc.shards = {shards} but the simulation has {size} rows; "
                f"expected at most {size}"
            )
        if "simulate" in data and data.get("truth"):
            raise PhasemakeError(
                f"{where}.data.truth: only for data from a file; the truth of a simulation "
                f"is its data.simulate.theta (remove {where}.data.truth)"
            )
        for p in data.get("truth", {}):
            if p not in names:
                raise PhasemakeError(
                    f"{where}.data.truth.{p}: unknown parameter; expected names from {names}"
                )
        try:  # data.vcf, folded, misidentification, linkage; a VCF's regions
            check_genome_analysis(a, where=where)
        except DataError as err:
            raise PhasemakeError(str(err)) from None
        if "file" in data and not os.path.isfile(data["file"]):
            raise PhasemakeError(f"{where}.data.file = {data['file']!r} does not exist")
        n_classes = None
        if a["observations"] == "sfs":
            n_classes = sfs_classes(models[a["model"]], where=f"{where}.observations")
            if "vcf" in data:  # the extraction projects to the model's lineages
                a["lineages"] = n_classes + 1
            n_classes = observed_classes(n_classes, folded=bool(data.get("folded")))
        if "file" in data:
            try:  # the header and the first rows now; the data job reads the rest
                check_data_head(data["file"], kind=a["observations"], n_classes=n_classes)
            except DataError as err:
                raise PhasemakeError(f"{where}.data.file: {err}") from None
        sim = data.get("simulate")
        if sim is not None:
            if sorted(sim["theta"]) != sorted(names):
                raise PhasemakeError(
                    f"{where}.data.simulate.theta has {sorted(sim['theta'])}; expected a "
                    f"value for each of {names}"
                )
