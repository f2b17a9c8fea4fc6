"""Built-in models against closed forms and independently constructed generators."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from phasemake import build_graph
from phasemake.models import rabbits, two_deme
from phasemake.trace.dense import expected_rewards, expected_time, sub_intensity

RNG = np.random.default_rng(20261123)


def _independent_expected_time(states, rate_fn, start):
    """E[T] from a generator built directly from a transition function (no phasemake)."""
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), len(states)))
    for s in states:
        for t, rate in rate_fn(s):
            q[index[s], index[t]] += rate
    q[np.diag_indices_from(q)] = -q.sum(axis=1)
    transient = [i for i in range(len(states)) if q[i, i] != 0]
    sub = q[np.ix_(transient, transient)]
    alpha = np.zeros(len(transient))
    alpha[transient.index(index[start])] = 1.0
    return alpha @ scipy.linalg.solve(-sub, np.ones(len(transient)))


def test_two_deme_closed_form_for_two_lineages():
    # same deme: E[T] = 2/c; different demes: E[T] = 2/c + 1/(2m)
    for coal, mig in [(1.0, 0.25), (0.7, 3.0)]:
        same = build_graph(two_deme, n1=2, n2=0)
        apart = build_graph(two_deme, n1=1, n2=1)
        assert expected_time(same, [coal, mig]) == pytest.approx(2 / coal, rel=1e-12)
        assert expected_time(apart, [coal, mig]) == pytest.approx(
            2 / coal + 1 / (2 * mig), rel=1e-12
        )


def test_two_deme_is_cyclic():
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    g = build_graph(two_deme, n1=3, n2=2)
    adj = csr_matrix((np.ones(g.n_edges), (g.edge_src, g.edge_tgt)), shape=(g.n_vertices,) * 2)
    _, labels = connected_components(adj, directed=True, connection="strong")
    assert np.bincount(labels).max() > 1


@pytest.mark.parametrize(("n1", "n2", "size"), [(3, 2, 1.0), (4, 4, 0.5), (0, 6, 2.0)])
def test_two_deme_against_independent_generator(n1, n2, size):
    n = n1 + n2
    states = [(a, b) for a in range(n + 1) for b in range(n + 1 - a) if a + b >= 1]

    def rates(s, coal, mig):
        a, b = s
        if a + b < 2:
            return []
        out = []
        if a >= 2:
            out.append(((a - 1, b), coal * a * (a - 1) / 2))
        if b >= 2:
            out.append(((a, b - 1), coal * b * (b - 1) / 2 / size))
        if a:
            out.append(((a - 1, b + 1), mig * a))
        if b:
            out.append(((a + 1, b - 1), mig * b))
        return out

    g = build_graph(two_deme, n1=n1, n2=n2, relative_size=size)
    for _ in range(3):
        coal, mig = RNG.uniform(0.2, 3.0, size=2)
        ref = _independent_expected_time(states, lambda s, c=coal, m=mig: rates(s, c, m), (n1, n2))
        assert expected_time(g, [coal, mig]) == pytest.approx(ref, rel=1e-10)


def test_rabbits_matches_phasic_documentation_value():
    # phasic 0.32.1, same model at theta = (1, 2, 4): E[T] = 0.5083056478405316
    g = build_graph(rabbits, nr_rabbits=2)
    assert expected_time(g, [1.0, 2.0, 4.0]) == pytest.approx(0.5083056478405316, rel=1e-12)


@pytest.mark.parametrize("nr", [1, 3, 5])
def test_rabbits_against_independent_generator(nr):
    states = [(a, b) for a, b in itertools.product(range(nr + 1), repeat=2) if a + b <= nr]

    def rates(s, jump, fl, fr):
        left, right = s
        out = []
        if left:
            out += [((left - 1, right + 1), jump * left), ((0, right), fl)]
        if right:
            out += [((left + 1, right - 1), jump * right), ((left, 0), fr)]
        return out

    g = build_graph(rabbits, nr_rabbits=nr)
    theta = RNG.uniform(0.3, 4.0, size=3)
    ref = _independent_expected_time(states, lambda s: rates(s, *theta), (nr, 0))
    assert expected_time(g, theta) == pytest.approx(ref, rel=1e-10)


def test_rabbits_survival_against_scipy_expm():
    # P(T > t) = alpha exp(S t) 1 versus a direct uniformisation-free series check at small t
    g = build_graph(rabbits, nr_rabbits=2)
    alpha, s, _ = sub_intensity(g, [1.0, 2.0, 4.0])
    t = 1e-6
    surv = alpha @ scipy.linalg.expm(s * t) @ np.ones(len(alpha))
    assert surv == pytest.approx(1 + t * (alpha @ s @ np.ones(len(alpha))), abs=1e-11)


def test_two_deme_second_moment_closed_form():
    # two lineages, states S (same deme) and D (different demes):
    # E_S = 2/c, E_D = 2/c + 1/(2m), and E[T^2 | S] = 2 alpha (-S)^{-1} E = 2 (E_S + E_D) / c
    g = build_graph(two_deme, n1=2, n2=0)
    for coal, mig in [(1.0, 1.0), (0.7, 3.0)]:
        alpha, s, _ = sub_intensity(g, [coal, mig])
        u = scipy.linalg.solve(-s, np.ones(len(alpha)))
        second = 2 * alpha @ scipy.linalg.solve(-s, u)
        e_s, e_d = 2 / coal, 2 / coal + 1 / (2 * mig)
        assert expected_rewards(g, [coal, mig]) == pytest.approx(e_s, rel=1e-12)
        assert second == pytest.approx(2 * (e_s + e_d) / coal, rel=1e-12)
