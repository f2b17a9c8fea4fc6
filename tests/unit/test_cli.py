"""The phasemake command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from phasemake import load_model, spec_hash
from phasemake.cli import main, parse_params
from phasemake.models import two_deme


def test_hash_matches_library(capsys):
    assert main(["hash", "phasemake.models:two_deme", "--param", "n1=2", "--param", "n2=3"]) == 0
    assert capsys.readouterr().out.strip() == spec_hash(two_deme, n1=2, n2=3)


def test_hash_of_a_file_and_explain(tmp_path, capsys):
    (tmp_path / "m.py").write_text(
        "import phasemake\nK = 3\n\n\n"
        "@phasemake.model(parameters=['a'], initial=[2])\n"
        "def cb(state, n):\n    return [([state[0] - 1], [K])] if state[0] > 0 else []\n"
    )
    ref = f"{tmp_path}/m.py:cb"
    assert main(["hash", ref, "--param", "n=10", "--explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == spec_hash(load_model(ref), n=10)
    assert any(line.endswith(".K") for line in out)


def test_param_values_are_typed():
    assert type(parse_params(["n=10"])["n"]) is int
    assert type(parse_params(["n=10.0"])["n"]) is float
    with pytest.raises(Exception, match="name=value"):
        parse_params(["n"])


def test_build_and_cache_commands(tmp_path, capsys):
    cache = str(tmp_path / "c")
    assert main(["build", "phasemake.models:kingman", "--param", "n=5", "--cache", cache]) == 0
    assert "5 vertices" in capsys.readouterr().out
    assert main(["cache", "stats", "--cache", cache]) == 0
    assert "1 graphs" in capsys.readouterr().out
    assert main(["cache", "verify", "--cache", cache]) == 0
    path = next((tmp_path / "c" / "graphs").glob("*.h5"))
    path.write_bytes(b"garbage")
    assert main(["cache", "verify", "--cache", cache]) == 1
    assert "INVALID" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache", cache]) == 0
    assert not path.exists()


def test_errors_are_reported_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "phasemake.cli", "hash", "nowhere.py:cb"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "phasemake: error: model file" in proc.stderr and "Traceback" not in proc.stderr


def test_cache_commands_cover_traces(tmp_path, capsys):
    import phasemake
    from phasemake.models import kingman
    from phasemake.trace.units import plan_units, record_unit

    cache = phasemake.GraphCache(tmp_path / "c")
    graph = cache.load_or_build(kingman, n=5)
    _, units = plan_units(graph)
    unit_path = cache.trace_dir / "units" / f"{units[0].key}.h5"
    phasemake.write_unit(record_unit(graph, units[0]), unit_path)
    assert main(["cache", "stats", "--cache", str(cache.root)]) == 0
    assert "1 trace units" in capsys.readouterr().out
    unit_path.write_bytes(b"garbage")
    assert main(["cache", "verify", "--cache", str(cache.root)]) == 1
    assert main(["cache", "clear", "--cache", str(cache.root)]) == 0
    assert not unit_path.exists() and not cache.graph_dir.exists()


@pytest.mark.parametrize("spec", ["../../victim", "", "../graphs"])
def test_cache_clear_refuses_a_spec_that_is_not_a_hash(tmp_path, capsys, spec):
    root = tmp_path / "a" / "cache"
    assert main(["build", "phasemake.models:kingman", "--param", "n=4", "--cache", str(root)]) == 0
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.txt").write_text("keep")
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["cache", "clear", "--cache", str(root), "--spec", spec]) == 2
    err = capsys.readouterr().err
    assert f"--spec {spec!r} is not a spec hash; expected exactly 32 hex digits" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_cache_verify_reports_a_graph_of_another_spec(tmp_path, capsys):
    import shutil

    from phasemake.models import kingman

    cache = str(tmp_path / "c")
    for n in (4, 5):
        main(["build", "phasemake.models:kingman", "--param", f"n={n}", "--cache", cache])
    four, five = spec_hash(kingman, n=4), spec_hash(kingman, n=5)
    shutil.copy(tmp_path / "c/graphs" / f"{five}.h5", tmp_path / "c/graphs" / f"{four}.h5")
    capsys.readouterr()
    assert main(["cache", "verify", "--cache", cache]) == 1
    out = capsys.readouterr().out
    assert f"holds the graph of spec {five}, but spec {four} was expected" in out
    assert main(["cache", "verify", "--cache", cache, "--remove-invalid"]) == 0
    assert not (tmp_path / "c/graphs" / f"{four}.h5").exists()
