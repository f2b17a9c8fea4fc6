"""Parse-time config checks: size limits, short schema errors, construction params."""

from __future__ import annotations

import copy
import time

import pytest
import yaml

from phasemake.configcheck import (
    MAX_NODES,
    ConfigError,
    check_config,
    check_model_params,
    check_schema,
    check_size,
)
from phasemake.models import kingman, two_deme
from phasemake.workflow import resolve_model_specs
from tests.conftest import REPO, mapping_bomb

SCHEMA_PATH = REPO / "config" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
GOOD = {
    "cache": "cache",
    "models": {"k": {"callback": "phasemake.models:kingman", "params": {"n": 6}}},
    "analyses": {
        "a": {
            "model": "k",
            "observations": "absorption_times",
            "data": {"simulate": {"theta": {"coal": 1.0}, "seed": 1}},
        }
    },
}

ALIAS_BOMB = "\n".join(
    ["cache: cache", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    + ["models: {k: {callback: 'phasemake.models:kingman', params: {n: 6, bomb: *a8}}}"]
)


def short(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert len(text) < 600, text  # one paragraph, never the schema
    assert "'$schema'" not in text and "description" not in text
    return text


# --- size ------------------------------------------------------------------------------


def test_the_default_config_passes():
    check_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), SCHEMA_PATH)


def test_yaml_alias_bomb_is_refused_well_under_a_second():
    config = yaml.safe_load(ALIAS_BOMB)  # aliases load as shared objects: fast
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"more than {MAX_NODES} values.*alias") as err:
        check_config(config, SCHEMA_PATH)
    elapsed = time.perf_counter() - start
    assert "models.k.params.bomb" in short(err) or "a8" in str(err.value)
    assert elapsed < 1.0, elapsed


def test_aliases_used_a_few_times_are_fine():
    config = yaml.safe_load(
        "theta: &t {coal: 1.0}\n"
        "analyses:\n"
        "  a: {simulate: {theta: *t}}\n"
        "  b: {simulate: {theta: *t}}\n"
    )
    check_size(config)


def test_depth_limit_names_the_path():
    deep: dict = {"n": 1}
    for _ in range(60):
        deep = {"d": deep}
    with pytest.raises(ConfigError, match=r"config models\.k\.params\.d\.d.* nested more than 50"):
        check_size({"models": {"k": {"params": deep}}})


# --- schema ----------------------------------------------------------------------------


def with_change(change) -> dict:
    config = copy.deepcopy(GOOD)
    change(config)
    return config


def test_misspelt_top_level_key_is_short_with_did_you_mean():
    config = with_change(lambda c: c.update(modles=c.pop("models")))
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
    text = short(err)
    assert text.startswith("config modles: unknown key 'modles'; did you mean 'models'?")
    assert "allowed here: analyses, cache, models, traces" in text


def test_misspelt_nested_key_names_its_config_path():
    def change(c):
        c["models"]["k"]["callbak"] = c["models"]["k"].pop("callback")

    with pytest.raises(ConfigError) as err:
        check_schema(with_change(change), SCHEMA)
    text = short(err)
    assert "config models.k.callbak: unknown key 'callbak'; did you mean 'callback'?" in text


def test_unknown_key_without_a_close_match_lists_the_allowed_ones():
    config = with_change(lambda c: c.update(zzzzzz=1))
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
    assert "did you mean" not in short(err)
    assert "allowed here: analyses, cache, models, traces" in str(err.value)


def test_bad_value_names_its_config_path_and_value():
    config = with_change(lambda c: c["models"]["k"].update(max_states=0))
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
    assert short(err).startswith("config models.k.max_states: 0 is less than the minimum of 1")


def test_huge_bad_value_is_abbreviated():
    config = with_change(lambda c: c["models"]["k"].update(max_states=list(range(10_000))))
    with pytest.raises(ConfigError, match=r"config models\.k\.max_states") as err:
        check_schema(config, SCHEMA)
    short(err)


def test_missing_required_key():
    config = with_change(lambda c: c["analyses"]["a"].pop("model"))
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
    assert short(err) == "config analyses.a: required key 'model' is missing"


# --- construction params ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["6", 0, 1.5, None])
def test_bad_param_value_fails_at_parse_time_naming_the_param(value):
    with pytest.raises(ConfigError) as err:
        check_model_params("k", kingman, {"n": value})
    assert short(err).startswith(f"config models.k.params.n = {value!r}: ")
    assert "expected an integer sample size" in str(err.value)


def test_unknown_param_name_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        check_model_params("k", kingman, {"nn": 6})
    assert short(err).startswith("config models.k.params: unknown param 'nn' (value 6); ")
    assert "did you mean 'n'?" in str(err.value)


def test_missing_param_is_named():
    with pytest.raises(ConfigError, match=r"config models\.t\.params: missing param 'n2'"):
        check_model_params("t", two_deme, {"n1": 3})


def test_optional_params_and_var_keyword_callbacks():
    import phasemake

    check_model_params("t", two_deme, {"n1": 3, "n2": 2})  # relative_size has a default
    check_model_params("t", two_deme, {"n1": 3, "n2": 2, "relative_size": 2.0})

    @phasemake.model(parameters=["coal"], initial=[2])
    def anything(state, **params):
        return []

    check_model_params("a", anything, {"whatever": 1})


def test_failure_naming_no_param_lists_them_all():
    import phasemake

    def broken(a, b):
        raise RuntimeError("boom")

    @phasemake.model(parameters=["coal"], initial=broken)
    def cb(state, a, b):
        return []

    with pytest.raises(ConfigError) as err:
        check_model_params("m", cb, {"a": 1, "b": 2})
    assert short(err).startswith("config models.m.params = {'a': 1, 'b': 2}: ")
    assert "RuntimeError: boom" in str(err.value)


def test_resolve_model_specs_reports_params_once():
    models = {"k": {"callback": "phasemake.models:kingman", "params": {"n": "6"}}}
    with pytest.raises(ConfigError) as err:
        resolve_model_specs(models)
    assert str(err.value).startswith("config models.k.params.n = '6': ")


def test_message_adds_the_first_sentence_of_the_description():
    config = with_change(lambda c: c["analyses"]["a"]["data"].update(file="x.csv"))
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
    text = short(err)
    assert text.startswith("config analyses.a.data: ")
    assert text.endswith("Expected: Exactly one of `file`, `vcf` and `simulate`")


def test_config_file_with_a_mapping_alias_bomb_is_refused(tmp_path):
    """Snakemake's configfile: merge walks every mapping: check the file before it."""
    from phasemake.configcheck import check_config_file

    path = tmp_path / "config.yaml"
    path.write_text(mapping_bomb())
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"config file {path} has more than {MAX_NODES}"):
        check_config_file(path)
    assert time.perf_counter() - start < 1.0
    good = tmp_path / "good.yaml"
    good.write_text((REPO / "config" / "config.yaml").read_text())
    check_config_file(good)
    check_config_file(tmp_path / "missing.yaml")  # Snakemake reports it
