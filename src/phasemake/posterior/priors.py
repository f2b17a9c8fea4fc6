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

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

from phasemake.core.errors import DataError  # noqa: E402

__all__ = ["DEFAULT_PRIOR", "FAMILIES", "log_prior"]

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
