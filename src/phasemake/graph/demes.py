"""Demographic models from `demes <https://popsim-consortium.github.io/demes-spec-docs/>`_
files: :func:`from_demes` gives a structured coalescent and its history of epochs.

Conventions (those of msprime's ``Demography.from_demes``): times in generations ago,
sizes in diploid individuals; two lineages in a deme of size N coalesce at rate
``1/(2N)`` per generation; a demes migration ``source -> dest`` at rate m moves each
lineage in ``dest`` to ``source`` at rate m backwards in time; at a deme's ``start_time``
its lineages move to its ancestors in the given proportions; a pulse moves each lineage in
``dest`` to ``sources[j]`` with probability ``proportions[j]`` (it stays with the rest).
Events at one time are applied as msprime does: splits and branches, then pulses (the
last listed first), then mergers and admixtures.

**Free quantities** are named by paths into the resolved graph (``demes.load(...)``, times
in generations; symmetric migrations are listed there as asymmetric pairs):

- ``<deme>.start_time`` (finite), ``<deme>.epochs[i].end_time`` (> 0),
  ``<deme>.epochs[i].start_size`` (for a constant epoch, its size), and
  ``<deme>.epochs[i].end_size`` (exponential epochs only);
- ``<deme>.proportions[j]`` for a deme with several ancestors, j < the last (the last
  proportion is 1 minus the others);
- ``migrations[i].rate``, ``migrations[i].start_time``, ``migrations[i].end_time``;
- ``pulses[i].time``, ``pulses[i].proportions[j]``.

Only quantities that can affect the sampled lineages are paths. A free time moves its
whole **boundary**: every time of the file equal to it (a split's parent end time and its
children's start times, a migration starting then) moves with it, and the boundaries keep
the file's order (an evaluation at values that reorder them is refused by
:class:`~phasemake.trace.epochtrace.EpochTrace`).

**Exponential epochs** are split into pieces at fixed fractions of the epoch (chosen at the
file's values), each with the exact mean of ``1/(2N(t))`` over it, so the cumulative
coalescence rate Λ is exact at every piece boundary. The pieces of an exponential epoch
satisfy ``Σ_pieces |g| c_max h³ / (12 R(a)) ≤ ε / (number of exponential epochs)``, with h
a piece's length, a its young end, c_max its largest rate, g the growth rate, ε =
``tolerance`` and R(a) (from below) the expected time for two lineages in the deme at time
a to coalesce there. **Bound** (one deme, any sample size): by the time change
``T = Λ⁻¹(T_Kingman)``, ``|S̃(t) - S(t)| ≤ S(a) |Λ̃(t) - Λ(t)|`` on a piece and
``∫|Λ̃ - Λ| ≤ |g| c_max h³/12``, while ``E[T] ≥ S(a) R(a)`` (the sample's ancestry lasts
at least as long as a pair's), so the relative error of E[T_MRCA] is at most ``tolerance``.
With several demes the same rule is applied to each deme; migration then adds errors of the
same (second) order that this bound does not cover, and the bound is not claimed for the
expected SFS. Pieces grow in number like ``tolerance^{-1/2}``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from phasemake.core.errors import PhasemakeError
from phasemake.graph.model import Model
from phasemake.graph.structured import (
    check_coalescence,
    compose_moves,
    const,
    demes_events,
    epoch_rates,
    event_weights,
    mean_rate,
    pieces,
    structured_coalescent,
    sub_boundary,
)
from phasemake.trace.epochs import Epochs, Event

__all__ = ["DemesModel", "from_demes"]

Fn = Callable[[jax.Array], jax.Array]


def _param(i: int) -> Fn:
    return lambda phi: phi[i]


@dataclass(frozen=True, eq=False)
class DemesModel:
    """A demes graph as a phasemake model and history (from :func:`from_demes`).

    Attributes
    ----------
    parameters
        The free quantities' paths: the names of φ.
    theta0
        Their values in the file (generations, individuals, per-generation rates,
        fractions).
    model, params
        ``phasemake.build_graph(model, **params)`` builds the graph.
    spec
        The model's reference (``"phasemake.graph.structured:structured_2"``).
    demes
        The demes of the state, in order (those that can hold sampled lineages).
    n_epochs
        The number of epochs of the history (sub-epochs included).
    """

    parameters: tuple[str, ...]
    theta0: np.ndarray
    model: Model
    params: dict[str, Any]
    spec: str
    demes: tuple[str, ...]
    n_epochs: int
    tolerance: float
    _rates: Fn = field(repr=False)
    _times: Fn = field(repr=False)
    _events: tuple[Any, ...] = field(repr=False)

    def history(self, graph: Any) -> Epochs:
        """The :class:`~phasemake.trace.epochs.Epochs` for ``graph`` (built from
        :attr:`model` and :attr:`params`)."""
        width = self.params.get("n", len(self.demes))
        if tuple(graph.parameters) != tuple(self.model.parameters) or (
            graph.states.shape[1] != width
        ):
            raise PhasemakeError(
                f"history: the graph's parameters {list(graph.parameters)} are not those of "
                f"{self.spec} {list(self.model.parameters)}; build it with "
                "phasemake.build_graph(dm.model, **dm.params)"
            )
        events = []
        for ev in self._events:
            if ev is None:
                events.append(None)
                continue
            moves, variables = ev
            try:
                src, tgt, entry, coef, exps = compose_moves(graph.states, moves, len(variables))
            except KeyError as err:
                raise PhasemakeError(
                    f"history: {err.args[0]}; build the graph with build_graph(dm.model, "
                    "**dm.params)"
                ) from None
            fn = _stack(variables)
            events.append(Event(src, tgt, event_weights(fn, entry, coef, exps, len(src))))
        return Epochs(
            self.parameters,
            self._rates,
            self._times,
            tuple(events),
            self.n_epochs,
            tuple(self.model.parameters),
            np.asarray(graph.states),
        )

    def epoch_trace(self, **build: Any) -> Any:
        """Build the graph, compile its trace and return the
        :class:`~phasemake.trace.epochtrace.EpochTrace` (``build``: options of
        :func:`phasemake.build_graph`, e.g. ``max_states``)."""
        from phasemake.graph.build import build_graph
        from phasemake.trace.epochtrace import EpochTrace
        from phasemake.trace.files import compile_trace

        graph = build_graph(self.model, **build, **self.params)
        return EpochTrace(compile_trace(graph), self.history(graph))


def _stack(fns: Sequence[Fn]) -> Fn:
    return lambda phi: jnp.stack([f(phi) for f in fns])


def from_demes(
    source: str | os.PathLike[str] | Any,
    samples: Mapping[str, int],
    *,
    free: Sequence[str] = (),
    sfs: bool = False,
    tolerance: float = 1e-6,
    max_epochs: int = 128,
) -> DemesModel:
    """A structured coalescent and its history of epochs from a demes graph.

    Parameters
    ----------
    source
        A demes YAML file (path) or a ``demes.Graph``.
    samples
        Deme name -> number of haploid lineages sampled at time 0.
    free
        Paths of the quantities to fit (see the module docstring for the grammar), in the
        order of φ; the rest keep the file's values.
    sfs
        Track the block-counting state (one deme only) so that the expected reward
        ``state[i-1]`` is the expected total length of branches subtending i samples.
    tolerance
        Relative error allowed in E[T_MRCA] from the piecewise-constant sizes of
        exponential epochs (see the module docstring for the bound).
    max_epochs
        Refuse histories with more epochs (each epoch adds to the compile time).

    Returns
    -------
    DemesModel
        ``dm.epoch_trace().expectation(dm.theta0)`` is E[T_MRCA] in generations.

    Examples
    --------
    >>> import demes
    >>> b = demes.Builder()
    >>> _ = b.add_deme("A", epochs=[dict(start_size=2000, end_time=100),
    ...                              dict(start_size=500)])
    >>> dm = from_demes(b.resolve(), {"A": 2}, free=["A.epochs[1].start_size"])
    >>> dm.parameters, dm.theta0.tolist(), dm.n_epochs
    (('A.epochs[1].start_size',), [500.0], 2)
    >>> round(float(dm.epoch_trace().expectation(dm.theta0)), 6)  # 1000 + 3000 e^{-0.1}
    3714.512254
    """
    graph = _load(source)
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise PhasemakeError(f"from_demes: tolerance={tolerance!r}; expected a number in (0, 1)")
    counts = _samples(graph, samples)
    tracked = _tracked(graph, counts)
    demes = [d for d in graph.demes if d.name in tracked]
    _refuse_unsupported(demes)
    if sfs and len(demes) != 1:
        raise PhasemakeError(
            "from_demes: sfs=True needs one deme (the block-counting state follows the "
            f"lineages of one population); the samples' history involves demes "
            f"{[d.name for d in demes]}"
        )
    quantities = _quantities(graph, tracked)
    names = _free(free, quantities, _quantities(graph, {d.name for d in graph.demes}))
    index = {p: i for i, p in enumerate(names)}
    theta0 = np.array([quantities[p][1] for p in names], dtype=np.float64)
    q = {p: (_param(index[p]) if p in index else const(v)) for p, (_, v) in quantities.items()}

    # boundaries: every distinct time of the file, free ones as parameters
    groups: dict[float, list[str]] = {}
    for p, (kind, v) in quantities.items():
        if kind == "time":
            groups.setdefault(v, []).append(p)
    time_fn: dict[float, Fn] = {0.0: const(0.0)}
    for v, paths in groups.items():
        chosen = [p for p in paths if p in index]
        if len(chosen) > 1:
            raise PhasemakeError(
                f"from_demes: free {chosen} are one boundary (all at time {v:g} in the "
                "file); free one of them and the others move with it"
            )
        time_fn[v] = q[chosen[0]] if chosen else const(v)
    nodes: dict[float, Fn] = {v: time_fn[v] for v in sorted(groups)}
    pos = {d.name: i for i, d in enumerate(demes)}
    sizes = {}  # (deme, epoch) -> (end fn, start fn, end-size fn, start-size fn)
    by_name = {d.name: d for d in graph.demes}
    n_exp = sum(ep.start_size != ep.end_size for d in demes for ep in d.epochs)
    for d in demes:
        for j, ep in enumerate(d.epochs):
            base = f"{d.name}.epochs[{j}]"
            n_s = q[f"{base}.start_size"]
            n_e = q.get(f"{base}.end_size", n_s)
            e_fn, s_fn = time_fn[ep.end_time], time_fn.get(ep.start_time)
            sizes[d.name, j] = (e_fn, s_fn, n_e, n_s)
            if ep.start_size != ep.end_size:
                for u in pieces(d, ep, tolerance / n_exp, by_name):
                    value = ep.end_time + u * (ep.start_time - ep.end_time)
                    nodes.setdefault(value, sub_boundary(e_fn, s_fn, u))
    times = sorted(nodes)
    k_epochs = len(times) + 1
    if k_epochs > max_epochs:
        raise PhasemakeError(
            f"from_demes: the history needs {k_epochs} epochs ({k_epochs - 1 - len(groups)} "
            f"of them pieces of exponential epochs at tolerance={tolerance:g}), more than "
            f"max_epochs={max_epochs}; raise tolerance (pieces grow like tolerance^-1/2) or "
            "max_epochs (each epoch adds compile time)"
        )
    bounds = [const(0.0)] + [nodes[t] for t in times]
    edges = [0.0, *times, math.inf]
    mids = [(a + b) / 2 if b < math.inf else 2 * a + 1 for a, b in itertools.pairwise(edges)]
    migrations = [
        (i, m) for i, m in enumerate(graph.migrations) if m.dest in tracked and m.source in tracked
    ]
    n_d = len(demes)
    rows = []
    for k, mid in enumerate(mids):
        coal: list[Fn | None] = []
        for d in demes:
            live = [j for j, ep in enumerate(d.epochs) if ep.end_time < mid < ep.start_time]
            coal.append(
                mean_rate(sizes[d.name, live[0]], bounds, k, d.epochs[live[0]]) if live else None
            )
        mig = [
            (pos[m.dest], pos[m.source], q[f"migrations[{i}].rate"])
            for i, m in migrations
            if m.end_time < mid < m.start_time
        ]
        rows.append((coal, mig))
    check_coalescence(rows[-1], demes, migrations, index, mids[-1])
    rates = epoch_rates(rows, n_d, sfs)

    def times_fn(phi: jax.Array) -> jax.Array:
        if not times:
            return jnp.zeros((0,), dtype=phi.dtype)
        return jnp.stack([nodes[t](phi) for t in times])

    events = tuple(
        demes_events(t, graph, demes, tracked, q) if t in groups else None for t in times
    )
    if sfs:
        from phasemake.models import block_counting as model

        params: dict[str, Any] = {"n": int(counts[demes[0].name])}
        spec = "phasemake.models:block_counting"
    else:
        model = structured_coalescent(n_d)
        params = {"samples": tuple(int(counts.get(d.name, 0)) for d in demes)}
        spec = f"phasemake.graph.structured:structured_{n_d}"
    return DemesModel(
        names, theta0, model, params, spec, tuple(d.name for d in demes), k_epochs,
        float(tolerance), rates, times_fn, events,
    )  # fmt: skip


# -- the file ---------------------------------------------------------------------------------
def _load(source: Any) -> Any:
    import demes

    if isinstance(source, demes.Graph):
        graph = source
    elif isinstance(source, (str, os.PathLike)):
        try:
            graph = demes.load(source)
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise PhasemakeError(f"from_demes: cannot load {source!s}: {err}") from None
    else:
        raise PhasemakeError(
            f"from_demes: source={source!r}; expected a demes YAML path or a demes.Graph"
        )
    return graph.in_generations()


def _samples(graph: Any, samples: Mapping[str, int]) -> dict[str, int]:
    names = [d.name for d in graph.demes]
    if not isinstance(samples, Mapping):
        raise PhasemakeError(f"from_demes: samples={samples!r}; expected {{deme: lineages}}")
    for name, k in samples.items():
        if name not in names:
            raise PhasemakeError(f"from_demes: samples name deme {name!r}; the demes are {names}")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise PhasemakeError(f"from_demes: samples[{name!r}] = {k!r}; expected an int >= 0")
        if k and graph[name].end_time > 0:
            raise PhasemakeError(
                f"from_demes: deme {name!r} ends at time {graph[name].end_time:g} > 0; "
                "ancient samples are not supported (samples are taken at time 0)"
            )
    counts = {n: int(k) for n, k in samples.items() if k}
    if sum(counts.values()) < 2:
        raise PhasemakeError(f"from_demes: samples={dict(samples)!r}; need at least 2 lineages")
    return counts


def _tracked(graph: Any, counts: Mapping[str, int]) -> set[str]:
    """Demes that sampled lineages can reach backwards in time."""
    feeds: dict[str, set[str]] = {d.name: set(d.ancestors) for d in graph.demes}
    for p in graph.pulses:
        feeds[p.dest].update(p.sources)
    for m in graph.migrations:
        feeds[m.dest].add(m.source)
    seen, todo = set(counts), list(counts)
    while todo:
        for nxt in feeds[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _refuse_unsupported(demes: Sequence[Any]) -> None:
    for d in demes:
        for j, ep in enumerate(d.epochs):
            where = f"from_demes: deme {d.name!r} epochs[{j}]"
            if ep.size_function not in ("constant", "exponential"):
                raise PhasemakeError(
                    f"{where} has size_function {ep.size_function!r}; only constant and "
                    "exponential sizes are supported"
                )
            for rate in ("selfing_rate", "cloning_rate"):
                if getattr(ep, rate):
                    raise PhasemakeError(f"{where} has {rate} {getattr(ep, rate)}; unsupported")


def _quantities(graph: Any, tracked: set[str]) -> dict[str, tuple[str, float]]:
    """Path -> (kind, value) of every quantity that can affect lineages in ``tracked``."""
    out: dict[str, tuple[str, float]] = {}
    for d in graph.demes:
        if d.name not in tracked:
            continue
        if math.isfinite(d.start_time):
            out[f"{d.name}.start_time"] = ("time", float(d.start_time))
        for j in range(len(d.ancestors) - 1 if len(d.ancestors) > 1 else 0):
            out[f"{d.name}.proportions[{j}]"] = ("proportion", float(d.proportions[j]))
        for j, ep in enumerate(d.epochs):
            base = f"{d.name}.epochs[{j}]"
            out[f"{base}.start_size"] = ("size", float(ep.start_size))
            if ep.start_size != ep.end_size:
                out[f"{base}.end_size"] = ("size", float(ep.end_size))
            if ep.end_time > 0:
                out[f"{base}.end_time"] = ("time", float(ep.end_time))
    for i, m in enumerate(graph.migrations):
        if m.dest in tracked:
            out[f"migrations[{i}].rate"] = ("rate", float(m.rate))
            if math.isfinite(m.start_time):
                out[f"migrations[{i}].start_time"] = ("time", float(m.start_time))
            if m.end_time > 0:
                out[f"migrations[{i}].end_time"] = ("time", float(m.end_time))
    for i, p in enumerate(graph.pulses):
        if p.dest in tracked:
            out[f"pulses[{i}].time"] = ("time", float(p.time))
            for j, v in enumerate(p.proportions):
                out[f"pulses[{i}].proportions[{j}]"] = ("proportion", float(v))
    return out


def _free(free: Sequence[str], quantities: Mapping[str, Any], every: Mapping[str, Any]):
    if isinstance(free, str):
        raise PhasemakeError(f"from_demes: free={free!r}; expected a list of paths")
    names = tuple(free)
    if len(set(names)) != len(names):
        raise PhasemakeError(f"from_demes: free {list(names)} repeats a path")
    for p in names:
        if p in every and p not in quantities:
            raise PhasemakeError(
                f"from_demes: free path {p!r} cannot affect the sampled lineages; free "
                f"quantities are {list(quantities)}"
            )
        if p not in quantities:
            raise PhasemakeError(
                f"from_demes: unknown free path {p!r}; valid paths are {list(quantities)}"
            )
    return names
