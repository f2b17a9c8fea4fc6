"""The SFS observation model's block-chain path (data/obsmodel.py ``_block_chain``).

A one-deme coalescent lumps exactly into its lineage counts (trace/lumping.py), so the
observation model computes the rewards per block once and evaluates the expected SFS on
that chain. It must equal the level-by-level solve over every state (the evaluator, a
different algorithm) and the closed form ``E[ξ_i] = θ·2/(i·coal)``, for one epoch and for a
history (against the general uniformisation path), with the same derivatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import phasemake
from phasemake.data.obsmodel import ObservationModel, _block_chain
from phasemake.models import block_counting, two_deme


def _both(model: ObservationModel, phi):
    """(block chain, the trace's own path) expected SFS and Jacobian at phi."""
    chain = model._chain
    out = []
    for path in (chain, None):
        model._chain = path
        f = lambda p: model._expected_sfs(p, model.budget(np.asarray(phi), None))  # noqa: E731
        out.append((np.asarray(f(phi)), np.asarray(jax.jacrev(f)(phi))))
    model._chain = chain
    return out


def test_one_epoch_sfs_on_the_block_chain_equals_the_level_solve_and_the_closed_form():
    n = 12
    graph = phasemake.build_graph(block_counting, n=n)
    model = ObservationModel("sfs", phasemake.compile_trace(graph), states=graph.states)
    assert model._chain is not None
    assert model._chain[1].shape == (n - 1, n - 1)  # 12 down to 2 lineages, n - 1 classes
    phi = jnp.log(jnp.array([1.7, 0.02]))  # coal, mutation
    (e, de), (ref, dref) = _both(model, phi)
    # 1e-13: both are exact; they differ by rounding in solves of different sizes
    np.testing.assert_allclose(e, ref, rtol=1e-13)
    np.testing.assert_allclose(e, 0.02 * 2.0 / np.arange(1, n) / 1.7, rtol=1e-13)
    np.testing.assert_allclose(de, dref, rtol=1e-12, atol=1e-16)


def test_a_history_on_the_block_chain_equals_the_general_path():
    n = 8
    graph = phasemake.build_graph(block_counting, n=n)
    history = phasemake.epochs(
        ["c0", "c1", "tau"], rates=[{"coal": "c0"}, {"coal": "c1"}], times=["tau"], graph=graph
    )
    trace = phasemake.compile_trace(graph)
    lumped = ObservationModel("sfs", phasemake.EpochTrace(trace, history), states=graph.states)
    general = ObservationModel(
        "sfs", phasemake.EpochTrace(trace, history, lump=False), states=graph.states
    )
    assert lumped._chain is not None and general._chain is None
    phi = jnp.log(jnp.array([4.0, 1.0, 0.3, 0.01]))
    budget = general.budget(np.asarray(phi), None)
    e = lumped._expected_sfs(phi)
    ref = general._expected_sfs(phi, budget)
    np.testing.assert_allclose(e, ref, rtol=1e-11)  # the general path: 1e-15 series tail
    de = jax.jacrev(lumped._expected_sfs)(phi)
    dref = jax.jacrev(lambda p: general._expected_sfs(p, budget))(phi)
    np.testing.assert_allclose(de, dref, rtol=1e-9, atol=1e-15)


def test_models_that_do_not_lump_keep_the_level_solve():
    graph = phasemake.build_graph(two_deme, n1=2, n2=2)  # structured: no block chain
    rewards = np.ones((graph.n_vertices, 1))
    assert _block_chain(phasemake.compile_trace(graph), rewards) is None
