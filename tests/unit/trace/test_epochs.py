"""Epoch histories against a dense reference written here (no evaluator code).

The reference builds each epoch's full generator Q (absorbing states included) from the
graph's edges, advances the distribution with ``scipy.linalg.expm``, applies each event as a
dense matrix, integrates ``∫ π(s) ds`` over a finite epoch by the augmented-matrix
exponential (Van Loan), and solves the last epoch densely. E[T²] is ``2∫ t S(t) dt`` by
adaptive quadrature of the dense survival function.

Tolerances: E[T], the expected SFS, the density and the survival to 1e-9 relative (the
series leave out a Poisson tail below 1e-15 per epoch and the dense expm is accurate to
~1e-13); E[T²] to 1e-8 (quadrature to an absolute 1e-13 on an integrand of order 1);
gradients against central differences of step 1e-5 on the log scale (error ~1e-9),
relative 1e-6.
"""

from __future__ import annotations

import itertools
from math import comb

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import phasemake
from phasemake import PhasemakeError, build_graph, epochs
from phasemake.models import block_counting, kingman

jax.config.update("jax_enable_x64", True)


@phasemake.model(
    parameters=["c1", "c2", "m12", "m21"],
    initial=lambda n1, n2: [([n1, n2], 1.0)] + [([n1 + n2 - k, k], 0.0) for k in range(n2)],
)
def demes2(state, n1, n2):
    """Two demes with their own coalescence rates and asymmetric (backward) migration;
    the initial distribution lists, with probability 0, the states a merger of deme 2 into
    deme 1 reaches."""
    a, b = state.tolist()
    if a + b < 2:
        return []
    out = []
    if a >= 2:
        out.append(([a - 1, b], [a * (a - 1) / 2, 0, 0, 0]))
    if b >= 2:
        out.append(([a, b - 1], [0, b * (b - 1) / 2, 0, 0]))
    if a >= 1:
        out.append(([a - 1, b + 1], [0, 0, a, 0]))
    if b >= 1:
        out.append(([a + 1, b - 1], [0, 0, 0, b]))
    return out


# -- the dense reference -------------------------------------------------------------------
def _q(graph, rates):
    n = graph.n_vertices
    q = np.zeros((n, n))
    np.add.at(q, (graph.edge_src, graph.edge_tgt), graph.rates(rates))
    q[np.diag_indices(n)] = -q.sum(axis=1)
    return q


def _event_matrix(graph, fn, phi_names, phi):
    n = graph.n_vertices
    index = {tuple(s): i for i, s in enumerate(graph.states.tolist())}
    m = np.eye(n)
    env = dict(zip(phi_names, phi, strict=True))
    for v, state in enumerate(graph.states):
        out = fn(state.copy())
        if out is None:
            continue
        m[v, v] = 0.0
        for target, w in out:
            value = eval(w, {}, env) if isinstance(w, str) else float(w)
            m[v, index[tuple(target)]] += value
    return m


class Dense:
    """π(t), ∫π, E[reward] and the density by dense matrices, epoch by epoch."""

    def __init__(self, graph, rates, times, events=()):
        self.graph, self.rates, self.times = graph, [np.asarray(r) for r in rates], times
        self.events = list(events) or [None] * len(times)
        self.q = [_q(graph, r) for r in self.rates]
        n = graph.n_vertices
        self.alpha = np.zeros(n)
        np.add.at(self.alpha, graph.init_index, graph.init_prob)
        self.live = (~graph.absorbing).astype(float)

    def at_starts(self):
        """Distribution at each epoch's start and the integral ∫π over each finite epoch."""
        pi, starts, integrals = self.alpha, [self.alpha], []
        edges = [0.0, *self.times]
        n = self.alpha.size
        for k, tau in enumerate(self.times):
            d = tau - edges[k]
            big = np.zeros((2 * n, 2 * n))  # Van Loan: [[Q, I], [0, 0]] gives ∫ exp(Qs) ds
            big[:n, :n], big[:n, n:] = self.q[k], np.eye(n)
            e = scipy.linalg.expm(big * d)
            integrals.append(pi @ e[:n, n:])
            pi = pi @ e[:n, :n]
            if self.events[k] is not None:
                pi = pi @ self.events[k]
            starts.append(pi)
        return starts, integrals

    def expectation(self, rewards):
        r = np.asarray(rewards, dtype=float) * (
            self.live if np.ndim(rewards) == 1 else self.live[:, None]
        )
        starts, integrals = self.at_starts()
        total = sum(i @ r for i in integrals)
        t = np.flatnonzero(~self.graph.absorbing)
        x = scipy.linalg.solve(-self.q[-1][np.ix_(t, t)], r[t])
        return total + starts[-1][t] @ x

    def distribution(self, t):
        starts, _ = self.at_starts()
        edges = np.array([0.0, *self.times])
        k = np.searchsorted(edges, t, side="right") - 1
        pi = starts[k] @ scipy.linalg.expm(self.q[k] * (t - edges[k]))
        exit_rate = self.q[k][:, self.graph.absorbing].sum(axis=1) * self.live
        return pi @ exit_rate, pi @ self.live


def _close(a, b, rtol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0)


# -- the four histories ----------------------------------------------------------------------
def bottleneck(n=6, model=kingman):
    graph = build_graph(model, n=n)
    h = epochs(
        ["c0", "c1", "c2", "t1", "t2"],
        rates=[{"coal": "c0"}, {"coal": "c1"}, {"coal": "c2"}],
        times=["t1", "t2"],
        graph=graph,
    )
    phi = np.array([1.0, 4.0, 0.5, 0.5, 1.5])
    return graph, h, phi, Dense(graph, [[1.0], [4.0], [0.5]], [0.5, 1.5])


def growth(n=5, pieces=12):
    """Exponential growth as 12 piecewise-constant epochs, the rate of each the exact mean
    of e^{g t} over its piece (a fixed-pieces history: the reference is the same chain)."""
    graph = build_graph(kingman, n=n)
    edges = np.linspace(0.0, 1.2, pieces + 1)
    means = [f"(exp(g*{b})-exp(g*{a}))/(g*{b - a})" for a, b in itertools.pairwise(edges)]
    h = epochs(
        ["g"],
        rates=[{"coal": m} for m in means] + [{"coal": "exp(g*1.2)"}],
        times=[float(x) for x in edges[1:]],
        graph=graph,
    )
    g = 1.5
    rates = [
        [(np.exp(g * b) - np.exp(g * a)) / (g * (b - a))] for a, b in itertools.pairwise(edges)
    ]
    return graph, h, np.array([g]), Dense(graph, [*rates, [np.exp(g * 1.2)]], list(edges[1:]))


def _merge(state):
    a, b = state.tolist()
    return None if b == 0 else [([a + b, 0], 1)]


def split_with_migration():
    """Backwards in time: demes 1 and 2 exchange migrants (asymmetric rates) until τ, when
    deme 2's lineages all move into deme 1 (the split, forwards in time)."""
    graph = build_graph(demes2, n1=3, n2=3)
    h = epochs(
        ["c1", "c2", "m12", "m21", "tau", "c_anc"],
        # the ancestral epoch keeps deme 2 alive with unit rates (it holds no lineages then,
        # but every state must be able to reach absorption: the last epoch is solved)
        rates=[
            {"c1": "c1", "c2": "c2", "m12": "m12", "m21": "m21"},
            {"c1": "c_anc", "c2": 1, "m21": 1},
        ],
        times=["tau"],
        events=[_merge],
        graph=graph,
    )
    phi = np.array([1.0, 2.5, 0.3, 0.8, 0.7, 0.6])
    ev = _event_matrix(graph, _merge, h.parameters, phi)
    dense = Dense(graph, [[1.0, 2.5, 0.3, 0.8], [0.6, 1, 0, 1]], [0.7], [ev])
    return graph, h, phi, dense


def _pulse(state):
    a, b = state.tolist()
    if b == 0:
        return None
    return [([a + j, b - j], f"{comb(b, j)}*f**{j}*(1-f)**{b - j}") for j in range(b + 1)]


def admixture_pulse():
    """At τ₁ each lineage of deme 2 moves to deme 1 with probability f (a pulse from deme 1
    into deme 2, forwards in time); at τ₂ the demes merge."""
    graph = build_graph(demes2, n1=2, n2=3)
    h = epochs(
        ["c1", "c2", "f", "t1", "t2"],
        rates=[{"c1": "c1", "c2": "c2"}, {"c1": "c1", "c2": "c2"}, {"c1": "c1", "c2": 1, "m21": 1}],
        times=["t1", "t2"],
        events=[_pulse, _merge],
        graph=graph,
    )
    phi = np.array([1.0, 0.4, 0.3, 0.2, 1.1])
    events = [_event_matrix(graph, fn, h.parameters, phi) for fn in (_pulse, _merge)]
    dense = Dense(graph, [[1.0, 0.4, 0, 0], [1.0, 0.4, 0, 0], [1.0, 1, 0, 1]], [0.2, 1.1], events)
    return graph, h, phi, dense


CASES = {
    "bottleneck": bottleneck,
    "growth": growth,
    "split": split_with_migration,
    "pulse": admixture_pulse,
}


#: (case, lump): the size histories lump exactly (their jump chains do not depend on θ);
#: the structured ones never do. Both paths are checked on the size histories.
PATHS = [
    ("bottleneck", True),
    ("bottleneck", False),
    ("growth", True),
    ("growth", False),
    ("split", True),
    ("pulse", True),
]


@pytest.mark.parametrize(("case", "lump"), PATHS)
def test_expectation_density_and_survival_equal_the_dense_reference(case, lump):
    graph, h, phi, dense = CASES[case]()
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h, lump=lump)
    assert (et.lumping is not None) == (lump and case in ("bottleneck", "growth"))
    ones = np.ones(graph.n_vertices)
    _close(et.expectation(phi), dense.expectation(ones), 1e-9)
    t = np.array([0.05, 0.3, 0.69, 0.71, 1.3, 2.0, 4.5])
    ref = np.array([dense.distribution(x) for x in t]).T
    _close(et.pdf(phi, t), ref[0], 1e-9)
    _close(et.survival(phi, t), ref[1], 1e-9)
    # the cdf is 1 - survival: near 0 it keeps the survival's absolute error (~1e-16)
    np.testing.assert_allclose(et.cdf(phi, t), 1 - ref[1], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("lump", [True, False])
def test_expected_sfs_under_a_bottleneck(lump):
    n = 8
    graph, h, phi, dense = bottleneck(n, block_counting)
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h, lump=lump)
    if lump:  # 22 states, 7 lineage counts
        assert (graph.n_vertices, et.lumping.n_blocks) == (22, 7)
    rewards = graph.states[:, : n - 1].astype(float)
    _close(et.expectation(phi, rewards), dense.expectation(rewards), 1e-9)
    # one epoch (all rates equal) is the constant-size SFS 2/i
    flat = np.array([1.0, 1.0, 1.0, 0.5, 1.5])
    _close(et.expectation(flat, rewards), 2.0 / np.arange(1, n), 1e-12)


@pytest.mark.parametrize(
    ("case", "lump"), [("bottleneck", True), ("bottleneck", False), ("split", True)]
)
def test_second_moment_equals_the_integral_of_the_survival(case, lump):
    graph, h, phi, dense = CASES[case]()
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h, lump=lump)
    edges = [0.0, *dense.times, 80.0]
    second = sum(
        scipy.integrate.quad(lambda t: 2 * t * dense.distribution(t)[1], a, b, epsabs=1e-13)[0]
        for a, b in itertools.pairwise(edges)
    )
    mean, m2 = np.asarray(et.moments(phi))
    _close(mean, dense.expectation(np.ones(graph.n_vertices)), 1e-9)
    _close(m2, second, 1e-8)


@pytest.mark.parametrize(
    ("case", "lump"), [("bottleneck", True), ("bottleneck", False), ("pulse", True)]
)
def test_gradients_in_rates_boundaries_and_fractions_equal_differences(case, lump):
    graph, h, phi, _ = CASES[case]()
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h, lump=lump)
    n_terms = et.terms(phi * np.exp(0.01), t_max=2.0)
    n_terms = tuple(max(a, b) for a, b in zip(n_terms, et.terms(phi, t_max=2.0), strict=True))
    t = jnp.array([0.1, 0.6, 1.7])  # off the boundaries (the density jumps there)

    def f(log_phi):
        p = jnp.exp(log_phi)
        dist = et.pdf(p, t, n_terms=n_terms) + et.survival(p, t, n_terms=n_terms)
        return et.expectation(p, n_terms=n_terms) + jnp.sum(dist)

    grad = np.asarray(jax.grad(f)(jnp.log(phi)))
    h_ = 1e-5
    diff = [
        (f(jnp.log(phi) + h_ * e) - f(jnp.log(phi) - h_ * e)) / (2 * h_) for e in np.eye(phi.size)
    ]
    np.testing.assert_allclose(grad, np.asarray(diff), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("lump", [True, False])
def test_vmap_over_parameters_and_nan_beyond_the_budget(lump):
    graph, h, phi, dense = bottleneck()
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h, lump=lump)
    batch = np.stack([phi, phi * np.array([1, 1.2, 0.8, 1, 1])])
    n_terms = et.terms(batch[1], t_max=3.0)
    n_terms = tuple(max(a, b) for a, b in zip(n_terms, et.terms(batch[0], t_max=3.0), strict=True))
    out = jax.vmap(lambda p: et.expectation(p, n_terms=n_terms))(batch)
    _close(out[0], dense.expectation(np.ones(graph.n_vertices)), 1e-9)
    _close(out[1], et.expectation(batch[1]), 1e-12)
    # a budget too small for the times asked for gives NaN, never a wrong number
    small = et.survival(phi, np.array([0.2, 50.0]), n_terms=(n_terms[0], 32))
    assert np.isfinite(small[0]) and np.isnan(small[1])
    fast = phi * np.array([1, 100, 1, 1, 1])
    if lump:  # the block chain's expectations need no budget
        _close(et.expectation(fast, n_terms=(32, 32)), et.expectation(fast), 1e-13)
    else:
        assert np.isnan(et.expectation(fast, n_terms=(32, 32)))


def test_bad_histories_are_refused_with_the_name():
    graph, h, phi, _ = split_with_migration()
    trapped = h._replace(rates=lambda p: jnp.array([[1.0, 1, 1, 1], [1.0, 0, 0, 0]]))
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), trapped)
    with pytest.raises(ValueError, match=r"state \[\d, \d\] cannot reach absorption in the last"):
        et.expectation(phi)
    graph = build_graph(kingman, n=4)
    with pytest.raises(PhasemakeError, match=r"2 epochs need 1 boundaries; got 0"):
        epochs(["a"], rates=[{"coal": "a"}, {"coal": 1}], graph=graph)
    with pytest.raises(PhasemakeError, match=r"rates\[1\] names \['mig'\]"):
        epochs(["a", "t"], rates=[{"coal": "a"}, {"mig": 1}], times=["t"], graph=graph)
    with pytest.raises(PhasemakeError, match=r"unknown name 'b'; expected one of \['a', 't'\]"):
        epochs(["a", "t"], rates=[{"coal": "a"}, {"coal": "b"}], times=["t"], graph=graph)
    with pytest.raises(PhasemakeError, match=r"__import__\(.os.\)\" is not allowed"):
        epochs(["a"], rates=[{"coal": "__import__('os')"}], graph=graph)
    h = epochs(["a", "t"], rates=[{"coal": "a"}, {"coal": 1}], times=["t"], graph=graph)
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), h)
    with pytest.raises(ValueError, match=r"epoch boundaries \[-1.0\]; expected 0 < τ_1"):
        et.expectation([1.0, -1.0])
    with pytest.raises(PhasemakeError, match=r"not in the graph; list it in the model's init"):
        epochs(
            ["a", "t"],
            rates=[{"coal": "a"}, {"coal": 1}],
            times=["t"],
            events=[lambda s: [([s[0] + 5], 1)]],
            graph=graph,
        )
