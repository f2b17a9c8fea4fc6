"""`phasemake check`: the workflow's parse-time checks, outside the workflow."""

from __future__ import annotations

import copy
import time

import yaml

from phasemake.cli import main
from phasemake.configcheck import fill_defaults
from phasemake.workflow import resolve_model_specs
from tests.conftest import REPO, mapping_bomb

SCHEMA_PATH = REPO / "config" / "config.schema.yaml"


def test_defaults_are_those_snakemake_fills_in():
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ours = fill_defaults(copy.deepcopy(config), yaml.safe_load(SCHEMA_PATH.read_text()))
    theirs = copy.deepcopy(config)
    validate(theirs, str(SCHEMA_PATH))
    assert ours == theirs
    assert ours["analyses"]["sfs_windows"]["cmc"]["chains"] == 2  # a nested default


def test_check_lists_models_with_the_workflows_specs(capsys):
    assert main(["check", "--workflow", str(REPO)]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name, m in resolve_model_specs(config["models"]).items():
        assert f"model {name}: {m.callback}" in out and m.spec in out
    assert "analysis two_deme_times: absorption_times of model two_deme" in out
    assert out.rstrip().endswith("s)") and ": OK (" in out


def test_check_names_the_key_and_the_fix(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  k: {callback: 'phasemake.models:kingman', params: {N: 5}}\n"
        "analyses:\n  a: {model: k, observations: absorption_times, "
        "data: {simulate: {theta: {coal: 1.0}, seed: 1}}}\n"
    )
    assert main(["check", "--workflow", str(REPO), "--configfile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "models.k.params: unknown param 'N' (value 5); did you mean 'n'?" in err
    assert "which takes n" in err
    bad.write_text(bad.read_text().replace("analyses:", "analyzes:").replace("N: 5", "n: 5"))
    assert main(["check", "--workflow", str(REPO), "--configfile", str(bad)]) == 2
    assert "did you mean 'analyses'" in capsys.readouterr().err


def test_cli_refuses_missing_and_unknown_params(capsys):
    assert main(["hash", "phasemake.models:kingman"]) == 2
    assert "--param: missing param 'n'" in capsys.readouterr().err
    assert main(["build", "phasemake.models:kingman", "--param", "m=3"]) == 2
    assert "--param: unknown param 'm'" in capsys.readouterr().err
    assert main(["hash", "phasemake.models:kingman", "--param", "n=0"]) == 2
    assert "--param.n = 0: the initial distribution" in capsys.readouterr().err
    assert main(["hash", "phasemake.models:kingman", "--param", "n=6"]) == 0


def _config(tmp_path, models: str, analyses: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"models:\n{models}analyses:\n{analyses}")
    return ["check", "--workflow", str(REPO), "--configfile", str(path)]


SIM = "data: {simulate: {theta: {coal: 1.0, mutation: 1.0}, seed: 1, windows: 10}}"


def test_check_counts_states_and_refuses_a_small_max_states(tmp_path, capsys):
    models = "  b: {callback: 'phasemake.models:block_counting', params: {n: 6}}\n"
    args = _config(tmp_path, models, f"  a: {{model: b, observations: sfs, {SIM}}}\n")
    assert main(args) == 0
    assert "spec " in (out := capsys.readouterr().out) and ", 11 states" in out  # p(6) = 11
    assert main([*args, "--states", "5"]) == 0
    assert "more than 5 states (not counted)" in capsys.readouterr().out
    capped = models.replace("n: 6}", "n: 6}, max_states: 10")
    assert main(_config(tmp_path, capped, f"  a: {{model: b, observations: sfs, {SIM}}}\n")) == 2
    err = capsys.readouterr().err
    assert "config models.b.max_states = 10: the model has more states; raise" in err


def test_sfs_needs_a_block_counting_model_and_its_classes(tmp_path, capsys):
    models = (
        "  k: {callback: 'phasemake.models:kingman', params: {n: 6}}\n"
        "  b: {callback: 'phasemake.models:block_counting', params: {n: 4}}\n"
    )
    assert main(_config(tmp_path, models, f"  a: {{model: k, observations: sfs, {SIM}}}\n")) == 2
    err = capsys.readouterr().err
    assert "analyses.a.observations = 'sfs' needs a block-counting model" in err
    assert "model 'k' starts in state [6]" in err
    (tmp_path / "sfs.csv").write_text("sites,xi_1,xi_2,xi_3,xi_4\n100,4,2,1,1\n")
    data = f"data: {{file: {tmp_path / 'sfs.csv'}}}"
    assert main(_config(tmp_path, models, f"  a: {{model: b, observations: sfs, {data}}}\n")) == 2
    err = capsys.readouterr().err
    assert "analyses.a.data.file: " in err and "unknown column 'xi_4'" in err
    assert "the model has n - 1 = 3 SFS classes" in err


def test_histories_are_checked_and_their_parameters_fitted(tmp_path, capsys):
    history = "history: {parameters: [c1, c2, tau], rates: [{coal: c1}, {coal: c2}], times: [tau]}"
    models = f"  b: {{callback: 'phasemake.models:block_counting', params: {{n: 6}}, {history}}}\n"
    sim = "data: {simulate: {theta: {c1: 4.0, c2: 1.0, tau: 0.3, mutation: 0.001}, seed: 1}}"
    assert main(_config(tmp_path, models, f"  a: {{model: b, observations: sfs, {sim}}}\n")) == 0
    capsys.readouterr()
    for bad, message in (
        ("{coal: c3}", "config models.b.history.rates[1].coal = 'c3': unknown name 'c3'"),
        ("{mig: c2}", "config models.b.history.rates[1].mig: not a rate of model"),
        ("{coal: 'c2.real'}", "'c2.real' is not allowed"),
    ):
        broken = models.replace("{coal: c2}", bad)
        args = _config(tmp_path, broken, f"  a: {{model: b, observations: sfs, {sim}}}\n")
        assert main(args) == 2
        assert message in capsys.readouterr().err, message
    short = models.replace("times: [tau]", "times: []")
    assert main(_config(tmp_path, short, f"  a: {{model: b, observations: sfs, {sim}}}\n")) == 2
    assert "2 epochs (rates) need 1 boundaries (times); got 0" in capsys.readouterr().err
    # the analysis names the history's parameters, not the callback's
    wrong = sim.replace("c1: 4.0, c2: 1.0, tau: 0.3", "coal: 1.0")
    assert main(_config(tmp_path, models, f"  a: {{model: b, observations: sfs, {wrong}}}\n")) == 2
    assert "expected a value for each of ['c1', 'c2', 'tau', 'mutation']" in capsys.readouterr().err


SIR = """import phasemake


@phasemake.model(parameters=["beta", "gamma"], initial=lambda N, i0: [N - i0, i0])
def sir(state, N, i0):
    s, i = state.tolist()
    if i == 0:
        return []
    out = [([s, i - 1], [0.0, float(i)])]
    if s > 0:
        out.append(([s - 1, i + 1], [s * i / N, 0.0]))
    return out
"""


def test_the_first_hours_sir_mistakes_are_named_by_check(tmp_path, capsys):
    # the issue's own case: params {n: 10, i0: 1} for a model that takes N
    (tmp_path / "sir.py").write_text(SIR)
    config = tmp_path / "my.yaml"
    model = f"{{callback: '{tmp_path / 'sir.py'}:sir', params: {{{{params}}}}}}"
    template = (
        f"models:\n  sir: {model}\n"
        "analyses:\n  a: {model: sir, observations: absorption_times, "
        "data: {simulate: {theta: {beta: 1.0, gamma: 0.5}, seed: 1}}}\n"
    )
    args = ["check", "--workflow", str(REPO), "--configfile", str(config)]
    config.write_text(template.replace("{params}", "n: 10, i0: 1"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "config models.sir.params: unknown param 'n' (value 10); did you mean 'N'?" in err
    config.write_text(template.replace("{params}", "N: 10"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "config models.sir.params: missing param 'i0', required by the callback" in err
    assert "add it, e.g. params: {i0: ...}" in err
    config.write_text(template.replace("{params}", "N: 10, i0: 1"))
    assert main(args) == 0
    assert "model sir:" in capsys.readouterr().out


def test_initial_params_the_callback_does_not_take_are_required(tmp_path, capsys):
    (tmp_path / "m.py").write_text(SIR.replace("def sir(state, N, i0):", "def sir(state, **kw):"))
    config = tmp_path / "my.yaml"
    config.write_text(
        f"models:\n  sir: {{callback: '{tmp_path / 'm.py'}:sir', params: {{N: 10}}}}\n"
        "analyses: {}\n"
    )
    assert main(["check", "--workflow", str(REPO), "--configfile", str(config)]) == 2
    err = capsys.readouterr().err
    assert "missing param 'i0', required by the initial distribution of model 'sir'" in err


def test_check_outside_a_workflow_says_where_to_point_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "no phasemake workflow in" in err and "--workflow" in err


def test_check_refuses_a_mapping_alias_bomb_at_once(tmp_path, capsys):
    # the guard for --configfile, which Snakemake merges (and hangs on) before the Snakefile
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(mapping_bomb())
    start = time.perf_counter()
    assert main(["check", "--workflow", str(REPO), "--configfile", str(bomb)]) == 2
    assert time.perf_counter() - start < 5.0  # 10^9 values if expanded; refused unexpanded
    assert "has more than 100000 values" in capsys.readouterr().err
