"""The CMC workflow steps' pure parts (``phasemake.posterior.cmc``) and their config checks.

The steps themselves run through real snakemake in tests/integration/test_cmc_stage.py.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml

import phasemake
from phasemake import build_graph
from phasemake.core.errors import PhasemakeError
from phasemake.data.obsmodel import ObservationModel
from phasemake.models import two_deme
from phasemake.posterior.cmc import REGION_SDS, compare_posteriors, shard_attempt, shard_budget
from phasemake.posterior.combination import _against_truth
from phasemake.posterior.consensus import summarise_draws
from phasemake.posterior.sampling import NUTSSettings
from phasemake.workflow import check_analyses, resolve_model_specs
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config/config.schema.yaml").read_text())
CMC = SCHEMA["properties"]["analyses"]["additionalProperties"]["properties"]["cmc"]


def test_config_defaults_are_the_library_defaults():
    for field in dataclasses.fields(NUTSSettings):
        assert CMC["properties"][field.name]["default"] == field.default, field.name


def test_comparison_of_draws_against_themselves_and_a_shift():
    rng = np.random.default_rng(0)
    phi = rng.multivariate_normal([0.0, -1.0], [[0.01, 0.005], [0.005, 0.04]], size=(2, 500))
    same = compare_posteriors(phi, phi, ["a", "b"])
    for row in same["parameters"].values():
        assert row["mean_diff_in_sd"] == 0.0 and row["sd_ratio"] == pytest.approx(1.0)
    assert same["max_correlation_diff"] == 0.0
    # θ = e^φ: a shift of log 1.01 multiplies θ by 1.01, its mean and its sd alike
    shifted = compare_posteriors(phi + np.log(1.01), phi, ["a", "b"])
    ref = summarise_draws(phi, ["a", "b"])["parameters"]
    for name, row in shifted["parameters"].items():
        expected = 0.01 * ref[name]["mean"] / ref[name]["sd"]
        assert row["mean_diff_in_sd"] == pytest.approx(expected, rel=1e-9)
        assert row["sd_ratio"] == pytest.approx(1.01, rel=1e-12)


def test_truth_against_the_posterior():
    rng = np.random.default_rng(1)
    phi = np.log(rng.normal(2.0, 0.1, size=(2, 2000, 1)))
    summary = summarise_draws(phi, ["rate"])
    row = _against_truth(summary, {"rate": 2.3, "other": 1.0})["rate"]
    assert set(_against_truth(summary, {"rate": 2.3})) == {"rate"}
    assert row["z"] == pytest.approx((summary["parameters"]["rate"]["mean"] - 2.3) / 0.1, rel=0.05)
    assert row["in_90"] is False  # 3 sd away
    assert _against_truth(summary, {"rate": 2.0})["rate"]["in_90"] is True


def _analysis(**cmc):
    return {
        "model": "m",
        "observations": "absorption_times",
        "nlsq": {"fixed": {"mig": 0.5}},
        "data": {"simulate": {"theta": {"coal": 1.0, "mig": 0.5}, "size": 100, "seed": 0}},
        "cmc": cmc,
    }


@pytest.mark.parametrize(
    ("cmc", "message"),
    [
        ({"prior": {"mig": {"exponential": {"rate": 1.0}}}}, r"cmc.prior.mig: not a free"),
        ({"prior": {"nope": {"exponential": {"rate": 1.0}}}}, r"cmc.prior.nope: not a free"),
        ({"shards": 101}, r"cmc.shards = 101 but the simulation has 100 rows"),
    ],
)
def test_bad_cmc_settings_fail_at_parse_time(cmc, message):
    models = resolve_model_specs(
        {"m": {"callback": "phasemake.models:two_deme", "params": {"n1": 2, "n2": 1}}}
    )
    check_analyses({"a": _analysis()}, models)  # the base analysis is fine
    with pytest.raises(PhasemakeError, match=message):
        check_analyses({"a": _analysis(**cmc)}, models)


def test_a_shard_attempt_counts_recorded_gate_failures_not_job_starts(tmp_path):
    """Snakemake's attempt counter counts job starts (a killed job counts); the attempt
    made, hence its seed and target acceptance, counts only the recorded gate failures."""
    history = tmp_path / "shard0.attempts.jsonl"
    assert shard_attempt(history, 1) == (1, [])  # fresh job, no file
    assert shard_attempt(history, 2) == (1, [])  # attempt 1 was killed: it again
    failure = {"attempt": 1, "seed": [7, 0, 1], "problem": "R-hat 1.3 > 1.05"}
    history.write_text(json.dumps(failure) + "\n")
    assert shard_attempt(history, 2) == (2, [failure])
    assert shard_attempt(history, 3) == (2, [failure])  # attempt 2 was killed: it again
    assert shard_attempt(history, 1) == (1, [])  # a fresh job starts the history afresh
    success = {"attempt": 2, "seed": [7, 0, 2], "problem": None}  # killed before writing
    history.write_text("".join(json.dumps(r) + "\n" for r in (failure, success)))
    assert shard_attempt(history, 3) == (2, [failure])
    assert shard_attempt(None, 3) == (3, [])  # no history kept: Snakemake's counter


def test_an_improper_posterior_is_not_sampled_again(tmp_path):
    import json

    from phasemake.posterior.cmc import sample_shard
    from phasemake.posterior.sampling import ImproperPosteriorError

    history = tmp_path / "shard0.attempts.jsonl"
    found = "mig runs off towards +∞ on the log scale: ... cmc.prior.mig: {lognormal: ...}"
    record = {"attempt": 1, "problem": found, "improper": True}
    history.write_text(json.dumps(record) + "\n")
    # Snakemake's retry (attempt 2) stops before reading any file: no data, no sampling
    with pytest.raises(ImproperPosteriorError, match="not sampled again: attempt 1 found an"):
        sample_shard(
            None,
            "no-data.h5",
            "no-fit.json",
            "out.h5",
            cmc={"seed": 1},
            index=0,
            shards=2,
            attempt=2,
            attempts=3,
            history=history,
        )


def test_the_sampler_region_ends_at_the_prior_box_unless_the_data_overrule_the_prior():
    # a plateau: the fit's sd on log mig is 1.6, so ± 6 sd reaches mig ≈ e^10.6
    model = ObservationModel(
        "absorption_times", phasemake.compile_trace(build_graph(two_deme, n1=2, n2=2))
    )
    cov = np.diag([0.01, 1.6**2])
    prior = {"mig": {"lognormal": {"loc": 0.0, "scale": 1.0}}}  # box: log mig in ± 5

    def box_budget(phi, lo, hi):  # the box, written out
        return model.region_budget(0.5 * (lo + hi), 0.5 * (hi - lo), 10.0)

    phi = np.array([0.0, np.log(0.5)])
    half = REGION_SDS * np.sqrt(np.diag(cov))
    wide = shard_budget(model, phi, cov, shards=1, t_max=10.0)
    assert wide == box_budget(phi, phi - half, phi + half)
    bounded = shard_budget(model, phi, cov, shards=1, t_max=10.0, prior=prior)
    expected_hi = np.array([phi[0] + half[0], 5.0])
    assert bounded == box_budget(phi, phi - half, expected_hi) < wide / 8
    # a fit beyond the prior's box (mig = e^6): the data overrule the prior, region kept
    far, narrow = np.array([0.0, 6.0]), np.diag([0.01, 0.25])
    half = REGION_SDS * np.sqrt(np.diag(narrow))
    kept = shard_budget(model, far, narrow, shards=1, t_max=10.0, prior=prior)
    assert kept == box_budget(far, far - half, far + half)
