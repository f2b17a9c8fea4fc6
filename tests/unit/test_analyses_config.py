"""Parse-time checks of an analysis's `data.truth` (the truth of data from a file)."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from phasemake.core.errors import PhasemakeError
from phasemake.workflow import check_analyses, resolve_model_specs
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config/config.schema.yaml").read_text())
MODELS = {"k": {"callback": "phasemake.models:kingman", "params": {"n": 4}}}


def _config(data):
    analysis = {"model": "k", "observations": "absorption_times", "data": data}
    return {"cache": "cache", "models": MODELS, "analyses": {"a": analysis}}


def test_truth_is_for_file_data_only():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate(_config({"file": "t.csv", "truth": {"coal": 1.0}}))
    with pytest.raises(jsonschema.ValidationError):  # a rate: positive
        validator.validate(_config({"file": "t.csv", "truth": {"coal": 0}}))
    sim = {"simulate": {"theta": {"coal": 1.0}, "seed": 1}, "truth": {"coal": 1.0}}
    models = resolve_model_specs(MODELS)
    with pytest.raises(PhasemakeError, match=r"analyses\.a\.data\.truth: only for data from a"):
        check_analyses(_config(sim)["analyses"], models)
    sim["truth"] = {}  # the default: nothing to say
    check_analyses(_config(sim)["analyses"], models)


def test_truth_names_are_the_models_parameters(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("time\n1.0\n")
    models = resolve_model_specs(MODELS)
    good = copy.deepcopy(_config({"file": str(data), "truth": {"coal": 1.0}})["analyses"])
    check_analyses(good, models)
    bad = copy.deepcopy(_config({"file": str(data), "truth": {"cola": 1.0}})["analyses"])
    with pytest.raises(PhasemakeError, match=r"analyses\.a\.data\.truth\.cola: unknown"):
        check_analyses(bad, models)
