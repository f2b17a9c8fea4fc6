"""The trace evaluator: exact, differentiable, batched phase-type computations in JAX.

Every method is a pure JAX function of θ (float64), jit-compiled once per trace,
differentiable (``jax.grad``) and vmappable over a batch of θ. Rewards are indexed by the
*graph's* vertex order.

- expectations ``E[∫ r(X_t) dt]`` solve ``(-S) x = r`` level by level (exact up to
  floating point: one division per single-vertex component, one dense solve per cyclic one);
- moments ``E[Y^k] = k! α (U R)^k 1`` with ``U = (-S)^{-1}`` by repeated solves, and
  covariances ``E[Y_a Y_b] = z·(r_a ⊙ U r_b) + (a ↔ b)`` from the occupation ``z = α U``;
- the density, cdf and survival use adaptive, level-truncated uniformisation (see
  :mod:`phasemake.trace.uniformisation`) — for all t at once.

The solves walk the levels unrolled (:mod:`phasemake.trace.levels`, one program per level)
or stacked (:mod:`phasemake.trace.stacked`, one program per padded shape: the default when
more than :data:`STACK_FROM` levels hold cyclic components), with the same results.

The solves have adjoint reverse modes (``custom_vjp``: a solve of the other orientation
and edge sums, 2–3× the value); JAX has no forward mode for them, so use ``jax.grad`` or
``jax.jacrev`` on expectations, occupation, moments and covariances. The density, cdf and
survival support forward mode too.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from phasemake.trace import levels, stacked, uniformisation  # noqa: E402
from phasemake.trace.lumpstore import Lumping, has_lumping, read_lumping  # noqa: E402
from phasemake.trace.units import initial_distribution  # noqa: E402

__all__ = ["Trace", "TraceData"]

#: Traces with more levels that hold cyclic components than this are stacked (see
#: :mod:`phasemake.trace.stacked`); below it the unrolled walk compiles as fast.
STACK_FROM = 8


class TraceData(NamedTuple):
    """Device arrays of a trace (all in trace vertex order)."""

    edge_src: jax.Array
    edge_tgt: jax.Array
    edge_coef: jax.Array
    in_src: jax.Array  # external edges sorted by (target level, target)
    in_tgt: jax.Array
    in_coef: jax.Array
    out_coef: jax.Array  # (V, p): Σ of coefficients out of each vertex
    order: jax.Array  # trace position -> graph vertex
    position: jax.Array  # graph vertex -> trace position
    alpha: jax.Array
    absorbing: jax.Array
    stacked: Any = ()  # the stacked plan's index arrays (:mod:`phasemake.trace.stacked`)


def _theta_cotangent(data: TraceData, left, right, sums) -> jax.Array:
    """``-Σ_e c_e Σ_k left_ik (right_ik - right_jk)`` over edges ``e = i → j``: the
    cotangent of θ for ``(-S) right = ·`` with adjoint ``left``, from ``sums`` (the edge
    sums of ``right``, :func:`_solve`'s ``edge_sums``): no pass over the edges."""
    if left.ndim == 1:
        return left @ sums - (left * right) @ data.out_coef
    return jnp.einsum("ik,ipk->p", left, sums) - jnp.sum(left * right, axis=1) @ data.out_coef


def _make_solves(solve_impl, occupation_impl):
    """``solve(data, θ, rhs) = (-S)^{-1} rhs`` and ``occupation(data, θ) = α (-S)^{-1}``
    with adjoint reverse modes: the cotangent of ``rhs`` is the solve of the other
    orientation, that of θ comes from edge sums the solves accumulate
    (:func:`_theta_cotangent`). ``solve_impl(data, θ, rhs, edge_sums)`` and
    ``occupation_impl(data, θ, rhs)`` walk the levels (unrolled or stacked).
    Differentiating the elimination op by op kept every level's intermediates (6–10× the
    forward cost for moments and covariances)."""

    @jax.custom_vjp
    def solve(data: TraceData, theta, rhs):
        return solve_impl(data, theta, rhs, False)

    def solve_fwd(data, theta, rhs):
        x, sums = solve_impl(data, theta, rhs, True)
        return x, (data, theta, x, sums)

    def solve_bwd(res, g):
        data, theta, x, sums = res
        lam = occupation_impl(data, theta, g)
        return _zero_cotangent(data), _theta_cotangent(data, lam, x, sums), lam

    solve.defvjp(solve_fwd, solve_bwd)

    @jax.custom_vjp
    def occupation(data: TraceData, theta):
        return occupation_impl(data, theta, data.alpha)

    def occupation_fwd(data, theta):
        z = occupation_impl(data, theta, data.alpha)
        return z, (data, theta, z)

    def occupation_bwd(res, g):
        data, theta, z = res
        mu, sums = solve_impl(data, theta, g, True)
        return _zero_cotangent(data), _theta_cotangent(data, z, mu, sums)

    occupation.defvjp(occupation_fwd, occupation_bwd)
    return solve, occupation


def _level_walks(static: tuple, how: str):
    """The solve and occupation walks: ``"unrolled"`` over the levels ``static`` (one
    program per level, :mod:`phasemake.trace.levels`) or ``"stacked"`` with the bucket
    shapes ``static`` (one program per padded shape, :mod:`phasemake.trace.stacked`)."""
    if how == "unrolled":
        return (
            lambda data, theta, rhs, sums: levels.solve(static, data, theta, rhs, edge_sums=sums),
            lambda data, theta, rhs: levels.occupation(static, data, theta, rhs),
        )
    return (
        lambda data, theta, rhs, sums: stacked.solve(
            static, data.stacked, data, theta, rhs, edge_sums=sums
        ),
        lambda data, theta, rhs: stacked.occupation(static, data.stacked, data, theta, rhs),
    )


def _zero_cotangent(data: TraceData) -> TraceData:
    """Zero cotangents for the trace arrays (they are constants of the model)."""

    def zero(a):
        if jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.zeros_like(a)
        return np.zeros(a.shape, dtype=jax.dtypes.float0)

    return jax.tree_util.tree_map(zero, data)


def parameter_vector(theta: Any, names: tuple[str, ...]) -> jax.Array:
    """``theta`` as a float64 vector, one value per name (a batch is refused: vmap it)."""
    theta = jnp.asarray(theta, dtype=jnp.float64)
    if theta.shape != (len(names),):
        raise ValueError(
            f"theta has shape {theta.shape}; expected ({len(names)},) for parameters "
            f"{list(names)} (use jax.vmap for batches)"
        )
    return theta


class Trace:
    """A compiled elimination trace; create with :func:`phasemake.compile_trace` or
    :func:`phasemake.load_trace`.

    Parameters
    ----------
    arrays
        The trace arrays (see :mod:`phasemake.trace.units`).
    parameters
        Parameter names (θ order).
    provenance
        Metadata (spec, graph size, units).
    walk
        How the solves walk the levels: ``"unrolled"`` (one program per level),
        ``"stacked"`` (one program per padded shape, :mod:`phasemake.trace.stacked`: compile
        time grows with the logarithm of the number of levels) or ``"auto"``: stacked
        when more than :data:`STACK_FROM` levels hold cyclic components.

    Examples
    --------
    >>> import phasemake
    >>> from phasemake.models import kingman
    >>> trace = phasemake.compile_trace(phasemake.build_graph(kingman, n=10))
    >>> round(float(trace.expectation([1.0])), 12)   # 2 (1 - 1/n)
    1.8
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        parameters: tuple[str, ...],
        provenance: dict[str, Any] | None = None,
        walk: str = "auto",
    ) -> None:
        if walk not in ("auto", "unrolled", "stacked"):
            raise ValueError(f"walk={walk!r}; expected 'auto', 'unrolled' or 'stacked'")
        self.arrays = arrays
        self.parameters = tuple(parameters)
        self.provenance = dict(provenance or {})
        n = int(arrays["order"].size)
        alpha = initial_distribution(arrays)
        absorbing = np.zeros(n, dtype=bool)
        absorbing[: int(arrays["level_vptr"][1])] = True
        coef = np.asarray(arrays["edge_coef"], dtype=np.float64)
        out_coef = np.zeros((n, coef.shape[1]))
        np.add.at(out_coef, arrays["edge_src"], coef)
        perm, jptr = levels.in_edges(arrays)
        index = levels.index_dtype(n, coef.shape[0])  # int32 indices: less memory to stream
        src, tgt = arrays["edge_src"].astype(index), arrays["edge_tgt"].astype(index)
        self.data = TraceData(
            edge_src=jax.device_put(src),
            edge_tgt=jax.device_put(tgt),
            edge_coef=jax.device_put(coef),
            in_src=jax.device_put(src[perm]),
            in_tgt=jax.device_put(tgt[perm]),
            in_coef=jax.device_put(coef[perm]),
            out_coef=jax.device_put(out_coef),
            order=jax.device_put(arrays["order"].astype(index)),
            position=jax.device_put(np.argsort(arrays["order"]).astype(index)),
            alpha=jax.device_put(alpha),
            absorbing=jax.device_put(absorbing),
        )
        self._levels = levels.structure(arrays, jptr)
        cyclic = sum(1 for lv in self._levels if lv.groups)
        #: how the solves walk the levels ("unrolled" or "stacked")
        self.walk = walk if walk != "auto" else "stacked" if cyclic > STACK_FROM else "unrolled"
        static = self._levels
        if self.walk == "stacked":
            static, plan = stacked.build_plan(self._levels, arrays, perm)
            self.data = self.data._replace(stacked=jax.device_put(plan))
        solve, occupation = _make_solves(*_level_walks(static, self.walk))
        self._solve = jax.jit(solve)
        self._occupation = jax.jit(occupation)
        # E = z @ r: the occupation's reverse mode is E's (one solve for any number of r)
        self._expect = jax.jit(lambda data, theta, r: occupation(data, theta)[data.position] @ r)
        self._expect_time = jax.jit(lambda data, theta: jnp.sum(occupation(data, theta)))
        self._series_data = uniformisation.series_data(arrays, alpha)
        self._out_coef = out_coef
        self._series = jax.jit(
            uniformisation.series, static_argnames=("kind", "n_levels", "n_intervals", "limit")
        )

    # -- basic facts -------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        """Number of vertices V (rewards have V rows)."""
        return int(self.arrays["order"].size)

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return int(self.arrays["edge_src"].size)

    @property
    def n_levels(self) -> int:
        """Number of topological levels (absorption included)."""
        return int(self.arrays["level_vptr"].size - 1)

    @functools.cached_property
    def lumping(self) -> Lumping | None:
        """The exact block chain of the trace (:mod:`phasemake.trace.lumping`), or ``None``
        when it does not lump: as recorded in its trace file, else found on first use."""
        if has_lumping(self.arrays):
            return read_lumping(self.arrays)
        from phasemake.trace import lumping

        return lumping.lump(self._series_data)

    def _theta(self, theta: Any) -> jax.Array:
        return parameter_vector(theta, self.parameters)

    def _graph_rewards(self, rewards: Any) -> tuple[jax.Array, bool]:
        """Validated rewards in graph order as (V, k), and whether one vector was given."""
        r = jnp.asarray(rewards, dtype=jnp.float64)
        if r.ndim not in (1, 2) or r.shape[0] != self.n_vertices:
            raise ValueError(
                f"rewards have shape {r.shape}; expected ({self.n_vertices},) or "
                f"({self.n_vertices}, k): one row per graph vertex"
            )
        return (r[:, None] if r.ndim == 1 else r), r.ndim == 1

    def _rewards(self, rewards: Any) -> tuple[jax.Array, bool]:
        """Rewards in trace order as (V, k) (ones for ``None``), and whether one vector."""
        if rewards is None:
            return jnp.ones((self.n_vertices, 1)), True
        r, single = self._graph_rewards(rewards)
        return r[self.data.order], single

    # -- expectations and moments --------------------------------------------------------
    def expectation(self, theta: Any, rewards: Any = None) -> jax.Array:
        """``E[∫ r(X_t) dt]`` to absorption; ``rewards=None`` gives ``E[T]``.

        Returns a scalar for ``None`` or a ``(V,)`` reward vector, else shape ``(k,)``.
        One adjoint solve serves any number of reward vectors (``occupation @ rewards``).
        """
        theta = self._theta(theta)
        if rewards is None:
            return self._expect_time(self.data, theta)
        r, single = self._graph_rewards(rewards)
        e = self._expect(self.data, theta, r)
        return e[0] if single else e

    def occupation(self, theta: Any) -> jax.Array:
        """Expected time spent in each vertex before absorption, in graph vertex order.

        ``expectation(theta, r) == occupation(theta) @ r`` for any rewards ``r``.
        """
        return self._occupation(self.data, self._theta(theta))[self.data.position]

    def moments(self, theta: Any, k: int, rewards: Any = None) -> jax.Array:
        """``[E[Y], ..., E[Y^k]]`` for ``Y = ∫ r(X_t) dt`` (``Y = T`` when ``rewards=None``)."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}; expected a positive integer")
        r, single = self._rewards(rewards)
        if not single:
            raise ValueError("moments take one reward vector of shape (V,)")
        theta = self._theta(theta)
        y = jnp.ones_like(r)
        out = []
        for i in range(1, k + 1):
            y = self._solve(self.data, theta, r * y)
            out.append(math.factorial(i) * (self.data.alpha @ y)[0])
        return jnp.stack(out)

    def covariance(self, theta: Any, rewards: Any) -> jax.Array:
        """Covariance matrix ``(k, k)`` of ``Y_a = ∫ r_a(X_t) dt`` for rewards ``(V, k)``."""
        r, _ = self._rewards(rewards)
        theta = self._theta(theta)
        x = self._solve(self.data, theta, r)
        occ = self._occupation(self.data, theta)
        mean = occ @ r
        # E[Y_a Y_b] = α U R_a U r_b + (a ↔ b) with U = (-S)^{-1}; α U is the occupation
        z = (occ[:, None] * r).T @ x
        return z + z.T - jnp.outer(mean, mean)

    # -- distribution of the absorption time -----------------------------------------------
    def n_terms(self, theta: Any, t: Any) -> int:
        """Uniformisation steps the density at ``theta`` needs to reach ``max(t)``.

        Pass it as ``n_terms=`` inside ``jit``, ``grad`` or ``vmap``, computed at the θ
        with the fastest dynamics you will evaluate (a larger budget only costs time):
        times the budget does not reach come back NaN.
        """
        theta_np, t_np = self._concrete(theta, t)
        _, used = self._adaptive(theta_np, t_np, "pdf")
        return max(int(used), 1) * uniformisation.BLOCK

    def _concrete(self, theta: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
        theta = np.asarray(self._theta(theta))
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0):
            raise ValueError(f"t must be a 1-d array of finite times >= 0; got {t!r}")
        return theta, t

    def _adaptive(self, theta: np.ndarray, t: np.ndarray, kind: str):
        rate = float(np.max(self._out_coef @ theta, initial=0.0))
        t_max = float(t.max(initial=0.0))
        if not np.isfinite(rate) or rate * t_max > uniformisation.MAX_RATE_TIME:
            raise ValueError(
                f"theta={theta.tolist()} with times up to {t_max:g}: the largest exit rate "
                f"{rate:.3g} times t_max is beyond {uniformisation.MAX_RATE_TIME:g} "
                "uniformisation steps; expected finite rates on the data's time scale "
                "(rescale the times, or bound the parameters)"
            )
        limit = uniformisation.interval_limit(rate, t_max)
        return self._series(
            self._series_data,
            jnp.asarray(theta),
            jnp.asarray(t),
            kind=kind,
            n_levels=self.n_levels,
            limit=limit,
        )

    def _distribution(self, theta, t, n_terms, kind):
        if n_terms is None:
            if isinstance(theta, jax.core.Tracer) or isinstance(t, jax.core.Tracer):
                raise ValueError(
                    "inside jit/grad/vmap pass n_terms=trace.n_terms(theta_max, t_max): the "
                    "number of uniformisation steps must be fixed before tracing"
                )
            return self._adaptive(*self._concrete(theta, t), kind)[0]
        if not isinstance(n_terms, int) or n_terms < 1:
            raise ValueError(f"n_terms={n_terms!r}; expected a positive integer")
        t = jnp.atleast_1d(jnp.asarray(t, dtype=jnp.float64))
        n_intervals = -(-n_terms // uniformisation.BLOCK)
        return self._series(
            self._series_data,
            self._theta(theta),
            t,
            kind=kind,
            n_levels=self.n_levels,
            n_intervals=n_intervals,
        )[0]

    def pdf(self, theta: Any, t: Any, *, n_terms: int | None = None) -> jax.Array:
        """Density of the absorption time at times ``t`` (shape ``(T,)``)."""
        return self._distribution(theta, t, n_terms, "pdf")

    def survival(self, theta: Any, t: Any, *, n_terms: int | None = None) -> jax.Array:
        """``P(T > t)`` at times ``t``."""
        return self._distribution(theta, t, n_terms, "survival")

    def pdf_and_survival(
        self, theta: Any, t: Any, *, n_terms: int | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Density and ``P(T > t)`` at times ``t`` from one uniformisation pass (about half
        the work of :meth:`pdf` and :meth:`survival` called separately)."""
        pdf, surv = self._distribution(theta, t, n_terms, "both")
        return pdf, surv

    def cdf(self, theta: Any, t: Any, *, n_terms: int | None = None) -> jax.Array:
        """``P(T ≤ t)`` at times ``t``."""
        return 1.0 - self.survival(theta, t, n_terms=n_terms)

    def logpdf(self, theta: Any, t: Any, *, n_terms: int | None = None) -> jax.Array:
        """Log density of the absorption time at times ``t``."""
        return jnp.log(self.pdf(theta, t, n_terms=n_terms))
