"""Bad configs through real snakemake: refused at parse time, quickly, in one short message
naming the config path (never a schema dump)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import mapping_bomb

pytestmark = pytest.mark.integration

KINGMAN = "  k: {callback: 'phasemake.models:kingman', params: {n: 6}}\n"


def dry_run(workflow, config_text: str, timeout: float = 60) -> tuple[int, str, float]:
    (workflow.root / "config" / "config.yaml").write_text(config_text)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n"],
        cwd=workflow.root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def assert_short(out: str) -> None:
    assert len(out.encode()) < 2048, out[:3000]
    assert "Failed validating" not in out and "'$schema'" not in out


def test_misspelt_top_level_key(workflow):
    rc, out, _ = dry_run(workflow, "cache: cache\nmodles:\n" + KINGMAN)
    assert rc != 0
    assert "config modles: unknown key 'modles'; did you mean 'models'?" in out
    assert_short(out)


def test_misspelt_model_key(workflow):
    text = "cache: cache\nmodels:\n  k: {callbak: 'phasemake.models:kingman'}\n"
    rc, out, _ = dry_run(workflow, text)
    assert rc != 0
    assert "config models.k.callbak: unknown key 'callbak'; did you mean 'callback'?" in out
    assert_short(out)


def test_yaml_alias_bomb_is_refused_at_once(workflow):
    lines = ["cache: cache", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["models:", "  k: {callback: 'phasemake.models:kingman', params: {n: 6, b: *a8}}"]
    rc, out, seconds = dry_run(workflow, "\n".join(lines) + "\n", timeout=20)
    assert rc != 0
    assert "more than 100000 values" in out and "alias" in out
    assert_short(out)
    assert seconds < 20


def test_alias_bomb_inside_params_is_refused_at_once(workflow):
    lines = ["cache: cache", "models:", "  k:", "    callback: 'phasemake.models:kingman'"]
    lines += ["    params:", "      n: 6", "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    rc, out, _ = dry_run(workflow, "\n".join(lines) + "\n", timeout=20)
    assert rc != 0
    assert "config/config.yaml has more than 100000 values (at models.k.params." in out
    assert_short(out)


@pytest.mark.parametrize("value", ['"6"', "0"])
def test_bad_param_value_names_models_name_params_n(workflow, value):
    text = f"cache: cache\nmodels:\n{KINGMAN.replace('n: 6', f'n: {value}')}"
    rc, out, _ = dry_run(workflow, text)
    assert rc != 0
    shown = "'6'" if value == '"6"' else "0"
    assert f"config models.k.params.n = {shown}: " in out
    assert "expected an integer sample size >= 2" in out
    assert "build_graph" not in out  # refused before any job is planned
    assert_short(out)


def test_unknown_param_name(workflow):
    text = "cache: cache\nmodels:\n  k: {callback: 'phasemake.models:kingman', params: {nn: 6}}\n"
    rc, out, _ = dry_run(workflow, text)
    assert rc != 0
    assert "config models.k.params: unknown param 'nn' (value 6); did you mean 'n'?" in out
    assert_short(out)


def test_mapping_alias_bomb_is_refused_before_snakemake_merges_it(workflow):
    try:
        rc, out, _ = dry_run(workflow, mapping_bomb("cache: cache"), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the parse hung on a YAML alias bomb made of mappings")
    assert rc != 0
    assert "config file config/config.yaml has more than 100000 values" in out
    assert_short(out)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("duration\n1.5\n2.5\n", "header duration: no 'time' column; unknown column 'duration'"),
        ("1.5\n2.5\n", "the first line is data (1.5), not a header; add a header line"),
        ("time\n1.5\nabc\n", "row 2, column 'time': 'abc' — expected a number"),
    ],
)
def test_bad_data_file_fails_at_parse_time(workflow, data, message):
    (workflow.root / "times.csv").write_text(data)
    text = (
        "cache: cache\nmodels:\n"
        + KINGMAN
        + "analyses:\n  a: {model: k, observations: absorption_times, data: {file: times.csv}}\n"
    )
    rc, out, _ = dry_run(workflow, text)
    assert rc != 0
    assert "analyses.a.data.file: times.csv: " in out and message in out, out
    assert_short(out)


def test_sfs_of_a_model_without_block_counting_states_fails_at_parse_time(workflow):
    text = (
        "cache: cache\nmodels:\n"
        + KINGMAN
        + "analyses:\n  a: {model: k, observations: sfs, data: {simulate: "
        "{theta: {coal: 1.0, mutation: 1.0}, seed: 1, windows: 10}}}\n"
    )
    rc, out, _ = dry_run(workflow, text)
    assert rc != 0
    assert "analyses.a.observations = 'sfs' needs a block-counting model" in out, out
    assert "use phasemake.models:block_counting, or observations: absorption_times" in out
    assert_short(out)
