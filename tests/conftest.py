"""Shared fixtures: loading model files written by a test, isolated from each other."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from phasemake import load_model, spec_hash

REPO = Path(__file__).resolve().parents[1]


def mapping_bomb(*prefix: str) -> str:
    """A YAML alias bomb made of mappings (10^9 values if expanded), after ``prefix`` lines:
    what Snakemake's config merge hangs on."""
    lines = [*prefix, "a0: &a0 {" + ", ".join(f"k{j}: x" for j in range(10)) + "}"]
    lines += [
        f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(10)) + "}"
        for i in range(1, 9)
    ]
    return "\n".join(lines) + "\n"


class ModelFiles:
    """Writes variants of a model (a folder of .py files each) and hashes them.

    Each variant lives in its own folder; modules it imports are removed from
    ``sys.modules`` after hashing so that the next variant imports its own copies.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def write(self, files: dict[str, str]) -> Path:
        self.count += 1
        folder = self.root / f"variant{self.count}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(textwrap.dedent(text))
        return folder

    def spec(self, files: dict[str, str], ref: str = "model.py:cb", **params) -> str:
        folder = self.write(files)
        before = set(sys.modules)
        path_before = list(sys.path)
        try:
            model = load_model(ref, base_dir=folder)
            return spec_hash(model, **params)
        finally:
            for name in set(sys.modules) - before:
                del sys.modules[name]
            sys.path[:] = path_before


@pytest.fixture
def model_files(tmp_path: Path) -> ModelFiles:
    return ModelFiles(tmp_path)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run the tests marked slow (minutes of sampling each; not in CI)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` are deselected (not skipped) unless ``--run-slow`` is given."""
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
