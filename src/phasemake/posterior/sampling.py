"""NUTS (NumPyro) on one shard of the observations, and the shard posterior file.

A shard's target density on φ = log θ (the free parameters) is

    log p_s(φ) = (1/S) log p_φ(φ) + Σ_{i ∈ shard} ℓ_i(φ)

(the prior fractionated, see :mod:`phasemake.posterior.priors`), so the product of the S shard
densities is the full-data posterior. Each chain starts at the NLSQ estimate plus a
draw of half the shard's expected spread (S × the NLSQ covariance); warm-up adapts the
step size and a dense mass matrix. Chains are independent single-chain runs, keyed by
``split(key, chains)``: with ``threads > 1`` they run in a thread pool, otherwise one
after the other, and the draws are the same bytes either way. (NumPyro's
``chain_method="parallel"`` gives different draws than ``"sequential"`` for the second
and later chains, which would make the results depend on ``--cores``.)

The chains run NumPyro's functional NUTS kernel (the one ``MCMC`` drives) in two jitted
programs, the initial state and an ``advance`` over a range of iterations (warm-up and
sampling alike, a segment at a time for progress lines), that take the shard's data as
*arguments*: a program that closed over the data would embed them as constants, so every
shard would compile its own programs (~20 CPU s each). Padded to one size (``pad_rows``),
all shards of an analysis run the same programs: compiled once, they come from JAX's
persistent compilation cache in every other shard job (see
:func:`phasemake.fit.analysis.enable_compilation_cache`).

Quality gates: the post-warm-up divergence rate and the largest split R-hat
(``numpyro.diagnostics``), and the bulk and tail effective sample sizes per chain (ArviZ's
rank-normalised ESS, :func:`tail_aware_ess`), must stay within the settings, else
:class:`ShardQualityError` names what failed.
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
from numpyro.infer.hmc import hmc  # noqa: E402

from phasemake.core.artefact import read_artefact, write_artefact  # noqa: E402
from phasemake.core.compiletime import cache_summary, compile_seconds, start_counting  # noqa: E402
from phasemake.core.errors import PhasemakeError  # noqa: E402
from phasemake.core.joblog import PROGRESS  # noqa: E402
from phasemake.data.observations import Observations  # noqa: E402
from phasemake.data.obsmodel import ObservationModel  # noqa: E402

__all__ = [
    "ImproperPosteriorError",
    "NUTSSettings",
    "ShardPosterior",
    "ShardQualityError",
    "ess_problems",
    "read_shard",
    "runaway",
    "sample_nuts",
    "shard_metric",
    "tail_aware_ess",
    "write_shard",
]

log = logging.getLogger(__name__)
SHARD_KIND, SHARD_VERSION = "phasemake.shard_posterior", 1


class ShardQualityError(PhasemakeError):
    """A shard's sampler failed its quality gates (divergences, R-hat or ESS)."""


class ImproperPosteriorError(ShardQualityError):
    """The gates failed and a parameter's draws ran off towards ±∞ on the log scale: the
    likelihood has a plateau there, so the posterior under a flat prior is improper or
    nearly so, and another seed or a longer warm-up cannot help (see :func:`runaway`)."""


#: How far (in shard-scaled NLSQ standard deviations of log θ) a draw must be from the NLSQ
#: estimate to count as running off: a Gaussian shard posterior puts ~1e-15 of its mass
#: beyond 8 sd, a skewed but proper one (the refinement's cases) stays within ~5.
RUNAWAY_SD = 8.0


def runaway(
    phi: np.ndarray, init_phi: np.ndarray, init_cov: np.ndarray, *, shards: int, names
) -> list[str]:
    """The parameters whose draws ``phi`` (chains × draws × p) run off towards ±∞ on the
    log scale, each as a sentence naming the parameter, how far the draws went and a
    prior with concrete numbers that would make the posterior proper.

    Examples
    --------
    >>> phi = np.zeros((1, 4, 1)); phi[0, -1, 0] = 12.0   # one draw 12 sd away
    >>> runaway(phi, np.zeros(1), np.eye(1), shards=1, names=["mig"])[0][:48]
    'mig runs off towards +∞ on the log scale: draws '
    """
    sd = np.sqrt(shards * np.diag(np.asarray(init_cov)))
    z = (np.asarray(phi) - np.asarray(init_phi)) / sd
    found = []
    for i, name in enumerate(names):
        for sign, extreme in ((+1, np.max(z[..., i])), (-1, np.min(z[..., i]))):
            if sign * extreme <= RUNAWAY_SD:
                continue
            far = float(np.exp(init_phi[i] + extreme * sd[i]))
            loc = float(init_phi[i])
            found.append(
                f"{name} runs off towards {'+' if sign > 0 else '-'}∞ on the log scale: draws "
                f"reach θ = {far:.3g}, {abs(extreme):.0f} shard sd from the NLSQ estimate "
                f"{np.exp(loc):.3g}. The likelihood is flat there (a plateau, e.g. two demes "
                "merging as migration grows), so under a flat prior the posterior is improper "
                "and more warm-up or retries cannot help. Give it an informative prior, e.g. "
                f"cmc.prior.{name}: {{lognormal: {{loc: {loc:.3g}, scale: 1}}}} (θ within a "
                f"factor e of {np.exp(loc):.3g} with 68% probability), fix it "
                f"(nlsq.fixed.{name}), or add data"
            )
    return found


@dataclass(frozen=True)
class NUTSSettings:
    """NUTS settings and quality gates (the config's ``cmc`` keys of the same names)."""

    chains: int = 2
    warmup: int = 200
    samples: int = 500
    target_accept: float = 0.8
    dense_mass: bool = True
    max_tree_depth: int = 10
    max_divergence_rate: float = 0.01
    max_rhat: float = 1.05
    min_ess_bulk: float = 100.0
    min_ess_tail: float = 100.0

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


def _potential_gen(model: ObservationModel, log_prior, budget: int):
    """``(cols, inv_shards) -> (φ -> -log p_s(φ))``: the data are arguments of the compiled
    programs, not constants in them, so every shard of the same padded shape runs the same
    program (one compilation, then persistent-cache hits in the other shard jobs). A plain
    function of φ (no effect handlers: NumPyro's handler stack is global, so model tracing
    is not thread-safe)."""

    def gen(cols, inv_shards):
        def potential(phi):
            return -(inv_shards * log_prior(phi) + model.log_likelihood(phi, cols, budget))

        return potential

    return gen


#: NUTS iterations per call of the chain program: a progress line in the job log each.
SEGMENT = 100


class _ChainPrograms(NamedTuple):
    """One chain's programs, compiled once per job and shared by the chains."""

    init: Any  # (key, φ0, cols, inv_shards) -> initial HMCState
    advance: Any  # (state, draws, start, stop, cols, inv_shards) -> (state, draws)
    draws: Any  # the empty draw buffers: (φ, potential, diverging, steps), one row a draw


def _chain_programs(
    model: ObservationModel, log_prior, budget: int, settings: NUTSSettings, args
) -> _ChainPrograms:
    """NumPyro's functional NUTS kernel (:func:`numpyro.infer.hmc.hmc`, the one ``MCMC``
    drives) as two jitted programs with the data as arguments, lowered and compiled here,
    before any chain runs: ``init`` (the initial state at φ0) and ``advance``, which runs
    iterations ``[start, stop)``, adapting while the iteration count is below
    ``settings.warmup`` (as ``MCMC.warmup`` then ``MCMC.run`` do) and writing each later
    iteration's draw into row ``i - warmup`` of the buffers. One program serves warm-up and
    sampling, called a segment at a time for the job log's progress lines."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_gen(model, log_prior, budget))

    def init(key, phi0, metric, cols, inv_shards):
        # the key split of numpyro's HMC.init (the second half seeds model initialisation)
        key, _ = jax.random.split(key)
        return init_kernel(
            phi0,
            num_warmup=settings.warmup,
            # the shard posterior's expected covariance: in its coordinates the posterior
            # is near a standard normal, where NumPyro's initial step size (1) is apt
            inverse_mass_matrix=metric if settings.dense_mass else jnp.diag(metric),
            dense_mass=settings.dense_mass,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
            model_args=(cols, inv_shards),
            rng_key=key,
        )

    def advance(state, draws, start, stop, cols, inv_shards):
        def body(i, carry):
            s, d = carry
            s = sample_kernel(s, model_args=(cols, inv_shards))
            row = i - settings.warmup
            at = jnp.clip(row, 0, settings.samples - 1)
            new = (s.z, s.potential_energy, s.diverging, s.num_steps)
            d = tuple(
                jnp.where(row >= 0, buf.at[at].set(x), buf) for buf, x in zip(d, new, strict=True)
            )
            return s, d

        return jax.lax.fori_loop(start, stop, body, (state, draws))

    # init is traced first: it sets the kernel's settings (max tree depth, adaptation
    # schedule) that the trace of advance reads
    first = jax.jit(init).lower(*args).compile()
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), first.out_info)
    n = settings.samples
    draws = (
        jnp.zeros((n, *state.z.shape), state.z.dtype),
        jnp.zeros(n, state.potential_energy.dtype),
        jnp.zeros(n, state.diverging.dtype),
        jnp.zeros(n, state.num_steps.dtype),
    )
    bound = jax.ShapeDtypeStruct((), jnp.int32)
    step = jax.jit(advance).lower(state, draws, bound, bound, *args[3:]).compile()
    return _ChainPrograms(first, step, draws)


def shard_metric(init_cov: np.ndarray, shards: int) -> np.ndarray:
    """The chains' starting inverse mass matrix: the shard posterior's expected covariance
    of φ, ``shards × init_cov`` (the NLSQ covariance on the full data), symmetrised, with
    its eigenvalues kept within 1e-8 of the largest (a nearly flat direction would
    otherwise give a step size of 0); the identity where NLSQ has no finite covariance.

    Examples
    --------
    >>> shard_metric(np.array([[0.01, 0.0], [0.0, 0.04]]), 4).tolist()
    [[0.04, 0.0], [0.0, 0.16]]
    """
    cov = shards * np.asarray(init_cov, dtype=np.float64)
    if cov.ndim != 2 or not np.all(np.isfinite(cov)):
        return np.eye(len(cov))
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    if values[-1] <= 0:
        return np.eye(len(cov))
    values = np.maximum(values, 1e-8 * values[-1])
    out = (vectors * values) @ vectors.T
    return (out + out.T) / 2


def _segments(start: int, stop: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in pieces of :data:`SEGMENT` iterations (as program arguments)."""
    return [(np.int32(a), np.int32(min(a + SEGMENT, stop))) for a in range(start, stop, SEGMENT)]


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
    pad_rows: int | None = None,
) -> ShardPosterior:
    """Run the chains on ``obs`` (one shard of ``shards``) and check the quality gates.

    Parameters
    ----------
    model
        The analysis's observation model (its fixed parameters stay fixed).
    obs
        This shard's observations.
    log_prior
        ``φ -> log p_φ(φ)`` (see :func:`phasemake.posterior.priors.log_prior`); raised to
        ``1/shards``.
    init_phi, init_cov
        NLSQ estimate and covariance of φ on the full data.
    budget
        Uniformisation steps, fixed before tracing; draws beyond its reach have a NaN
        likelihood and count as divergences.
    seed
        Entropy for the chain keys and initial points (e.g. ``(seed, shard, attempt)``).
    threads
        Chains run concurrently in this many threads (same draws for any value).
    pad_rows
        Pad the data to at least this many rows (then to a multiple of 1024): give every
        shard of an analysis the largest shard's size (``ceil(N / S)``) and all its shard
        jobs run one compiled program (persistent-cache hits after the first).

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
    cols = model.padded(obs, rows=pad_rows)
    metric = jnp.asarray(shard_metric(init_cov, shards))
    args = (keys[0], jnp.asarray(inits[0]), metric, cols, jnp.asarray(1.0 / shards))
    t0, k0 = time.perf_counter(), compile_seconds()
    programs = _chain_programs(model, log_prior, budget, settings, args)
    log.info(
        "NUTS programs for %d padded rows: %.1f s (compile %.1f s; %s)",
        len(next(iter(cols.values()))),
        time.perf_counter() - t0,
        compile_seconds() - k0,
        cache_summary(),
    )

    plateau: list[str] = []  # a chain that ends its warm-up on a plateau stops them all

    def run_chain(c: int) -> dict[str, np.ndarray] | None:
        total = settings.warmup + settings.samples
        t0, k0 = time.perf_counter(), compile_seconds(this_thread=True)
        state = programs.init(keys[c], jnp.asarray(inits[c]), metric, cols, args[4])
        draws = programs.draws
        for a, b in _segments(0, settings.warmup):
            if plateau:
                return None
            state, draws = programs.advance(state, draws, a, b, cols, args[4])
            jax.block_until_ready(state)  # dispatch is asynchronous: time the work
            log.info(
                "chain %d: iteration %d of %d (warm-up), %.1f s",
                c,
                b,
                total,
                time.perf_counter() - t0,
                extra=PROGRESS,
            )
        t1, k1 = time.perf_counter(), compile_seconds(this_thread=True)
        where = np.asarray(state.z)[None, None, :]
        off = runaway(where, init_phi, init_cov, shards=shards, names=model.par.free_names)
        if off:  # sampling on cannot help: say so now, not after the draws
            plateau.append(f"chain {c} ended its warm-up on a plateau: " + " ".join(off))
            return None
        adapt = state.adapt_state
        log.info(
            "chain %d: warm-up %.1f s (compile %.1f s), step size %.3g",
            c,
            t1 - t0,
            k1 - k0,
            float(adapt.step_size),
        )
        for a, b in _segments(settings.warmup, total):
            if plateau:
                return None
            state, draws = programs.advance(state, draws, a, b, cols, args[4])
            jax.block_until_ready(state)
            elapsed = time.perf_counter() - t0
            log.info("chain %d: iteration %d of %d, %.1f s", c, b, total, elapsed, extra=PROGRESS)
        phi, potential, diverging, steps = (np.asarray(x) for x in draws)
        t2, k2 = time.perf_counter(), compile_seconds(this_thread=True)
        log.info(
            "chain %d: %d draws in %.1f s (compile %.1f s), %d divergent, mean %.1f leapfrog steps",
            c,
            settings.samples,
            t2 - t1,
            k2 - k1,
            int(np.sum(diverging)),
            float(np.mean(steps)),
        )
        return {
            "phi": phi,
            "log_density": -potential,
            "diverging": diverging,
            "num_steps": steps,
            "step_size": np.asarray(adapt.step_size),
            "inverse_mass_matrix": _dense(adapt.inverse_mass_matrix, p),
        }

    workers = max(1, min(threads, settings.chains))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            chains = list(pool.map(run_chain, range(settings.chains)))
    else:
        chains = [run_chain(c) for c in range(settings.chains)]
    if plateau:
        raise ImproperPosteriorError(plateau[0])
    stack = {k: np.stack([c[k] for c in chains]) for k in chains[0]}
    r_hat = np.array([split_gelman_rubin(stack["phi"][..., i]) for i in range(p)])
    ess = np.array([effective_sample_size(stack["phi"][..., i]) for i in range(p)])
    bulk, tail = tail_aware_ess(stack["phi"])
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
        "ess_bulk": bulk.tolist(),
        "ess_tail": tail.tolist(),
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
    problems += ess_problems(bulk, tail, settings, names=model.par.free_names)
    if problems:
        off = runaway(stack["phi"], init_phi, init_cov, shards=shards, names=model.par.free_names)
        if off:
            raise ImproperPosteriorError("; ".join(problems) + ". " + " ".join(off))
        raise ShardQualityError("; ".join(problems))
    return post


def tail_aware_ess(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bulk and tail effective sample sizes of each parameter of ``phi`` (chains, draws,
    p): ArviZ's rank-normalised bulk ESS and the ESS of the 5% and 95% quantiles (the
    smaller of the two), as Vehtari et al. (2021) define them. The tail ESS is what tells
    a sampler that visits a long upper tail too rarely from one that explores it.

    Examples
    --------
    >>> draws = np.random.default_rng(0).normal(size=(2, 400, 1))
    >>> bulk, tail = tail_aware_ess(draws)
    >>> bool(bulk[0] > 600 and tail[0] > 600)
    True
    """
    import arviz

    p = phi.shape[-1]
    bulk = np.array([float(arviz.ess(phi[..., i], method="bulk")) for i in range(p)])
    tail = np.array([float(arviz.ess(phi[..., i], method="tail")) for i in range(p)])
    return bulk, tail


def ess_problems(
    bulk: np.ndarray, tail: np.ndarray, settings: NUTSSettings, *, names: Any
) -> list[str]:
    """The ESS gates: at least ``min_ess_bulk`` and ``min_ess_tail`` per chain for every
    parameter (non-finite counts as failing)."""
    problems = []
    for kind, values, per_chain in (
        ("bulk", bulk, settings.min_ess_bulk),
        ("tail", tail, settings.min_ess_tail),
    ):
        need = per_chain * settings.chains
        low = [f"{n} {v:.0f}" for n, v in zip(names, values, strict=True) if not (v >= need)]
        if low:
            problems.append(
                f"{kind} ESS {', '.join(low)} < {per_chain:g} per chain × {settings.chains} "
                f"chains (cmc.min_ess_{kind}): the draws do not yet describe the "
                f"{'tails' if kind == 'tail' else 'bulk'} of the posterior; raise "
                "cmc.samples, or cmc.chains"
            )
    return problems


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
