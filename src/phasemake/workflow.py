"""Helpers the Snakemake workflow calls at parse time (this module never imports snakemake)."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from .cache import GraphCache
from .errors import ArtefactError, PhasemakeError
from .graph import DEFAULT_MAX_STATES
from .model import Model
from .resolve import load_model
from .spechash import spec_hash

__all__ = ["ModelSpec", "check_analyses", "discard_invalid_artefacts", "resolve_model_specs"]


class ModelSpec(NamedTuple):
    """A configured model: its config name, callback reference, params and spec hash."""

    name: str
    callback: str
    params: dict[str, Any]
    max_states: int
    spec: str
    model: Model


def resolve_model_specs(
    models: dict[str, dict[str, Any]], *, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, ModelSpec]:
    """Load every configured model and compute its spec hash (no graph is built).

    Parameters
    ----------
    models
        The validated ``models:`` section of the config: name → ``{callback, params,
        max_states}``.
    base_dir
        Directory that relative model-file paths are resolved against (default: the
        current working directory).

    Returns
    -------
    dict
        Config name → :class:`ModelSpec`, in config order.

    Raises
    ------
    PhasemakeError
        Naming the config entry (``models.<name>``) whose callback or params are invalid.

    Examples
    --------
    >>> specs = resolve_model_specs(
    ...     {"k": {"callback": "phasemake.models:kingman", "params": {"n": 5},
    ...            "max_states": 100}})
    >>> len(specs["k"].spec)
    32
    """
    out = {}
    for name, entry in models.items():
        params = dict(entry.get("params") or {})
        try:
            model = load_model(entry["callback"], base_dir=base_dir)
            spec = spec_hash(model, **params)
        except PhasemakeError as err:
            raise type(err)(f"config models.{name}: {err}") from err
        out[name] = ModelSpec(
            name=name,
            callback=entry["callback"],
            params=params,
            max_states=int(entry.get("max_states", DEFAULT_MAX_STATES)),
            spec=spec,
            model=model,
        )
    return out


def discard_invalid_artefacts(cache: str | os.PathLike[str], specs: list[str]) -> list[str]:
    """Verify the cached graphs and trace units of ``specs``; delete invalid ones.

    Called at parse time so that Snakemake sees a corrupt, truncated or foreign file as
    missing and recomputes it (and everything downstream). Returns one message per file
    removed.

    Examples
    --------
    >>> import tempfile
    >>> discard_invalid_artefacts(tempfile.mkdtemp(), ["0" * 32])
    []
    """
    from .tracefile import read_plan, read_unit

    messages = []
    graphs = GraphCache(cache)
    for spec in specs:
        problem = graphs.discard_if_invalid(spec)
        if problem:
            messages.append(problem)
        plan = graphs.plan_path(spec)
        if not plan.exists():
            continue
        try:
            units, _ = read_plan(plan)
        except ArtefactError as err:  # a broken plan is re-planned
            plan.unlink(missing_ok=True)
            messages.append(f"{err}; removed it so it is re-planned")
            continue
        for unit in units:
            path = graphs.unit_path(unit.key)
            if not path.exists():
                continue
            try:
                read_unit(path)
            except ArtefactError as err:
                path.unlink(missing_ok=True)
                messages.append(f"{err}; removed it so it is recomputed")
    return messages


def check_analyses(analyses: dict[str, dict[str, Any]], models: dict[str, ModelSpec]) -> None:
    """Parse-time checks of the validated ``analyses:`` section against the models.

    Raises
    ------
    PhasemakeError
        Naming ``analyses.<name>.<key>``: an unknown model, parameter names that are not
        the model's (or, for a prior, not free), simulated parameter values that do not
        match them, more shards than simulated rows, or a data file that does not exist.
    """
    for name, a in analyses.items():
        where = f"analyses.{name}"
        if a["model"] not in models:
            raise PhasemakeError(
                f"{where}.model = {a['model']!r} is not a configured model; expected one of "
                f"{sorted(models)}"
            )
        names = list(models[a["model"]].model.parameters)
        if a["observations"] == "sfs":
            names.append("mutation")
        nlsq = a.get("nlsq", {})
        for key, values in (
            ("nlsq.initial", nlsq.get("initial", {})),
            ("nlsq.fixed", nlsq.get("fixed", {})),
        ):
            for p in values:
                if p not in names:
                    raise PhasemakeError(f"{where}.{key}.{p}: unknown parameter; expected {names}")
        cmc = a.get("cmc", {})
        free = [n for n in names if n not in nlsq.get("fixed", {})]
        for p in cmc.get("prior", {}):
            if p not in free:
                raise PhasemakeError(
                    f"{where}.cmc.prior.{p}: not a free parameter; expected one of {free}"
                )
        data = a["data"]
        size = data.get("simulate", {}).get(
            "size" if a["observations"] == "absorption_times" else "windows"
        )
        shards = cmc.get("shards", "auto")
        if isinstance(shards, int) and size is not None and shards > size:
            raise PhasemakeError(
                f"{where}.cmc.shards = {shards} but the simulation has {size} rows; "
                f"expected at most {size}"
            )
        if "file" in data and not os.path.isfile(data["file"]):
            raise PhasemakeError(f"{where}.data.file = {data['file']!r} does not exist")
        sim = data.get("simulate")
        if sim is not None:
            if sorted(sim["theta"]) != sorted(names):
                raise PhasemakeError(
                    f"{where}.data.simulate.theta has {sorted(sim['theta'])}; expected a "
                    f"value for each of {names}"
                )
