"""A demes file named in the config (``models.<name>.demes``): parse-time resolution, the
analyses' parameters and starting values, the job's history, and clear errors.

The reference is :func:`phasemake.from_demes` called directly on the same file (itself
tested against msprime in test_demes.py): the config path must give the same graph spec,
parameters, file values and E[SFS]."""

from __future__ import annotations

import copy

import jsonschema
import numpy as np
import pytest
import yaml

import phasemake
from phasemake import PhasemakeError
from phasemake.fit.analysis import with_history
from phasemake.models import block_counting
from phasemake.workflow import attach_histories, resolve_model_specs
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())

BOTTLENECK = """\
time_units: generations
demes:
  - name: A
    epochs:
      - {start_size: 10000, end_time: 3000}
      - {start_size: 5000}
"""
FREE = ["A.epochs[1].start_size", "A.epochs[0].end_time"]


@pytest.fixture
def demes_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # jobs read the file from the working directory
    (tmp_path / "bottleneck.yaml").write_text(BOTTLENECK)
    return tmp_path / "bottleneck.yaml"


def _entry(**demes):
    return {"demes": {"file": "bottleneck.yaml", "samples": {"A": 8}, "free": FREE, **demes}}


def test_a_demes_model_resolves_to_its_coalescent_history_and_file_values(demes_file):
    config = {"models": {"b": _entry(sfs=True)}}
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    spec = resolve_model_specs(config["models"])["b"]
    dm = phasemake.from_demes(demes_file, {"A": 8}, free=FREE, sfs=True)
    assert spec.callback == "phasemake.models:block_counting" and spec.params == {"n": 8}
    assert spec.spec == phasemake.spec_hash(block_counting, n=8)
    assert spec.parameters == tuple(FREE)
    # analyses of it fit the free quantities, starting at the file's values unless told
    analyses = {"a": {"model": "b", "nlsq": {"initial": {FREE[1]: 4000.0}, "fixed": {}}}}
    attach_histories(analyses, {"b": spec})
    assert analyses["a"]["nlsq"]["initial"] == {FREE[0]: 5000.0, FREE[1]: 4000.0}
    # a job's history from the file equals from_demes's own
    graph = phasemake.build_graph(block_counting, n=8)
    et = with_history(analyses["a"], graph, phasemake.compile_trace(graph))
    rewards = graph.states[:, :7].astype(float)
    theta = np.array([2500.0, 6000.0])
    np.testing.assert_allclose(
        et.expectation(theta, rewards), dm.epoch_trace().expectation(theta, rewards), rtol=1e-13
    )
    assert et.lumping is not None  # one deme, sizes only: the block chain


def test_a_changed_file_is_refused_in_the_job_and_changes_the_settings(demes_file):
    spec = resolve_model_specs({"b": _entry()})["b"]
    analysis = {"history": spec.history}
    demes_file.write_text(BOTTLENECK.replace("5000", "4000"))
    graph = phasemake.build_graph(spec.model, **spec.params)
    with pytest.raises(PhasemakeError, match=r"bottleneck.yaml' is gone or changed since"):
        with_history(analysis, graph, phasemake.compile_trace(graph))
    again = resolve_model_specs({"b": _entry()})["b"]
    assert again.history != spec.history and again.history["theta0"] == [4000.0, 3000.0]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**_entry(), "callback": "phasemake.models:kingman"},
            r"models\.b: callback and demes are both given",
        ),
        (
            {**_entry(), "history": {"parameters": ["x"]}},
            r"models\.b: history and demes are both given",
        ),
        (
            {"demes": {"file": "nothere.yaml", "samples": {"A": 4}}},
            r"models\.b: demes\.file: 'nothere\.yaml' is not a file",
        ),
        (
            {"demes": {"file": "bottleneck.yaml", "samples": {"B": 4}}},
            r"models\.b: demes: from_demes: samples name deme 'B'; the demes are \['A'\]",
        ),
        (
            _entry(free=["A.epochs[2].start_size"]),
            r"models\.b: demes: from_demes: unknown free path 'A\.epochs\[2\]\.start_size'",
        ),
        ({"params": {}}, r"models\.b: neither callback nor demes is given"),
    ],
)
def test_bad_demes_entries_name_the_key_and_the_fix(demes_file, entry, message):
    with pytest.raises(PhasemakeError, match=message):
        resolve_model_specs({"b": copy.deepcopy(entry)})


def test_the_schema_wants_a_file_and_samples_and_nothing_else():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for bad in (
        {"demes": {"file": "x.yaml"}},
        {"demes": {"file": "x.yaml", "samples": {"A": 2}, "sizes": 1}},
        {"params": {"n": 2}},
    ):
        assert not validator.is_valid({"models": {"b": bad}}), bad


ISLANDS = """\
time_units: generations
demes:
  - name: A
    epochs: [{start_size: 1000}]
  - name: B
    epochs: [{start_size: 2000}]
migrations:
  - {demes: [A, B], rate: 1.0e-3}
"""


def test_a_structured_demes_model_resolves_and_its_job_history_equals_from_demes(demes_file):
    (demes_file.parent / "islands.yaml").write_text(ISLANDS)
    entry = {"demes": {"file": "islands.yaml", "samples": {"A": 2, "B": 2}, "free": []}}
    spec = resolve_model_specs({"i": {**entry, "max_states": 1000}})["i"]
    dm = phasemake.from_demes(demes_file.parent / "islands.yaml", {"A": 2, "B": 2})
    assert (spec.callback, spec.params) == (dm.spec, dm.params)
    assert spec.parameters == () and spec.history["theta0"] == []
    model = phasemake.load_model(spec.callback)  # as the build job does, in a new process
    graph = phasemake.build_graph(model, **spec.params)
    et = with_history({"history": spec.history}, graph, phasemake.compile_trace(graph))
    assert et.lumping is None  # migration and coalescence: jumps depend on the rates
    ref = dm.epoch_trace().expectation(dm.theta0)
    np.testing.assert_allclose(et.expectation(np.zeros(0)), ref, rtol=1e-13)
