"""Priors on the rates θ, as log densities on the sampling scale φ = log θ.

A prior is given per parameter by one family and its arguments (all on the θ scale):

``lognormal: {loc, scale}``  log θ ~ Normal(loc, scale)
``gamma: {concentration, rate}``  θ ~ Gamma(concentration, rate)
``exponential: {rate}``  θ ~ Exponential(rate)

The density on φ includes the Jacobian of θ = e^φ: ``log p_φ(φ) = log p_θ(e^φ) + φ``.
That is the density a shard fractionates (``p_φ^{1/S}``), so that the product of the S
shard densities is the full posterior on the scale the consensus combines on. The default
is ``lognormal: {loc: 0, scale: 10}``: nearly flat on log θ over many orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from scipy.optimize import brentq

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

from phasemake.core.errors import DataError  # noqa: E402

__all__ = ["DEFAULT_PRIOR", "FAMILIES", "PRIOR_DROP", "log_prior", "prior_box"]

#: The prior of a parameter the config does not name.
DEFAULT_PRIOR = {"lognormal": {"loc": 0.0, "scale": 10.0}}

#: Family -> (its arguments, the NumPyro distribution of θ).
FAMILIES: dict[str, tuple[tuple[str, ...], Callable[..., dist.Distribution]]] = {
    "lognormal": (("loc", "scale"), dist.LogNormal),
    "gamma": (("concentration", "rate"), dist.Gamma),
    "exponential": (("rate",), dist.Exponential),
}


def _distribution(name: str, spec: Mapping[str, Any]) -> dist.Distribution:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise DataError(
            f"prior.{name} = {spec!r}: expected one family, "
            "e.g. {lognormal: {loc: 0, scale: 1}}"
        )
    ((family, args),) = spec.items()
    if family not in FAMILIES:
        raise DataError(
            f"prior.{name}: unknown family {family!r}; expected one of {list(FAMILIES)}"
        )
    names, make = FAMILIES[family]
    if not isinstance(args, Mapping) or sorted(args) != sorted(names):
        raise DataError(f"prior.{name}.{family} = {args!r}: expected exactly the keys {names}")
    for key in names:
        value = args[key]
        ok = isinstance(value, int | float) and value == value and abs(value) != float("inf")
        if not ok or (key != "loc" and value <= 0):
            raise DataError(
                f"prior.{name}.{family}.{key} = {value!r}: expected a finite number"
                + ("" if key == "loc" else " > 0")
            )
    return make(*(float(args[k]) for k in names))


def log_prior(
    names: Sequence[str], config: Mapping[str, Any] | None = None
) -> Callable[[jax.Array], jax.Array]:
    """The joint log prior density of the free parameters ``names`` on φ = log θ.

    Parameters
    ----------
    names
        The free parameters, in the order of φ.
    config
        Prior per parameter name (unnamed ones get :data:`DEFAULT_PRIOR`).

    Examples
    --------
    >>> lp = log_prior(["coal"], {"coal": {"exponential": {"rate": 1.0}}})
    >>> float(lp(jnp.array([0.0])))  # log(e^{-1}) + 0
    -1.0
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise DataError(f"prior names {unknown}, which are not free parameters {list(names)}")
    dists = [_distribution(n, config.get(n, DEFAULT_PRIOR)) for n in names]

    def log_density(phi: jax.Array) -> jax.Array:
        theta = jnp.exp(phi)
        return sum(d.log_prob(theta[i]) for i, d in enumerate(dists)) + jnp.sum(phi)

    return log_density


#: Log-density drop (per shard, on φ) at the edge of :func:`prior_box`: a normal prior's
#: box is ± 5 sd, where the density is e^-12.5 of its mode's (two-sided mass 6e-7).
PRIOR_DROP = 12.5


def _family_args(spec: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    ((family, args),) = spec.items()
    return family, {k: float(v) for k, v in args.items()}


def prior_box(
    names: Sequence[str],
    config: Mapping[str, Any] | None = None,
    *,
    shards: int = 1,
    drop: float = PRIOR_DROP,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each parameter's fractionated prior ``p_φ^{1/S}`` is within ``drop`` of its
    maximum, on φ = log θ: outside it a shard's posterior has negligible mass unless the
    data pull it there (then the fit's estimate lies outside too; see
    :func:`phasemake.posterior.cmc.shard_budget`).

    Lognormal: ``loc ± scale·√(2 S drop)``. Gamma and exponential (log density
    ``k φ - r e^φ`` on φ, concave): the two roots of that drop, by Brent's method.

    Examples
    --------
    >>> lo, hi = prior_box(["mig"], {"mig": {"lognormal": {"loc": 0.0, "scale": 1.0}}})
    >>> float(lo[0]), float(hi[0])  # ± 5 sd
    (-5.0, 5.0)
    """
    config = dict(config or {})
    lows, highs = [], []
    for name in names:
        spec = config.get(name, DEFAULT_PRIOR)
        _distribution(name, spec)  # the same checks (and messages) as log_prior
        family, args = _family_args(spec)
        depth = shards * drop
        if family == "lognormal":
            half = args["scale"] * np.sqrt(2.0 * depth)
            lows.append(args["loc"] - half)
            highs.append(args["loc"] + half)
            continue
        k = args.get("concentration", 1.0)
        rate = args["rate"]
        mode = np.log(k / rate)

        def below(phi, k=k, rate=rate, mode=mode, depth=depth):
            return (k * phi - rate * np.exp(phi)) - (k * mode - k) + depth

        lows.append(brentq(below, mode - depth / k - 1.0, mode))
        highs.append(brentq(below, mode, mode + np.log1p(depth) + 2.0 + np.sqrt(depth / k)))
    return np.array(lows), np.array(highs)
