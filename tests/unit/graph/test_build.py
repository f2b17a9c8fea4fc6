"""Graph building: structure, validation errors, and expectations by dense solves."""

from __future__ import annotations

import numpy as np
import pytest

import phasemake
from phasemake import GraphBuildError, build_graph
from phasemake.models import block_counting, kingman
from phasemake.trace.dense import expected_rewards, expected_time


def make(callback, parameters=("a",), initial=(2,)):
    return phasemake.model(parameters=list(parameters), initial=list(initial))(callback)


def test_kingman_structure():
    g = build_graph(kingman, n=5)
    assert g.states[:, 0].tolist() == [5, 4, 3, 2, 1]
    assert g.edge_src.tolist() == [0, 1, 2, 3]
    assert g.edge_tgt.tolist() == [1, 2, 3, 4]
    assert g.edge_coef[:, 0].tolist() == [10.0, 6.0, 3.0, 1.0]
    assert g.absorbing.tolist() == [False] * 4 + [True]
    assert g.provenance["spec"] == phasemake.spec_hash(kingman, n=5)


@pytest.mark.parametrize("n", [2, 3, 7, 15])
def test_kingman_tmrca_closed_form(n):
    # E[T_MRCA] = 2 (1 - 1/n) for coal = 1, and scales as 1/coal; rtol 1e-12 is a few ulps
    g = build_graph(kingman, n=n)
    assert expected_time(g, [1.0]) == pytest.approx(2 * (1 - 1 / n), rel=1e-12)
    assert expected_time(g, [2.5]) == pytest.approx(2 * (1 - 1 / n) / 2.5, rel=1e-12)


@pytest.mark.parametrize("n", [3, 6, 10])
def test_block_counting_sfs_closed_form(n):
    # expected branch length subtending i samples is 2/i (coal = 1): SFS ∝ 1/i
    g = build_graph(block_counting, n=n)
    rewards = g.states[:, : n - 1].astype(float)
    sfs = expected_rewards(g, [1.0], rewards)
    np.testing.assert_allclose(sfs, 2.0 / np.arange(1, n), rtol=1e-11)
    # total tree length E[L] = 2 Σ 1/i
    total = expected_rewards(g, [1.0], g.states.sum(axis=1).astype(float))
    assert total == pytest.approx(2 * np.sum(1 / np.arange(1, n)), rel=1e-11)


def test_block_counting_vertex_counts_are_partition_numbers():
    # states are the integer partitions of n (phasic adds one starting vertex on top)
    assert build_graph(block_counting, n=10).n_vertices == 42
    assert build_graph(block_counting, n=20).n_vertices == 627


def test_duplicate_edges_are_merged_and_zero_edges_pruned():
    def cb(state):
        (k,) = state.tolist()
        if k <= 0:
            return []
        # two routes to k-1 (merged), one zero-rate edge to an otherwise unreachable state
        return [([k - 1], [1.0]), ([k - 1], [2.0]), ([-1], [0.0])]

    g = build_graph(make(cb, initial=(2,)))
    assert g.states[:, 0].tolist() == [2, 1, 0]
    assert g.edge_coef[:, 0].tolist() == [3.0, 3.0]
    assert g.provenance["zero_rate_edges_dropped"] == 2


def test_initial_distribution_with_several_states():
    m = phasemake.model(parameters=["a"], initial=[([2], 0.25), ([1], 0.75)])(
        lambda state: [([state[0] - 1], [1.0])] if state[0] > 0 else []
    )
    g = build_graph(m)
    assert g.init_prob.tolist() == [0.25, 0.75]
    assert expected_time(g, [1.0]) == pytest.approx(0.25 * 2 + 0.75 * 1)


def test_callback_may_return_numpy_arrays_and_scalars_for_one_parameter():
    def cb(state):
        if state[0] == 0:
            return []
        new = state.copy()
        new[0] -= 1
        return [(new, 2.0)]

    g = build_graph(make(cb, initial=(3,)))
    assert g.n_vertices == 4 and g.edge_coef.shape == (3, 1)


@pytest.mark.parametrize(
    ("transitions", "message"),
    [
        ([([1, 0], [1.0])], "length 2; every state has length 1"),
        ([([1], [1.0, 2.0])], "expected a vector of length 1"),
        ([([1], [float("nan")])], "finite and non-negative"),
        ([([1], [-1.0])], "finite and non-negative"),
        ([([2], [1.0])], "transition to itself"),
        ([([1.5], [1.0])], "integer vectors"),
        ([[1]], "expected a list of \\(next_state, coefficients\\) pairs"),
        (None, "returned None"),
    ],
)
def test_invalid_transitions_name_the_state(transitions, message):
    def cb(state):
        return transitions if state[0] == 2 else []

    with pytest.raises(GraphBuildError, match=message):
        build_graph(make(cb, initial=(2,)))


def test_callback_exception_names_the_state():
    def cb(state):
        raise KeyError("boom")

    with pytest.raises(GraphBuildError, match=r"KeyError.*for state \[2\]"):
        build_graph(make(cb))


def test_state_cap():
    def cb(state):
        return [([state[0] + 1], [1.0])]  # infinite chain

    with pytest.raises(GraphBuildError, match="more than max_states=50"):
        build_graph(make(cb), max_states=50)


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        ([([1], 0.8), ([2], 0.8)], "sum to"),
        ([([1], -0.5)], "probability"),
        ("abc", "initial distribution"),
        ([([1], 0.5), ([1, 2], 0.5)], "mixes state lengths"),
    ],
)
def test_invalid_initial_distribution(initial, message):
    m = phasemake.model(parameters=["a"], initial=initial)(lambda state: [])
    with pytest.raises(phasemake.ModelError, match=message):
        build_graph(m)


def test_invalid_declarations():
    with pytest.raises(phasemake.ModelError, match="list of parameter names"):
        phasemake.model(parameters="coal", initial=[2])(lambda s: [])
    with pytest.raises(phasemake.ModelError, match="duplicates"):
        phasemake.model(parameters=["a", "a"], initial=[2])(lambda s: [])


def test_build_is_deterministic():
    a = build_graph(block_counting, n=8)
    b = build_graph(block_counting, n=8)
    for name in ("states", "edge_src", "edge_tgt", "edge_coef", "init_index", "init_prob"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
