"""Parse-time helpers and the config schema."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from phasemake import DEFAULT_MAX_STATES, ModelError
from phasemake.workflow import resolve_model_specs
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_resolves():
    jsonschema.Draft202012Validator(SCHEMA).validate(CONFIG)
    specs = resolve_model_specs(CONFIG["models"], base_dir=REPO)
    assert set(specs) == set(CONFIG["models"])
    assert "two_deme" in {m.model.name for m in specs.values()}


def test_schema_is_strict_and_documented():
    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is not None, path
            for key, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{path}.{key} has no description"
                alternatives = node.get("oneOf", []) + node.get("anyOf", [])
                required = key in node.get("required", []) or any(
                    key in branch.get("required", []) for branch in alternatives
                )
                assert required or "default" in sub, f"{path}.{key} has no default"
                walk(sub, f"{path}.{key}")
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], f"{path}.*")

    walk(SCHEMA, "config")
    default = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["max_states"]
    assert default["default"] == DEFAULT_MAX_STATES


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(unknown_key=1),
        lambda c: c["models"]["two_deme"].update(parms={}),
        lambda c: c["models"]["two_deme"].update(callback="no_colon"),
        lambda c: c["models"].update({"9bad": {"callback": "a:b"}}),
        lambda c: c["models"]["two_deme"].update(max_states=0),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"shards": 0}),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"shards": "many"}),
        lambda c: c["analyses"]["two_deme_times"].update(cmc={"rule": "average"}),
        lambda c: c["analyses"]["two_deme_times"].update(
            cmc={"prior": {"coal": {"normal": {"loc": 0, "scale": 1}}}}
        ),
        lambda c: c["analyses"]["two_deme_times"].update(
            cmc={"prior": {"coal": {"gamma": {"rate": 1.0}}}}  # concentration missing
        ),
    ],
)
def test_schema_rejects_bad_config(mutate):
    bad = copy.deepcopy(CONFIG)
    mutate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(bad)


def test_bad_callback_reference_names_the_model_entry():
    with pytest.raises(ModelError, match=r"config models\.x: .*has no attribute 'nope'"):
        resolve_model_specs({"x": {"callback": "phasemake.models:nope"}})


def test_identical_models_share_a_spec():
    entry = {"callback": "phasemake.models:kingman", "params": {"n": 4}}
    specs = resolve_model_specs({"a": entry, "b": dict(entry)})
    assert specs["a"].spec == specs["b"].spec
