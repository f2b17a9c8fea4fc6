"""Parse-time checks of the workflow config: its size, its schema and each model's params.

rules/common.smk calls :func:`check_config` before Snakemake's own ``validate()`` (which
then only fills in defaults), and :func:`phasemake.workflow.resolve_model_specs` calls
:func:`check_model_params` for each model. Every error is one short paragraph naming the
config path of the offending value (``models.k.params.n``), what was expected and the fix;
the schema is never printed.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
from collections.abc import Callable
from typing import Any

from phasemake.core.errors import PhasemakeError
from phasemake.graph.model import Model

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "ConfigError",
    "check_config",
    "check_config_file",
    "check_model_params",
    "check_schema",
    "check_size",
    "config_path",
]

#: Deepest nesting accepted in a config. The schema is 6 levels deep and construction params
#: are small; 50 leaves room for any real config and stays far below Python's recursion
#: limit, which jsonschema and the canonical encoding would otherwise hit.
MAX_DEPTH = 50
#: Most values (mappings, lists and scalars; a YAML alias counted at every use) accepted in a
#: config. A config with dozens of models and analyses has a few hundred; 10^5 is checked in
#: about 0.05 s, while a YAML alias bomb (10^9 values in 1 KB) would keep jsonschema and the
#: spec hash busy for hours: PyYAML loads aliases as shared objects (fast), and the blow-up
#: comes in every later walk. The count stops at the limit, so the check itself is bounded.
MAX_NODES = 100_000

#: Longest rendering of an offending value in a message.
_MAX_VALUE_CHARS = 120


class ConfigError(PhasemakeError, ValueError):
    """The workflow config is invalid; the message names the config path and the fix."""


def config_path(path: Any) -> str:
    """Dotted config path: ``("models", "k", "params", "n")`` → ``models.k.params.n``.

    Examples
    --------
    >>> config_path(["analyses", "a", "nlsq", "bounds", 0])
    'analyses.a.nlsq.bounds[0]'
    >>> config_path([])
    '(top level)'
    """
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def check_size(
    value: Any, *, where: str = "config", max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> None:
    """Refuse a structure nested deeper than ``max_depth`` or with more than ``max_nodes``
    values, after at most ``max_nodes`` steps whatever its expanded size.

    Shared objects (YAML aliases) are counted at every use, as any later walk sees them.

    Raises
    ------
    ConfigError
        Naming the path where a limit was crossed.

    Examples
    --------
    >>> check_size({"models": {"k": {"params": {"n": 6}}}})
    >>> check_size([[[[1]]]], max_depth=2)
    Traceback (most recent call last):
    ...
    phasemake.configcheck.ConfigError: config [0][0][0] is nested more than 2 levels deep ...
    """
    budget = max_nodes
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        cur, path = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(
                f"{where} has more than {max_nodes} values (at {config_path(path)}; a YAML "
                "alias counts at every use, so a few lines of `&a`/`*a` can expand to "
                "billions); a real config has a few hundred: remove the aliases or the "
                "generated data, and put large data in files"
            )
        if len(path) > max_depth:
            raise ConfigError(
                f"{where} {config_path(path)} is nested more than {max_depth} levels deep "
                "(a real config has fewer than 10); flatten it"
            )
        if isinstance(cur, dict):
            stack.extend((v, (*path, k)) for k, v in cur.items())
        elif isinstance(cur, (list, tuple)):
            stack.extend((v, (*path, i)) for i, v in enumerate(cur))


def _schema_at(schema: dict[str, Any], path: Any) -> dict[str, Any]:
    """The (sub)schema describing the value at ``path`` (best effort: properties,
    additionalProperties and items only)."""
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {}) if isinstance(node.get("items"), dict) else {}
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


def _did_you_mean(key: Any, allowed: list[str]) -> str:
    """``"did you mean 'N'? "`` for the closest allowed name, case aside (``n`` for ``N``
    is the commonest slip, and too short for a similarity ratio), else ``""``."""
    folded = {a.casefold(): a for a in allowed}
    close = difflib.get_close_matches(str(key).casefold(), list(folded), n=1, cutoff=0.6)
    return f"did you mean {folded[close[0]]!r}? " if close else ""


def _message(error: Any, schema: dict[str, Any]) -> str:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(_schema_at(schema, path).get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        lines = []
        for key in extra:
            hint = _did_you_mean(key, allowed)
            lines.append(
                f"config {config_path([*path, key])}: unknown key {key!r}; {hint}"
                f"allowed here: {', '.join(allowed) or 'none'}"
            )
        if lines:
            return "\n".join(lines)
    message = error.message
    if len(message) > 200:
        message = message[:197] + "..."
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", message)
        if missing:
            return f"config {config_path(path)}: required key {missing[0]!r} is missing"
    text = f"config {config_path(path)}: {message}"
    if repr(error.instance)[:40] not in message:
        text += f" (value: {_short(error.instance)})"
    hint = _schema_at(schema, path).get("description")
    if isinstance(hint, str) and hint.strip():
        first = re.split(r"\.\s+(?=[A-Z`])", " ".join(hint.split()))[0].rstrip(".")
        text += f". Expected: {first if len(first) <= 160 else first[:157] + '...'}"
    return text


def check_schema(config: Any, schema: dict[str, Any]) -> None:
    """Validate ``config`` against the JSON ``schema``; raise a short :class:`ConfigError`.

    The message names the config path of the offending value, says what is wrong and, for
    an unknown key, suggests the closest allowed one (``did you mean 'models'?``).

    Examples
    --------
    >>> schema = {"type": "object", "additionalProperties": False,
    ...           "properties": {"models": {"type": "object"}}}
    >>> check_schema({"modles": {}}, schema)
    Traceback (most recent call last):
    ...
    phasemake.configcheck.ConfigError: config modles: unknown key 'modles'; did you mean 'models'? allowed here: models
    """  # noqa: E501
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(_message(error, schema))


def check_config(config: Any, schema_path: str | os.PathLike[str]) -> None:
    """Size limits (:func:`check_size`), then the schema (:func:`check_schema`).

    Parameters
    ----------
    config
        The config as Snakemake loaded it (before defaults are filled in).
    schema_path
        The workflow's ``config/config.schema.yaml``.

    Raises
    ------
    ConfigError
        One short message: the config path, what is wrong, the fix.
    """
    import yaml

    check_size(config)
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    check_schema(config, schema)


def check_config_file(path: str | os.PathLike[str]) -> None:
    """Refuse a YAML config file beyond the size limits before Snakemake reads it.

    Snakemake's ``configfile:`` merges the loaded file into ``config`` by walking every
    mapping, so a YAML alias bomb made of mappings hangs there, before
    :func:`check_config` can run. Call this just before ``configfile:`` in the Snakefile.
    A missing file is left to Snakemake to report.

    Raises
    ------
    ConfigError
        Naming the file and where a limit was crossed.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)  # aliases are shared objects here: fast
    except FileNotFoundError:
        return
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    check_size(loaded, where=f"config file {path}")


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none
        return None


def _takes(sig: inspect.Signature, skip_first: bool) -> tuple[set[str], set[str], bool]:
    """Names ``sig`` accepts by keyword, those it requires, and whether it takes ``**kw``."""
    params = list(sig.parameters.values())
    if (
        skip_first
        and params
        and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
    ):
        params = params[1:]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in params if p.kind in keyword}
    required = {p.name for p in params if p.kind in keyword and p.default is p.empty}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    return names, required, var_kw


def check_model_params(
    name: str, model: Model, params: dict[str, Any], *, where: str | None = None
) -> None:
    """Check a model's construction params against its callback and initial distribution.

    The callback is called as ``callback(state, **params)``: every param must be a name it
    takes, and every name it requires must be given. The initial distribution is then
    computed from the params, so a wrong value (``n: "6"``, ``n: 0``) fails here, at parse
    time, instead of inside the build job.

    Raises
    ------
    ConfigError
        Naming ``models.<name>.params`` (and the param), the value and the fix.

    Examples
    --------
    >>> from phasemake.models import kingman
    >>> check_model_params("k", kingman, {"n": 6})
    >>> check_model_params("k", kingman, {"m": 6})
    Traceback (most recent call last):
    ...
    phasemake.configcheck.ConfigError: config models.k.params: unknown param 'm' ...
    """
    where = where or f"config models.{name}.params"
    sig = _signature(model.callback)
    if sig is not None:
        names, required, var_kw = _takes(sig, skip_first=True)
        shown = f"{model.name}(state, {', '.join(sorted(names))})"
        if not var_kw:
            for key in params:
                if key not in names:
                    hint = _did_you_mean(key, sorted(names))
                    raise ConfigError(
                        f"{where}: unknown param {key!r} (value {_short(params[key])}); "
                        f"{hint}the callback is {shown}, which takes "
                        f"{', '.join(sorted(names)) or 'no params'}"
                    )
        missing = sorted(required - set(params))
        if missing:
            raise ConfigError(
                f"{where}: missing param {missing[0]!r}, required by the callback "
                f"{shown}; add it, e.g. "
                + (
                    f"--param {missing[0]}=..."
                    if where == "--param"
                    else f"params: {{{missing[0]}: ...}}"
                )
            )
    if callable(model.initial):
        isig = _signature(model.initial)
        if isig is not None:
            _, required, _ = _takes(isig, skip_first=False)
            missing = sorted(required - set(params))
            if missing:
                raise ConfigError(
                    f"{where}: missing param {missing[0]!r}, required by the initial "
                    f"distribution of model {model.name!r}; add it to {where}"
                )
    try:
        model.initial_distribution(**params)
    except Exception as err:  # any failure of user code: report it with the config path
        named = [k for k in params if re.search(rf"\b{re.escape(str(k))}\b", str(err))]
        if len(named) == 1:  # the message names one param: point at it
            culprit = f"{where}.{named[0]} = {_short(params[named[0]])}"
        else:
            culprit = f"{where} = {_short(params)}"
        raise ConfigError(
            f"{culprit}: the initial distribution of model {model.name!r} cannot be "
            f"computed from it ({type(err).__name__}: {err}); fix the value in {where}"
        ) from err


def fill_defaults(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Fill in the schema's defaults, as Snakemake's ``validate()`` does (in place; returns
    ``config``), so checks outside the workflow see the config the workflow sees.

    Examples
    --------
    >>> schema = {"type": "object", "properties": {"cache": {"default": "cache"}}}
    >>> fill_defaults({}, schema)
    {'cache': 'cache'}
    """
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, schema_):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema_)

    filling = validators.extend(Draft202012Validator, {"properties": set_defaults})
    for _ in filling(schema).iter_errors(config):
        pass  # errors were reported by check_schema; here only the defaults matter
    return config


def check_config_path(
    path: str | os.PathLike[str], *, schema_path: str | os.PathLike[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every parse-time check of the workflow, outside it (``phasemake check``): the file's
    size, the schema, the models (callbacks, spec hashes, construction params) and the
    analyses against the models and their data. Returns the config with its defaults and
    the resolved models (:class:`phasemake.workflow.ModelSpec` by name).

    Raises
    ------
    PhasemakeError
        The first problem, with the message the workflow would print.
    """
    import yaml

    from phasemake.workflow import (
        attach_histories,
        check_analyses,
        resolve_chunks,
        resolve_model_specs,
    )

    check_config_file(path)
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    check_config(config, schema_path)
    with open(schema_path, encoding="utf-8") as f:
        fill_defaults(config, yaml.safe_load(f))
    models = resolve_model_specs(config["models"])
    check_analyses(config["analyses"], models)
    attach_histories(config["analyses"], models)
    resolve_chunks(config["analyses"])
    return config, models
