"""Compilation counting, the persistent compilation cache, and shards that share programs.

Shown here: every compilation is counted by phase and as a persistent-cache hit or miss;
:func:`enable_compilation_cache` makes even tiny programs persistent, also when the
process compiled something before; and the shards of one analysis run the same compiled
NUTS programs (their data are arguments, not constants), so a second shard compiles
nothing: every program comes from the cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import phasemake
from phasemake import build_graph
from phasemake.core.compiletime import (
    JobClock,
    cache_counts,
    compile_seconds,
    phase_seconds,
    process_seconds,
)
from phasemake.data.obsmodel import ObservationModel, padded_size
from phasemake.data.simulation import simulate_absorption_times
from phasemake.fit.analysis import enable_compilation_cache
from phasemake.models import kingman
from phasemake.posterior.priors import log_prior
from phasemake.posterior.sampling import NUTSSettings, sample_nuts
from phasemake.posterior.shards import shard


def _delta(before: dict[str, int]) -> dict[str, int]:
    after = cache_counts()
    return {k: after[k] - before[k] for k in after}


def test_a_tiny_program_is_written_to_the_cache_and_read_back(tmp_path):
    x = jnp.arange(4.0) + 1  # the process has compiled before the cache is enabled
    enable_compilation_cache(tmp_path)
    before, seconds = cache_counts(), compile_seconds()
    np.testing.assert_allclose(jax.jit(lambda x: x * 3.5 - 1)(x), [2.5, 6, 9.5, 13])
    assert _delta(before) == {"hits": 0, "misses": 1}
    assert compile_seconds() > seconds
    assert abs(sum(phase_seconds().values()) - compile_seconds()) < 1e-9
    assert [p.name.split("-")[0] for p in tmp_path.glob("jit_*")] == ["jit__lambda"]
    enable_compilation_cache(tmp_path)  # a fresh function object: no in-memory hit
    before = cache_counts()
    jax.jit(lambda x: x * 3.5 - 1)(x)
    assert _delta(before) == {"hits": 1, "misses": 0}


def test_job_clock_splits_the_fixed_cost():
    clock = JobClock()
    fixed = clock.fixed()
    assert fixed["fixed"] == fixed["python_start"] + fixed["imports"] + fixed["compile"]
    assert 0 <= fixed["python_start"] <= process_seconds()
    assert "persistent cache" in clock.summary()


def test_padding_gives_neighbouring_sizes_one_shape():
    assert padded_size(2000, rows=2001) == padded_size(2001) == 2048
    assert padded_size(3000, rows=2048) == 3072


def test_shards_share_their_compiled_programs(tmp_path):
    enable_compilation_cache(tmp_path)
    graph = build_graph(kingman, n=4)
    obs = simulate_absorption_times(graph, [1.0], size=2500, seed=1)
    model = ObservationModel("absorption_times", phasemake.compile_trace(graph))
    budget = model.budget(np.zeros(1), float(obs.columns["time"].max()) * 2)
    settings = NUTSSettings(
        chains=2, warmup=30, samples=30, max_rhat=10.0, min_ess_bulk=0, min_ess_tail=0
    )

    def run(index, threads=1):
        part = shard(obs, index, 2, seed=3)  # 1250 rows each, padded to 2048
        before = cache_counts()
        post = sample_nuts(
            model,
            part,
            log_prior=log_prior(model.par.free_names),
            shards=2,
            init_phi=np.zeros(1),
            init_cov=np.eye(1) * 1e-3,
            budget=budget,
            settings=settings,
            seed=(0, index, 1),
            threads=threads,
            pad_rows=1250,
        )
        return post, _delta(before)

    first, compiled = run(0)
    assert compiled["misses"] >= 2  # the warm-up and the sampling programs
    second, cached = run(1)
    assert cached["misses"] == 0 and cached["hits"] >= 2
    assert not np.array_equal(first.phi, second.phi)  # other data, other draws
    again, _ = run(1, threads=2)  # from the cache, the chains in two threads
    assert again.phi.tobytes() == second.phi.tobytes()
    assert again.log_density.tobytes() == second.log_density.tobytes()


def test_every_script_that_evaluates_a_trace_enables_the_cache():
    from tests.conftest import REPO

    scripts = [
        p
        for p in sorted((REPO / "scripts").glob("*.py"))
        if "model_from_files(" in p.read_text() or "load_trace(" in p.read_text()
    ]
    assert len(scripts) >= 5
    missing = [p.name for p in scripts if "enable_compilation_cache(" not in p.read_text()]
    assert not missing, f"{missing} evaluate a trace without JAX's persistent cache"
