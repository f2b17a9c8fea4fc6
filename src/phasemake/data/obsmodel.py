"""Observation models: the residuals NLSQ accumulates, from a trace, per block of rows.

Parameters are fitted on the log scale, ``φ = log θ`` (all phase-type parameters are
rates, and the SFS mutation scaling is positive): bounds by reparameterisation, never by
clipping. Parameters may be held fixed.

``absorption_times`` (maximum likelihood)
    ``ℓ_i = w_i log f(t_i; θ)`` for an observed time and ``w_i log S(t_i; θ)`` for a
    right-censored one, with ``f`` and ``S`` the phase-type density and survival from the
    trace. NLSQ works with the Gauss–Newton form of the deviance ``-2 Σ ℓ_i``: row ``i`` has
    a unit residual ``√w_i`` with Jacobian ``-√w_i ∇_φ log f_i``, so ``JᵀJ = Σ w g gᵀ`` is
    the outer product of scores (BHHH) and ``Jᵀr = -∇ℓ``: its optimum is the MLE and
    ``(JᵀJ)⁻¹`` the outer-product estimate of the covariance (dispersion known, s² = 1).
``sfs`` (Poisson random field)
    Window ``w`` has counts ``ξ_{wi} ~ Poisson(μ_{wi})``, ``μ_{wi} = mutation · sites_w ·
    E[ξ_i](θ)``, where ``E[ξ_i]`` is the expected total length of branches subtending ``i``
    samples (the trace's expectation of the reward ``state[i-1]``). Residuals are Poisson
    deviance residuals, ``sign(y-μ) √(2(y log(y/μ) - (y-μ)))``: the sum of squares is the
    deviance, so the optimum is the MLE; the covariance is ``s² (JᵀJ)⁻¹`` with
    ``s² = χ²/(N - p)``.

    With ``misidentification``, a parameter ``misid`` (ε) mixes each class with its mirror,
    ``(1 - ε) E[ξ_i] + ε E[ξ_{n-i}]``: a fraction ε of the sites has the ancestral allele
    wrong (as in dadi and moments). With ``folded``, the data are minor-allele counts
    ``η_1 .. η_{⌊n/2⌋}`` and the expectation is folded the same way,
    ``E[ξ_i] + E[ξ_{n-i}]`` (``E[ξ_{n/2}]`` alone for n even).

Every pass also returns each row's score ``∇_φ ℓ_i`` summed by block of linked rows (the
``block`` column; :mod:`phasemake.fit.linkage`), for the sandwich covariance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import xlogy  # noqa: E402

from phasemake.core.errors import DataError  # noqa: E402
from phasemake.data.observations import (  # noqa: E402
    Observations,
    fold,
    observed_classes,
    observed_sfs,
)
from phasemake.fit.state import Accumulator  # noqa: E402
from phasemake.trace import lumping  # noqa: E402
from phasemake.trace.uniformisation import BLOCK  # noqa: E402

__all__ = ["MISID", "MUTATION", "Accumulator", "ObservationModel", "Parametrisation", "fold"]

#: Name of the SFS mutation-scaling parameter.
MUTATION = "mutation"
#: Name of the ancestral-misidentification parameter ε (``misidentification: true``).
MISID = "misid"


class Parametrisation(NamedTuple):
    """All parameters of an analysis, which are fitted (log scale) and the fixed values."""

    names: tuple[str, ...]
    free: tuple[int, ...]
    values: tuple[float, ...]  # fixed values (and initial values of the free ones)

    @classmethod
    def create(
        cls, names: tuple[str, ...], *, initial: Mapping[str, float], fixed: Mapping[str, float]
    ) -> Parametrisation:
        """Check names and values: every value a positive finite number of a known name.

        Examples
        --------
        >>> p = Parametrisation.create(("coal", "mig"), initial={"mig": 0.5}, fixed={})
        >>> p.theta(p.phi0()).tolist()
        [1.0, 0.5]
        """
        for what, mapping in (("initial", initial), ("fixed", fixed)):
            for name, value in mapping.items():
                if name not in names:
                    raise DataError(f"nlsq.{what}.{name}: unknown parameter; expected {names}")
                if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                    raise DataError(f"nlsq.{what}.{name}={value!r}: expected a rate > 0")
        free = tuple(i for i, n in enumerate(names) if n not in fixed)
        if not free:
            raise DataError(f"every parameter of {names} is fixed; nothing to fit")
        values = tuple(float(fixed.get(n, initial.get(n, 1.0))) for n in names)
        return cls(tuple(names), free, values)

    def phi0(self) -> np.ndarray:
        return np.log(np.asarray(self.values)[list(self.free)])

    def theta(self, phi) -> jax.Array:
        full = jnp.asarray(self.values, dtype=jnp.float64)
        return full.at[jnp.asarray(self.free)].set(jnp.exp(phi))

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.free)


class ObservationModel:
    """Residual statistics of one observation ``kind`` on a trace (see module docstring).

    Parameters
    ----------
    kind
        ``"absorption_times"`` or ``"sfs"``.
    trace
        The model's :class:`phasemake.Trace`.
    states
        The graph's ``(V, d)`` states (``sfs``: rewards are the first n-1 columns).
    initial, fixed
        Parameter values by name (unnamed free parameters start at 1).
    folded, misidentification
        ``sfs`` only: minor-allele data; the ε parameter ``misid`` (see module docstring).
    bootstrap, bootstrap_seed
        Replicates of the block bootstrap accumulated with every pass, and their seed
        (:mod:`phasemake.fit.linkage`).
    linked
        The rows are declared linked (the analysis's ``linkage``): the fit's headline
        intervals are the block-robust ones.
    """

    def __init__(
        self,
        kind: str,
        trace,
        *,
        states: np.ndarray | None = None,
        initial: Mapping[str, float] | None = None,
        fixed: Mapping[str, float] | None = None,
        folded: bool = False,
        misidentification: bool = False,
        bootstrap: int = 0,
        bootstrap_seed: int = 0,
        linked: bool = False,
    ) -> None:
        self.kind, self.trace = kind, trace
        if kind != "sfs" and (folded or misidentification):
            raise DataError("folded and misidentification apply to sfs analyses only")
        if folded and misidentification:
            raise DataError(
                "misidentification with a folded SFS: folding removes what ε changes; "
                "drop misidentification (or give the ancestral allele and unfold)"
            )
        extra = ((MUTATION,) if kind == "sfs" else ()) + ((MISID,) if misidentification else ())
        names = tuple(trace.parameters) + extra
        for name in extra:
            if name in trace.parameters:
                raise DataError(f"the model has a parameter named {name!r}; rename it for sfs")
        if misidentification:
            initial = {MISID: 0.01, **(initial or {})}
        self.par = Parametrisation.create(names, initial=initial or {}, fixed=fixed or {})
        self.folded, self.misidentification = folded, misidentification
        self.bootstrap, self.bootstrap_seed = int(bootstrap), int(bootstrap_seed)
        self.linked = bool(linked)
        self.n_classes, self._fold = None, None
        if kind == "sfs":
            if states is None or states.shape[1] < 2:
                raise DataError("sfs needs a block-counting model (state[i-1] = i-ton lineages)")
            k = int(states.shape[1] - 1)
            self._rewards = jnp.asarray(states[:, :k], dtype=jnp.float64)
            self._fold = jnp.asarray(fold(k + 1)) if folded else None
            self.n_classes = observed_classes(k, folded=folded)
        self._jitted: dict[Any, Any] = {}
        self._epochs = getattr(trace, "history", None) is not None  # an EpochTrace
        # a one-deme coalescent's SFS on its block chain (lineage counts): its rewards per
        # block are computed once here, so an evaluation costs M blocks, not V states
        self._chain = _block_chain(trace, states[:, :k]) if kind == "sfs" else None

    @property
    def scale_known(self) -> bool:
        """Whether s² = 1 (likelihood) or estimated as χ²/(N - p) (least squares)."""
        return self.kind == "absorption_times"

    # -- budgets --------------------------------------------------------------------------
    def budget(self, phi: np.ndarray, t_max: float | None) -> int:
        """Uniformisation steps for times up to ``t_max`` at ``phi`` (a power of two times
        the interval size, so that few budgets get compiled)."""
        theta = np.asarray(self.par.theta(jnp.asarray(phi)))
        if self.kind != "absorption_times":  # a history's expectations have series too
            return self.trace.n_terms(theta[: len(self.trace.parameters)]) if self._epochs else 0
        need = -(-self.trace.n_terms(theta, [float(t_max)]) // BLOCK)  # (a Trace's: exact)
        return BLOCK * (1 << max(0, int(np.ceil(np.log2(max(need, 1))))))

    def region_budget(self, phi: np.ndarray, half_width: np.ndarray, t_max: float | None) -> int:
        """The largest :meth:`budget` over the corners of the box ``phi ± half_width``
        (steps grow with some rates and shrink with others), for samplers that roam."""
        if self.kind != "absorption_times" and not self._epochs:
            return 0
        phi, half_width = np.asarray(phi, dtype=float), np.asarray(half_width, dtype=float)
        signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * phi.size)).reshape(phi.size, -1).T
        return max(self.budget(phi + s * half_width, t_max) for s in signs)

    # -- statistics ------------------------------------------------------------------------
    def accumulate(
        self, phi: np.ndarray, block: Observations, *, budget: int, rows: int | None = None
    ) -> Accumulator:
        """Statistics of ``block`` at ``phi``, padded with zero-weight rows to a multiple of
        1024 rows and to at least ``rows`` (the file's block size: a short last block then
        runs the same compiled program as the others)."""
        from phasemake.fit.linkage import BlockScores

        cols = self.padded(block, rows=rows)
        fn = self._function(budget)
        out = (np.asarray(x) for x in fn(jnp.asarray(phi), cols))
        jtj, jtr, chi2, rr, count, scores, bread = out
        scores = scores[: block.n_rows]
        if "block" in block.columns:
            blocks = BlockScores.from_rows(
                block.columns["block"],
                scores,
                bread=bread,
                replicates=self.bootstrap,
                seed=self.bootstrap_seed,
            )
        else:
            blocks = BlockScores.independent(scores, bread=bread)
        return Accumulator(jtj, jtr, float(chi2), float(rr), float(count), blocks)

    def log_likelihood(self, phi, cols: Mapping[str, jax.Array], budget: int) -> jax.Array:
        """Total log-likelihood of (padded) columns at ``phi``, traceable (for NUTS).

        ``absorption_times``: ``Σ w_i log f(t_i)`` (``log S(t_i)`` if censored);
        ``sfs``: ``Σ y log μ - μ - log y!`` over cells. Padding rows count zero.
        """
        if self.kind == "absorption_times":
            return cols["weight"] @ self._row_loglik(phi, cols, budget)
        expected = self._expected_sfs(phi, budget)
        y, mu = cols["counts"], cols["sites"][:, None] * expected[None, :]
        cell = xlogy(y, mu) - mu - jax.scipy.special.gammaln(y + 1.0)
        return jnp.sum(cols["mask"][:, None] * cell)

    def padded(self, block: Observations, *, rows: int | None = None) -> dict[str, jax.Array]:
        """Columns padded with rows that count zero to a multiple of 1024 rows, and to at
        least ``rows`` (few compiled shapes: blocks or shards padded to their largest
        member's size all share one)."""
        return _pad(block, 1024, rows)

    def _function(self, budget: int):
        if budget not in self._jitted:
            body = self._absorption if self.kind == "absorption_times" else self._sfs
            self._jitted[budget] = jax.jit(lambda phi, cols: body(phi, cols, budget))
        return self._jitted[budget]

    def _row_loglik(self, phi, cols, budget):
        """Unweighted ``log f(t_i)`` (``log S(t_i)`` if censored); 0 on padding rows."""
        theta, t = self.par.theta(phi), cols["time"]
        pdf, surv = self.trace.pdf_and_survival(theta, t, n_terms=budget)
        value = jnp.where(cols["censored"] > 0, jnp.log(surv), jnp.log(pdf))
        return jnp.where(cols["weight"] > 0, value, 0.0)

    def _absorption(self, phi, cols, budget):
        w = cols["weight"]

        def loglik(p):
            value = self._row_loglik(p, cols, budget)
            return value, value

        g, ll = jax.jacfwd(loglik, has_aux=True)(phi)
        wg = w[:, None] * g  # the rows' scores ∇ w_i ℓ_i
        jtj = g.T @ wg
        return jtj, -wg.sum(axis=0), -2.0 * (w @ ll), w.sum(), (w > 0).sum(), wg, jtj

    def _expected_sfs(self, phi, budget: int = 0):
        """Per-site expected SFS: ``mutation · E[ξ_i](θ)`` (``budget``: the terms of a
        history's series, see :meth:`budget`)."""
        theta = self.par.theta(phi)
        p_model = len(self.trace.parameters)
        if self._chain is not None:
            blocks, per_block = self._chain
            rates, times = (
                (
                    self.trace.history.rates(theta[:p_model]),
                    self.trace.history.times(theta[:p_model]),
                )
                if self._epochs
                else (theta[None, :p_model], jnp.zeros((0,), theta.dtype))
            )
            e = lumping.chain_expectation(blocks, rates, times, per_block) * theta[p_model]
        else:
            extra = {"n_terms": budget} if self._epochs else {}
            e = self.trace.expectation(theta[:p_model], self._rewards, **extra) * theta[p_model]
        misid = theta[p_model + 1] if self.misidentification else None
        return observed_sfs(e, misid=misid, fold_matrix=self._fold)

    def _sfs(self, phi, cols, budget):
        sites, y, mask = cols["sites"], cols["counts"], cols["mask"]

        def expected(p):
            return self._expected_sfs(p, budget)

        def residuals(e):
            mu = sites[:, None] * e[None, :]
            d = 2.0 * (xlogy(y, y) - xlogy(y, mu) - (y - mu))  # (no 0 * inf at y = 0)
            small = d < 1e-20  # y ≈ μ: the deviance residual is (y - μ)/√μ to first order
            r = jnp.where(
                small, (y - mu) / jnp.sqrt(mu), jnp.sign(y - mu) * jnp.sqrt(jnp.where(small, 1, d))
            )
            r = (r * mask[:, None]).ravel()
            return r, r

        # the expectation has a hand-written reverse mode: chain rule through the k classes
        e = expected(phi)
        de = jax.jacrev(expected)(phi)  # (k, p)
        dr, r = jax.jacfwd(residuals, has_aux=True)(e)  # (W k, k)
        jac = dr @ de
        chi2 = r @ r
        scores = -(jac * r[:, None]).reshape(y.shape[0], y.shape[1], -1).sum(axis=1)
        # the expected (Fisher) information Σ_w Σ_i sites_w ∂e_i ∂e_iᵀ / e_i: the bread of
        # the sandwich (JᵀJ of deviance residuals only approximates it)
        fisher = (mask @ sites) * (de.T @ (de / e[:, None]))
        return jac.T @ jac, jac.T @ r, chi2, chi2, mask.sum() * y.shape[1], scores, fisher


def padded_size(n: int, multiple: int = 1024, rows: int | None = None) -> int:
    """Rows after padding ``n`` to at least ``rows`` and up to a multiple of ``multiple``.

    Examples
    --------
    >>> padded_size(5000), padded_size(5120, rows=5121), padded_size(100, rows=5000)
    (5120, 6144, 5120)
    """
    return -(-max(n, rows or 0) // multiple) * multiple


def _pad(block: Observations, multiple: int, rows: int | None = None) -> dict[str, jax.Array]:
    n = block.n_rows
    size = padded_size(n, multiple, rows)
    cols = dict(block.columns)
    if block.kind == "sfs":
        cols["mask"] = np.ones(n)
    key = "weight" if block.kind == "absorption_times" else "mask"
    out = {}
    for name, arr in cols.items():
        fill = np.repeat(arr[:1], size - n, axis=0)
        if name == key:
            fill = np.zeros_like(fill)
        out[name] = jnp.asarray(np.concatenate([arr, fill]))
    return out


def _block_chain(trace, rewards: np.ndarray):
    """``(blocks, rewards per block)`` when the trace (a ``Trace`` or a lumped
    ``EpochTrace``) lumps exactly into a block chain (:mod:`phasemake.trace.lumping`),
    else None. ``rewards`` are (V, k) in graph vertex order."""
    if getattr(trace, "history", None) is not None:  # an EpochTrace has decided already
        found, inner = trace.lumping, trace.trace
    else:
        found, inner = trace.lumping, trace  # stored in its trace file, or found once
    if found is None:
        return None
    transient = np.asarray(inner._series_data.transient, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)[np.asarray(inner.data.order)] * transient[:, None]
    return lumping.block_arrays(found), jnp.asarray(lumping.project(found, r))
