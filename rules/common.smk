# Config validation (strict JSON Schema, at parse time) and input functions.
import logging
import os

from snakemake.utils import min_version, validate

import phasemake
from phasemake.workflow import resolve_model_specs

min_version("9.0")


validate(config, "../config/config.schema.yaml")

CACHE = os.path.normpath(config["cache"])
MODELS = resolve_model_specs(config["models"])
# identical models under several names share one spec, hence one graph file
SPEC_MODELS = {}
for _name, _m in MODELS.items():
    SPEC_MODELS.setdefault(_m.spec, _m)

if workflow.is_main_process:
    _cache = phasemake.GraphCache(CACHE)
    for _spec in SPEC_MODELS:
        _problem = _cache.discard_if_invalid(_spec)
        if _problem:
            logging.getLogger("phasemake").warning("phasemake: %s", _problem)


wildcard_constraints:
    spec="[0-9a-f]{32}",


def graph_files():
    """Every configured model's graph file."""
    return [f"{CACHE}/graphs/{spec}.h5" for spec in SPEC_MODELS]


def spec_callback(wildcards):
    """Callback reference of the model with this spec."""
    return _spec_model(wildcards).callback


def spec_params(wildcards):
    """Construction params of the model with this spec."""
    return _spec_model(wildcards).params


def spec_max_states(wildcards):
    """State cap of the model with this spec."""
    return _spec_model(wildcards).max_states


def spec_name(wildcards):
    """Config name of the (first) model with this spec."""
    return _spec_model(wildcards).name


def _spec_model(wildcards):
    try:
        return SPEC_MODELS[wildcards.spec]
    except KeyError:
        raise ValueError(
            f"spec {wildcards.spec} is not the spec of any model in the config; "
            "request graph files through `rule all` or the config's models"
        ) from None


def build_graph_mem_mb(wildcards, attempt):
    """Memory for a graph build: 2 GB, doubled on each retry."""
    return 2000 * 2 ** (attempt - 1)
