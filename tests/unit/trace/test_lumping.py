"""Exact lumping (phasemake.trace.lumping) against closed forms and dense matrices.

- The block-counting coalescent lumps into its lineage counts, and the probability of a
  state given k lineages is the closed form for Kingman's coalescent: every composition
  of n into k block sizes is equally likely, so a state with a_i blocks of size i has
  probability ``k! / Π a_i! / C(n-1, k-1)``.
- A branching block tree is evaluated under epochs against the dense reference of
  test_epochs (matrix exponentials of the whole chain), to 1e-11 relative: the block
  chain's Padé-13 exponential is accurate to a few ulps relative to its norm, and the
  reference's own ``expm`` is no better.
- Chains that do not lump (θ-dependent jumps, a diamond of blocks, a split start) are
  refused, and the evaluator then takes the general path.
"""

from __future__ import annotations

from math import comb, factorial, prod

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import phasemake
from phasemake.models import block_counting
from phasemake.trace.lumping import expm_upper, lump
from tests.unit.trace.test_epochs import Dense, demes2


def _initial(shape):
    if shape == "split-start":
        return [([0], 0.5), ([5], 0.5)]
    if shape == "part-absorbed":  # 30% of the mass starts absorbed (T = 0)
        return [([0], 0.7), ([4], 0.3)]
    return [([0], 1.0)]


@phasemake.model(parameters=["a", "b"], initial=_initial)
def toy(state, shape):
    """0 → 1 or 2 (probability ½ each, rate a + b), then 1 and 2 leave at their own rates:
    ``tree``: 1 → absorption at a, 2 → absorption at 3b (three blocks, branching);
    ``same``: both leave at a (one block {1, 2});
    ``diamond``: 1 at a, 2 at 3b, both to 3, which leaves at b (3 entered from 2 blocks);
    ``theta-jumps``: 0 → 1 at rate a, 0 → 2 at rate b (jump odds depend on θ);
    ``split-start``: ``tree`` started half in 0 and half in 5 (→ absorption at b);
    ``part-absorbed``: ``tree`` with 30% of the mass starting absorbed."""
    s = int(state[0])
    if s == 0:
        if shape == "theta-jumps":
            return [([1], [1.0, 0.0]), ([2], [0.0, 1.0])]
        return [([1], [0.5, 0.5]), ([2], [0.5, 0.5])]
    if s == 1:
        return [([3 if shape == "diamond" else 4], [1.0, 0.0])]
    if s == 2:
        target = 3 if shape == "diamond" else 4
        return [([target], [1.0, 0.0] if shape == "same" else [0.0, 3.0])]
    if s in (3, 5):
        return [([4], [0.0, 1.0])]
    return []


def test_block_counting_lumps_into_lineage_counts_with_kingman_probabilities():
    n = 9
    graph = phasemake.build_graph(block_counting, n=n)
    trace = phasemake.compile_trace(graph)
    found = lump(trace._series_data)
    assert found.n_blocks == n - 1
    order = np.asarray(trace.data.order)
    for pos, vertex in enumerate(order):
        a = graph.states[vertex, : n - 1]
        k = int(a.sum())
        if k < 2:  # the absorbing state (one lineage)
            assert found.block[pos] == found.n_blocks
            continue
        assert found.block[pos] == n - k  # the start block (n lineages) first
        expected = factorial(k) / prod(factorial(int(x)) for x in a) / comb(n - 1, k - 1)
        assert found.nu[pos] == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize(("shape", "blocks"), [("tree", 3), ("same", 2), ("part-absorbed", 3)])
def test_a_block_tree_under_epochs_equals_the_dense_chain(shape, blocks):
    graph = phasemake.build_graph(toy, shape=shape)
    history = phasemake.epochs(
        ["a1", "b1", "a2", "b2", "tau"],
        rates=[{"a": "a1", "b": "b1"}, {"a": "a2", "b": "b2"}],
        times=["tau"],
        graph=graph,
    )
    et = phasemake.EpochTrace(phasemake.compile_trace(graph), history)
    assert et.lumping is not None and et.lumping.n_blocks == blocks
    phi = np.array([2.0, 0.7, 0.4, 1.9, 0.6])
    dense = Dense(graph, [phi[:2], phi[2:4]], [phi[4]])
    rewards = np.stack([graph.states[:, 0] == s for s in range(4)], axis=1).astype(float)
    rewards[:, 3] = 1.0
    np.testing.assert_allclose(et.expectation(phi, rewards), dense.expectation(rewards), rtol=1e-11)
    general = phasemake.EpochTrace(phasemake.compile_trace(graph), history, lump=False)
    np.testing.assert_allclose(et.moments(phi), general.moments(phi), rtol=1e-11)


@pytest.mark.parametrize("shape", ["diamond", "theta-jumps", "split-start"])
def test_chains_that_do_not_lump_take_the_general_path(shape):
    graph = phasemake.build_graph(toy, shape=shape)
    trace = phasemake.compile_trace(graph)
    assert lump(trace._series_data) is None


def test_structured_models_events_and_the_block_cap_are_refused():
    graph = phasemake.build_graph(demes2, n1=2, n2=2)
    assert lump(phasemake.compile_trace(graph)._series_data) is None
    trace = phasemake.compile_trace(phasemake.build_graph(block_counting, n=10))
    assert lump(trace._series_data, max_blocks=8) is None
    assert lump(trace._series_data, max_blocks=9).n_blocks == 9


def test_the_exponential_of_a_stiff_generator_equals_scipy():
    rng = np.random.default_rng(3)
    m = 30
    q = np.triu(rng.random((m, m)), 1) * np.arange(1, m + 1)[:, None] ** 2
    q[np.diag_indices(m)] = -q.sum(axis=1) - 1.0
    for d in (1e-4, 0.3, 40.0):
        ours, ref = np.asarray(expm_upper(q * d)), scipy.linalg.expm(q * d)
        # the entries are probabilities in [0, 1]: their absolute error is what counts;
        # 1e-13: two Padé-13 schemes with different scalings differ by ~1e-14 at d = 0.3
        # (at d = 40 every entry is below 1e-17, and both agree to 1e-28 there)
        assert np.max(np.abs(ours - ref)) <= 1e-13


def test_the_hand_written_reverse_mode_equals_autodiff_and_differences():
    """A one-rate block chain (block counting, three epochs) differentiates through its
    own adjoint (lumping._scaled_bwd); the general path's autodiff (lump=False) is the
    reference (1e-10: both are exact, the general path to its 1e-15 series tail), and
    central differences check a history with a zero rate (an epoch without coalescence),
    which the general path cannot evaluate (its uniformisation rate is 0)."""
    n = 8
    graph = phasemake.build_graph(block_counting, n=n)
    history = phasemake.epochs(
        ["c0", "c1", "c2", "t1", "t2"],
        rates=[{"coal": "c0"}, {"coal": "c1"}, {"coal": "c2"}],
        times=["t1", "t2"],
        graph=graph,
    )
    trace = phasemake.compile_trace(graph)
    et = phasemake.EpochTrace(trace, history)
    general = phasemake.EpochTrace(trace, history, lump=False)
    rewards = jnp.asarray(graph.states[:, : n - 1], dtype=jnp.float64)
    phi = jnp.array([1.3, 0.25, 2.0, 0.4, 1.2])
    budget = general.n_terms(phi)
    ours = jax.jacrev(lambda p: et.expectation(p, rewards))(phi)
    ref = jax.jit(jax.jacrev(lambda p: general.expectation(p, rewards, n_terms=budget)))(phi)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    # vmap of the reverse mode is the reverse mode of each
    batch = jnp.stack([phi, phi * 1.1])
    grads = jax.vmap(jax.grad(lambda p: et.expectation(p, rewards)[2]))(batch)
    np.testing.assert_allclose(grads[0], ours[2], rtol=1e-13)
    one = jax.grad(lambda p: et.expectation(p, rewards)[2])(batch[1])
    np.testing.assert_allclose(grads[1], one, rtol=1e-13)

    def total(p):
        return float(jnp.sum(et.expectation(p, rewards) * jnp.arange(1.0, n)))

    zero = np.array([1.0, 0.0, 2.0, 0.3, 1.1])  # no coalescence between t1 and t2
    weights = jnp.arange(1.0, n)
    grad = np.asarray(jax.grad(lambda p: jnp.sum(et.expectation(p, rewards) * weights))(zero))
    h = 1e-6
    diff = []
    for e in np.eye(5):
        up, down = zero + h * e, zero - h * e
        if down[1] < 0:  # one-sided at the zero rate (its derivative is the right one)
            diff.append((total(up) - total(zero)) / h)
        else:
            diff.append((total(up) - total(down)) / (2 * h))
    # 1e-5: the one-sided difference's truncation error (h · second derivative)
    np.testing.assert_allclose(grad, diff, rtol=1e-5, atol=1e-8)
    with pytest.raises(TypeError, match="custom_vjp"):  # forward mode: lump=False has it
        jax.jacfwd(lambda p: et.expectation(p, rewards))(phi)
