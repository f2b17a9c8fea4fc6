"""The structured coalescent over D demes, and the pieces of a demes history that drive it
(used by :mod:`phasemake.graph.demes`): rates per epoch, exponential epochs in pieces, the
lineage moves of splits, mergers and pulses.

State ``(k_0, …, k_{D-1})``: the number of lineages in each deme. Rate parameters, in
order: ``coal_d`` (pairwise coalescence rate in deme d, ``1/(2N_d)`` per generation for a
diploid deme of size ``N_d``) for every deme, then ``mig_d_e`` (the rate at which one
lineage in deme d moves to deme e, backwards in time) for every ordered pair ``d != e``.
Absorbing when one lineage is left. Every ordered pair has a migration edge, so the graph
holds every placement of 1…n lineages in the D demes and any lineage move at an event
(a split, a merger or a pulse backwards in time) lands on a graph state.

The models are referable as ``phasemake.graph.structured:structured_<D>`` (e.g.
``structured_2``) with the construction param ``samples`` (a tuple of D counts); building
their graphs imports no JAX.

Examples
--------
>>> import phasemake
>>> m = structured_coalescent(2)
>>> m.parameters
('coal_0', 'coal_1', 'mig_0_1', 'mig_1_0')
>>> phasemake.build_graph(m, samples=(1, 1)).n_vertices
5
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from phasemake.core.errors import PhasemakeError
from phasemake.graph.model import Model

__all__ = [
    "check_coalescence",
    "compose_moves",
    "const",
    "demes_events",
    "epoch_rates",
    "event_weights",
    "mean_rate",
    "pair_time",
    "parameter_names",
    "pieces",
    "structured_coalescent",
    "sub_boundary",
]

if TYPE_CHECKING:  # the model needs no JAX (graph builds do not import it)
    import jax

Fn = Callable[["jax.Array"], "jax.Array"]


def const(v: float) -> Fn:
    """A constant as a function of φ."""
    return lambda phi: np.asarray(v, dtype=phi.dtype)


def parameter_names(n_demes: int) -> tuple[str, ...]:
    """``coal_d`` for every deme, then ``mig_d_e`` for every ordered pair ``d != e``."""
    coal = [f"coal_{d}" for d in range(n_demes)]
    mig = [f"mig_{d}_{e}" for d in range(n_demes) for e in range(n_demes) if e != d]
    return tuple(coal + mig)


def _mig_index(d: int, e: int, n_demes: int) -> int:
    return n_demes + d * (n_demes - 1) + (e if e < d else e - 1)


def _initial(samples: tuple[int, ...]) -> list[int]:
    bad = [s for s in samples if not isinstance(s, int) or isinstance(s, bool) or s < 0]
    if bad or sum(samples) < 2:
        raise ValueError(
            f"structured coalescent: samples={samples!r}; expected non-negative integer "
            "counts per deme summing to at least 2"
        )
    return list(samples)


def _structured(state, samples):
    """Pairs coalesce within a deme; single lineages move between demes."""
    counts = state.tolist()
    n_demes = len(samples)
    if sum(counts) < 2:
        return []
    p = n_demes * n_demes
    out = []
    for d, k in enumerate(counts):
        if k >= 2:
            coef = [0.0] * p
            coef[d] = k * (k - 1) / 2
            new = counts.copy()
            new[d] -= 1
            out.append((new, coef))
        if k >= 1:
            for e in range(n_demes):
                if e == d:
                    continue
                coef = [0.0] * p
                coef[_mig_index(d, e, n_demes)] = float(k)
                new = counts.copy()
                new[d] -= 1
                new[e] += 1
                out.append((new, coef))
    return out


@functools.cache
def structured_coalescent(n_demes: int) -> Model:
    """The structured coalescent model over ``n_demes`` demes (see the module docstring).

    Parameters
    ----------
    n_demes
        The number of demes D ≥ 1.

    Returns
    -------
    Model
        Construction param ``samples``: a tuple of D lineage counts.
    """
    if not isinstance(n_demes, int) or n_demes < 1:
        raise ValueError(f"structured_coalescent: n_demes={n_demes!r}; expected an int >= 1")
    return Model(
        _structured,
        parameters=parameter_names(n_demes),
        initial=_initial,
        name=f"structured_{n_demes}",
    )


def __getattr__(name: str) -> Model:
    prefix = "structured_"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        return structured_coalescent(int(name[len(prefix) :]))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- lineage moves at an instant ------------------------------------------------------------
#: One move: every lineage in deme ``src`` goes to ``targets[j]`` with probability
#: ``variable[j]``, or stays with probability ``variable[stay]`` (``stay`` None: it never
#: stays). Probabilities are indices into the event's vector of variables.
Move = tuple[int, Sequence[int], Sequence[int], int | None]

Polynomial = dict[tuple[int, ...], float]  # exponents of the variables -> coefficient


def _apply_move(state: tuple[int, ...], move: Move, n_vars: int) -> dict[tuple, Polynomial]:
    src, targets, variables, stay = move
    k = state[src]
    if k == 0:
        return {state: {(0,) * n_vars: 1.0}}
    slots = [*zip(targets, variables, strict=True)] + ([(src, stay)] if stay is not None else [])
    out: dict[tuple, Polynomial] = {}
    for split in product(range(k + 1), repeat=len(slots)):
        if sum(split) != k:
            continue
        new = list(state)
        new[src] -= k
        exps = [0] * n_vars
        coef = math.factorial(k)
        for (deme, var), c in zip(slots, split, strict=True):
            new[deme] += c
            exps[var] += c
            coef //= math.factorial(c)  # the multinomial coefficient, exactly
        poly = out.setdefault(tuple(new), {})
        key = tuple(exps)
        poly[key] = poly.get(key, 0.0) + float(coef)
    return out


def compose_moves(
    states: np.ndarray, moves: Sequence[Move], n_vars: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The moves applied in order to every state with at least two lineages.

    Returns ``src, tgt`` (vertex indices of each (source, target) pair) and the monomials
    of their weights: ``entry`` (which pair), ``coef`` and ``exps`` (powers of the
    variables), so that ``weight[i] = Σ_{entry = i} coef · Π_j var_j^exps_j``.
    """
    index = {tuple(s): v for v, s in enumerate(states.tolist())}
    moved = {m[0] for m in moves}
    src, tgt, entry, coef, exps = [], [], [], [], []
    for v, row in enumerate(states.tolist()):
        if sum(row) < 2 or not any(row[d] for d in moved):
            continue
        dist: dict[tuple, Polynomial] = {tuple(row): {(0,) * n_vars: 1.0}}
        for move in moves:
            nxt: dict[tuple, Polynomial] = {}
            for state, poly in dist.items():
                for new, step in _apply_move(state, move, n_vars).items():
                    acc = nxt.setdefault(new, {})
                    for e1, c1 in poly.items():
                        for e2, c2 in step.items():
                            key = tuple(a + b for a, b in zip(e1, e2, strict=True))
                            acc[key] = acc.get(key, 0.0) + c1 * c2
            dist = nxt
        for new, poly in dist.items():
            if new not in index:
                raise KeyError(f"state {list(new)} is not in the graph")
            src.append(v)
            tgt.append(index[new])
            for key, c in poly.items():
                entry.append(len(src) - 1)
                coef.append(c)
                exps.append(key)
    return (
        np.asarray(src, dtype=np.int64),
        np.asarray(tgt, dtype=np.int64),
        np.asarray(entry, dtype=np.int64),
        np.asarray(coef, dtype=np.float64),
        np.asarray(exps, dtype=np.int64).reshape(len(entry), n_vars),
    )


def event_weights(
    variables: Callable[[jax.Array], jax.Array],
    entry: np.ndarray,
    coef: np.ndarray,
    exps: np.ndarray,
    n_entries: int,
) -> Callable[[jax.Array], jax.Array]:
    """``weight(φ)`` of each pair from the monomials of :func:`compose_moves`; powers are
    products (differentiable also where a variable is 0)."""
    import jax
    import jax.numpy as jnp

    top = int(exps.max()) if exps.size else 0
    entry_j, coef_j = jnp.asarray(entry), jnp.asarray(coef)
    exps_j = jnp.asarray(exps)

    def weight(phi: jax.Array) -> jax.Array:
        v = variables(phi)
        powers = [jnp.ones_like(v)]
        for _ in range(top):
            powers.append(powers[-1] * v)
        table = jnp.stack(powers, axis=1)  # (n_vars, top + 1)
        picked = table[jnp.arange(v.shape[0])[None, :], exps_j]  # (n_mono, n_vars)
        mono = coef_j * jnp.prod(picked, axis=1)
        return jax.ops.segment_sum(mono, entry_j, n_entries)

    return weight


# -- coalescence rates per epoch ------------------------------------------------------------
def pair_time(d: Any, a: float, demes: Mapping[str, Any]) -> float:
    """A lower bound on the expected time for two lineages in deme d at time a to coalesce
    in d (then, past d's start, in the ancestor where a pair takes least): closed forms for
    constant epochs, right-endpoint sums of the decreasing survival for exponential ones."""
    total, decay = 0.0, 1.0
    for ep in reversed(d.epochs):  # youngest first
        lo, hi = max(float(ep.end_time), a), float(ep.start_time)
        if hi <= lo:
            continue
        if ep.start_size == ep.end_size:
            c = 0.5 / ep.start_size
            total += decay * (-math.expm1(-c * (hi - lo)) / c if math.isfinite(hi) else 1 / c)
            decay *= math.exp(-c * (hi - lo)) if math.isfinite(hi) else 0.0
        else:
            lam = _growth_lambda(ep, lo)
            grid = np.linspace(lo, hi, 4097)
            total += decay * float(np.sum(np.exp(-lam(grid[1:])) * np.diff(grid)))
            decay *= math.exp(-lam(hi))
    start = float(d.start_time)
    if decay > 0 and d.ancestors and math.isfinite(start):
        total += decay * min(pair_time(demes[x], max(a, start), demes) for x in d.ancestors)
    return total


def _growth_lambda(ep: Any, a: float) -> Callable[[Any], Any]:
    """``Λ(t) - Λ(a)`` within an exponential epoch (rate ``e^{g(t-e)}/(2 N_e)``)."""
    e, n_e = float(ep.end_time), float(ep.end_size)
    g = math.log(n_e / float(ep.start_size)) / (float(ep.start_time) - e)
    return lambda t: (np.exp(g * (t - e)) - math.exp(g * (a - e))) / (2 * n_e * g)


def pieces(d: Any, ep: Any, budget: float, demes: Mapping[str, Any]) -> list[float]:
    """Interior nodes of an exponential epoch (fractions from its young end) with
    ``Σ_pieces |g| c_max h³ / (12 R(a)) ≤ budget`` (module docstring)."""
    e, s = float(ep.end_time), float(ep.start_time)
    span, n_e = s - e, float(ep.end_size)
    g = math.log(n_e / float(ep.start_size)) / span
    lam = _growth_lambda(ep, e)
    grid = np.linspace(e, s, 4097)
    # R(grid[i]) from below: right-endpoint sums to s, then d's older history
    piece = np.exp(-lam(grid[1:])) * np.diff(grid)
    tail = math.exp(-lam(s)) * pair_time(d, s, demes)
    after = np.concatenate([np.cumsum(piece[::-1])[::-1], [0.0]]) + tail
    for m in range(1, 100_000):
        # nodes uniform in e^{g t/2}: pieces shrink where the rate is large
        w = np.linspace(0.0, 1.0, m + 1)
        t = e + np.log1p(w * math.expm1(g * span / 2)) / (g / 2)
        t[-1] = s
        h = np.diff(t)
        c_max = np.maximum(np.exp(g * (t[:-1] - e)), np.exp(g * (t[1:] - e))) / (2 * n_e)
        i = np.minimum(np.searchsorted(grid, t[:-1], side="left"), grid.size - 1)
        r = after[i] * np.exp(lam(t[:-1]))
        if np.sum(abs(g) * c_max * h**3 / (12 * r)) <= budget:
            return [float(x) for x in (t[1:-1] - e) / span]
    raise PhasemakeError(f"from_demes: cannot split an exponential epoch at {budget=}")


def sub_boundary(e_fn: Fn, s_fn: Fn, u: float) -> Fn:
    return lambda phi: e_fn(phi) + u * (s_fn(phi) - e_fn(phi))


def mean_rate(size: tuple, bounds: list[Fn], k: int, ep: Any) -> Fn:
    """The mean of 1/(2N(t)) over the k-th epoch [bounds[k], bounds[k+1])."""
    import jax.numpy as jnp

    e_fn, s_fn, n_e, n_s = size
    if ep.start_size == ep.end_size:
        return lambda phi: 0.5 / n_s(phi)
    lo_fn, hi_fn = bounds[k], bounds[k + 1]

    def mean(phi):
        e, s, lo, hi = e_fn(phi), s_fn(phi), lo_fn(phi), hi_fn(phi)
        g = jnp.log(n_e(phi) / n_s(phi)) / (s - e)
        x = g * (hi - lo)
        small = jnp.abs(x) < 1e-8
        safe = jnp.where(small, 1.0, x)
        ratio = jnp.where(small, 1.0 + x / 2, jnp.expm1(safe) / safe)
        return jnp.exp(g * (lo - e)) * ratio * 0.5 / n_e(phi)

    return mean


def epoch_rates(rows: list, n_d: int, sfs: bool) -> Fn:
    """Per epoch the model's rates; a deme that does not exist then holds no lineages and
    gets the smallest rate of the others as its coalescence rate and as a migration rate
    to an existing deme (so every state can be absorbed in the last epoch)."""
    import jax.numpy as jnp

    def rates(phi: jax.Array) -> jax.Array:
        out = []
        for coal, mig in rows:
            live = [f(phi) for f in coal if f is not None]
            ref = jnp.min(jnp.stack(live))
            first = next(d for d, f in enumerate(coal) if f is not None)
            row = [f(phi) if f is not None else ref for f in coal]
            m = [[jnp.zeros((), phi.dtype)] * n_d for _ in range(n_d)]
            for d, e, f in mig:
                m[d][e] = m[d][e] + f(phi)
            for d, f in enumerate(coal):
                if f is None:
                    m[d][first] = ref
            row += [m[d][e] for d in range(n_d) for e in range(n_d) if e != d]
            out.append(jnp.stack(row[:1] if sfs else row))
        return jnp.stack(out)

    return rates


def check_coalescence(row, demes, migrations, index, mid) -> None:
    """Refuse a last epoch in which lineages of different demes can never meet."""
    coal, _ = row
    live = [i for i, f in enumerate(coal) if f is not None]
    pos = {d.name: i for i, d in enumerate(demes)}
    a = np.zeros((len(demes), len(demes)))
    for i, m in migrations:
        if m.end_time < mid < m.start_time and (m.rate > 0 or f"migrations[{i}].rate" in index):
            a[pos[m.dest], pos[m.source]] = 1.0
    sub = a[np.ix_(live, live)]
    _, label = connected_components(csr_matrix(sub), directed=True, connection="strong")
    closed = [c for c in set(label) if not sub[np.ix_(label == c, label != c)].any()]
    if len(closed) > 1:
        names = [[demes[live[i]].name for i in np.flatnonzero(label == c)] for c in closed]
        raise PhasemakeError(
            f"from_demes: in the oldest epoch lineages in demes {names} never meet (no "
            "migration between them): E[T_MRCA] is infinite"
        )


def demes_events(t: float, graph: Any, demes: Sequence[Any], tracked: set[str], q) -> Any:
    """The lineage moves at boundary t, in msprime's order, and their variables."""
    pos = {d.name: i for i, d in enumerate(demes)}
    variables: list[Fn] = []

    def var(fn: Fn) -> int:
        variables.append(fn)
        return len(variables) - 1

    def ancestry(d) -> Any:
        props = [q.get(f"{d.name}.proportions[{j}]") for j in range(len(d.ancestors) - 1)]
        if len(d.ancestors) == 1:
            fns = [const(1.0)]
        else:
            fns = [*props, lambda phi: 1.0 - sum(f(phi) for f in props)]
        return (pos[d.name], [pos[a] for a in d.ancestors], [var(f) for f in fns], None)

    starts = [d for d in demes if d.start_time == t]
    moves = [ancestry(d) for d in starts if len(d.ancestors) == 1]
    for i in reversed(range(len(graph.pulses))):
        p = graph.pulses[i]
        if p.time != t or p.dest not in tracked:
            continue
        props = [q[f"pulses[{i}].proportions[{j}]"] for j in range(len(p.sources))]
        stay = var(lambda phi, props=props: 1.0 - sum(f(phi) for f in props))
        moves.append((pos[p.dest], [pos[s] for s in p.sources], [var(f) for f in props], stay))
    moves += [ancestry(d) for d in starts if len(d.ancestors) > 1]
    return (tuple(moves), tuple(variables)) if moves else None
