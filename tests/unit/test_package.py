"""The package's shape: stage subpackages, cheap import, public names, no snakemake."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import phasemake
from tests.conftest import REPO

SRC = REPO / "src" / "phasemake"
STAGES = ("core", "graph", "trace", "data", "fit", "posterior", "report")


def test_import_phasemake_loads_no_jax_numpyro_or_matplotlib():
    code = (
        "import sys, phasemake\n"
        "heavy = [m for m in ('jax', 'numpyro', 'matplotlib', 'arviz') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize("name", phasemake.__all__)
def test_every_public_name_resolves(name):
    assert getattr(phasemake, name) is not None


def test_model_is_still_the_decorator():
    # the model stage is phasemake.graph: a subpackage called `model` would shadow it
    assert callable(phasemake.model)
    assert phasemake.model.__module__ == "phasemake.graph.model"


def test_one_subpackage_per_stage_and_few_top_level_modules():
    for stage in STAGES:
        assert (SRC / stage / "__init__.py").is_file(), stage
        module = importlib.import_module(f"phasemake.{stage}")
        assert module.__doc__, f"phasemake.{stage} has no docstring"
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= 10, top


def test_the_package_never_imports_snakemake():
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "import snakemake" in p.read_text() or "from snakemake" in p.read_text()
    ]
    assert offenders == []


def test_tests_mirror_the_stages():
    for stage in STAGES:
        assert list((REPO / "tests" / "unit" / stage).glob("test_*.py")), stage
