# Config validation (strict JSON Schema, at parse time) and input functions.
import json
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
    unit="[0-9a-f]{32}",


def graph_files():
    """Every configured model's graph file."""
    return [f"{CACHE}/graphs/{spec}.h5" for spec in SPEC_MODELS]


def trace_files():
    """Every configured model's stitched trace file."""
    return [f"{CACHE}/traces/{spec}.h5" for spec in SPEC_MODELS]


def _plan_units(spec):
    """Unit entries of an existing plan file (empty if it does not exist yet)."""
    path = f"{CACHE}/traces/{spec}/plan.json"
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return json.load(fh)["units"]


def unit_inputs(wildcards):
    """Graph and plan of a spec whose plan lists this unit (units are shared by content)."""
    for spec in SPEC_MODELS:
        if any(u["key"] == wildcards.unit for u in _plan_units(spec)):
            return {
                "graph": f"{CACHE}/graphs/{spec}.h5",
                "plan": f"{CACHE}/traces/{spec}/plan.json",
            }
    raise ValueError(
        f"unit {wildcards.unit} is in no plan of the configured models; request traces "
        "through `rule all` rather than unit files directly"
    )


def unit_plan_entry(wildcards):
    """The plan entry (levels, key) of this unit."""
    for spec in SPEC_MODELS:
        for entry in _plan_units(spec):
            if entry["key"] == wildcards.unit:
                return entry
    raise ValueError(f"unit {wildcards.unit} is in no plan of the configured models")


def stitch_inputs(wildcards):
    """Graph, plan and every unit file of a spec (after its plan checkpoint)."""
    plan = checkpoints.plan_trace.get(spec=wildcards.spec).output.plan
    with open(plan) as fh:
        keys = [u["key"] for u in json.load(fh)["units"]]
    return {
        "graph": f"{CACHE}/graphs/{wildcards.spec}.h5",
        "plan": plan,
        "units": [f"{CACHE}/traces/units/{key}.h5" for key in keys],
    }


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
