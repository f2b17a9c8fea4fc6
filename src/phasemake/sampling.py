"""NUTS (NumPyro) on one shard of the observations, and the shard posterior file.

A shard's target density on φ = log θ (the free parameters) is

    log p_s(φ) = (1/S) log p_φ(φ) + Σ_{i ∈ shard} ℓ_i(φ)

(the prior fractionated, see :mod:`phasemake.priors`), so the product of the S shard
densities is the full-data posterior. Each chain starts at the NLSQ estimate plus a
draw of half the shard's expected spread (S × the NLSQ covariance); warm-up adapts the
step size and a dense mass matrix. Chains are independent single-chain runs, keyed by
``split(key, chains)``: with ``threads > 1`` they run in a thread pool, otherwise one
after the other, and the draws are the same bytes either way. (NumPyro's
``chain_method="parallel"`` gives different draws than ``"sequential"`` for the second
and later chains, which would make the results depend on ``--cores``.)

Quality gates: the post-warm-up divergence rate and the largest split R-hat
(``numpyro.diagnostics``) must stay within the settings, else :class:`ShardQualityError`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from .artefact import read_artefact, write_artefact  # noqa: E402
from .compiletime import compile_seconds, start_counting  # noqa: E402
from .errors import PhasemakeError  # noqa: E402
from .observations import Observations  # noqa: E402
from .obsmodel import ObservationModel  # noqa: E402

__all__ = [
    "NUTSSettings",
    "ShardPosterior",
    "ShardQualityError",
    "read_shard",
    "sample_nuts",
    "write_shard",
]

log = logging.getLogger(__name__)
SHARD_KIND, SHARD_VERSION = "phasemake.shard_posterior", 1


class ShardQualityError(PhasemakeError):
    """A shard's sampler failed its quality gates (divergences or R-hat)."""


@dataclass(frozen=True)
class NUTSSettings:
    """NUTS settings and quality gates (the config's ``cmc`` keys of the same names)."""

    chains: int = 2
    warmup: int = 500
    samples: int = 500
    target_accept: float = 0.8
    dense_mass: bool = True
    max_tree_depth: int = 10
    max_divergence_rate: float = 0.01
    max_rhat: float = 1.05

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NUTSSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def for_attempt(self, attempt: int) -> NUTSSettings:
        """Retry ``attempt`` (1, 2, ...): target acceptance ``1 - (1 - a)/2^(attempt-1)``."""
        accept = 1.0 - (1.0 - self.target_accept) / 2 ** (attempt - 1)
        return dataclasses.replace(self, target_accept=accept)


class ShardPosterior(NamedTuple):
    """Draws and diagnostics of one shard (φ = log θ of the free parameters)."""

    phi: np.ndarray  # (chains, draws, p)
    log_density: np.ndarray  # (chains, draws): log p_s(φ) up to a constant
    diverging: np.ndarray  # (chains, draws) bool
    num_steps: np.ndarray  # (chains, draws) leapfrog steps
    step_size: np.ndarray  # (chains,)
    inverse_mass_matrix: np.ndarray  # (chains, p, p)
    r_hat: np.ndarray  # (p,)
    ess: np.ndarray  # (p,)
    meta: dict[str, Any]


def _potential(model: ObservationModel, log_prior, inv_shards: float, budget: int, cols):
    """``-log p_s(φ)``, a plain function of φ (no effect handlers: NumPyro's handler stack
    is global, so model tracing is not thread-safe)."""

    def potential(phi):
        return -(inv_shards * log_prior(phi) + model.log_likelihood(phi, cols, budget))

    return potential


def _dense(inverse_mass, p: int) -> np.ndarray:
    """The adapted inverse mass matrix as a (p, p) array (NumPyro keys it by sites)."""
    if isinstance(inverse_mass, dict):
        (inverse_mass,) = inverse_mass.values()
    m = np.asarray(inverse_mass)
    return m if m.ndim == 2 else np.diag(m)


def sample_nuts(
    model: ObservationModel,
    obs: Observations,
    *,
    log_prior,
    shards: int,
    init_phi: np.ndarray,
    init_cov: np.ndarray,
    budget: int,
    settings: NUTSSettings,
    seed: tuple[int, ...],
    threads: int = 1,
) -> ShardPosterior:
    """Run the chains on ``obs`` (one shard of ``shards``) and check the quality gates.

    Parameters
    ----------
    model
        The analysis's observation model (its fixed parameters stay fixed).
    obs
        This shard's observations.
    log_prior
        ``φ -> log p_φ(φ)`` (see :func:`phasemake.priors.log_prior`); raised to ``1/shards``.
    init_phi, init_cov
        NLSQ estimate and covariance of φ on the full data.
    budget
        Uniformisation steps, fixed before tracing; draws beyond its reach have a NaN
        likelihood and count as divergences.
    seed
        Entropy for the chain keys and initial points (e.g. ``(seed, shard, attempt)``).
    threads
        Chains run concurrently in this many threads (same draws for any value).

    Raises
    ------
    ShardQualityError
        If the divergence rate or R-hat exceed the settings' gates.
    """
    start_counting()
    p = len(init_phi)
    entropy = np.random.SeedSequence(list(seed)).generate_state(2)
    keys = jax.random.split(jax.random.PRNGKey(int(entropy[0])), settings.chains)
    spread = np.linalg.cholesky(shards * np.asarray(init_cov) + 1e-12 * np.eye(p))
    z = np.random.default_rng(int(entropy[1])).standard_normal((settings.chains, p))
    inits = np.asarray(init_phi)[None, :] + 0.5 * z @ spread.T
    potential = _potential(model, log_prior, 1.0 / shards, budget, model.padded(obs))

    def run_chain(c: int) -> dict[str, np.ndarray]:
        kernel = NUTS(
            potential_fn=potential,
            dense_mass=settings.dense_mass,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
        )
        mcmc = MCMC(
            kernel,
            num_warmup=settings.warmup,
            num_samples=settings.samples,
            num_chains=1,
            progress_bar=False,
        )
        t0, k0 = time.perf_counter(), compile_seconds(this_thread=True)
        mcmc.warmup(keys[c], init_params=jnp.asarray(inits[c]))
        jax.block_until_ready(mcmc.last_state)  # dispatch is asynchronous: time the work
        t1, k1 = time.perf_counter(), compile_seconds(this_thread=True)
        adapt = mcmc.last_state.adapt_state
        log.info(
            "chain %d: warm-up %.1f s (compile %.1f s), step size %.3g",
            c,
            t1 - t0,
            k1 - k0,
            float(adapt.step_size),
        )
        fields = ("potential_energy", "diverging", "num_steps")
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=fields)
        extra = jax.block_until_ready(mcmc.get_extra_fields())
        t2, k2 = time.perf_counter(), compile_seconds(this_thread=True)
        log.info(
            "chain %d: %d draws in %.1f s (compile %.1f s), %d divergent, mean %.1f leapfrog steps",
            c,
            settings.samples,
            t2 - t1,
            k2 - k1,
            int(np.sum(extra["diverging"])),
            float(np.mean(extra["num_steps"])),
        )
        return {
            "phi": np.asarray(mcmc.get_samples()),
            "log_density": -np.asarray(extra["potential_energy"]),
            "diverging": np.asarray(extra["diverging"]),
            "num_steps": np.asarray(extra["num_steps"]),
            "step_size": np.asarray(adapt.step_size),
            "inverse_mass_matrix": _dense(adapt.inverse_mass_matrix, p),
        }

    workers = max(1, min(threads, settings.chains))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            chains = list(pool.map(run_chain, range(settings.chains)))
    else:
        chains = [run_chain(c) for c in range(settings.chains)]
    stack = {k: np.stack([c[k] for c in chains]) for k in chains[0]}
    r_hat = np.array([split_gelman_rubin(stack["phi"][..., i]) for i in range(p)])
    ess = np.array([effective_sample_size(stack["phi"][..., i]) for i in range(p)])
    divergences = int(stack["diverging"].sum())
    meta = {
        "free": list(model.par.free_names),
        "names": list(model.par.names),
        "values": list(model.par.values),
        "shards": shards,
        "rows": obs.n_rows,
        "seed": list(seed),
        "budget": budget,
        "settings": dataclasses.asdict(settings),
        "init": inits.tolist(),
        "divergences": divergences,  # no timings here: the file must not depend on them
    }
    post = ShardPosterior(
        stack["phi"],
        stack["log_density"],
        stack["diverging"],
        stack["num_steps"],
        stack["step_size"],
        stack["inverse_mass_matrix"],
        r_hat,
        ess,
        meta,
    )
    problems = []
    rate = divergences / stack["diverging"].size
    if rate > settings.max_divergence_rate:
        problems.append(f"divergence rate {rate:.3g} > {settings.max_divergence_rate}")
    if not np.all(np.isfinite(r_hat)) or np.max(r_hat) > settings.max_rhat:
        problems.append(f"R-hat {np.round(r_hat, 4).tolist()} > {settings.max_rhat}")
    if not np.all(np.isfinite(stack["log_density"])):
        problems.append("non-finite log density in the draws")
    if problems:
        raise ShardQualityError("; ".join(problems))
    return post


def write_shard(path, post: ShardPosterior, **meta: Any) -> None:
    """Write a shard posterior (atomic, versioned, checksummed HDF5)."""
    arrays = post._asdict()
    arrays.pop("meta")
    arrays["diverging"] = arrays["diverging"].astype(np.int8)
    arrays["num_steps"] = arrays["num_steps"].astype(np.int32)
    write_artefact(
        path, kind=SHARD_KIND, version=SHARD_VERSION, arrays=arrays, meta={**post.meta, **meta}
    )


def read_shard(path) -> ShardPosterior:
    """Read and verify a shard posterior file."""
    arrays, meta = read_artefact(path, kind=SHARD_KIND, versions=(SHARD_VERSION,))
    arrays["diverging"] = arrays["diverging"].astype(bool)
    return ShardPosterior(**arrays, meta=meta)
