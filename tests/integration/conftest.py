"""A temporary copy of the workflow, and a way to run real snakemake in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "envs", "models", "profiles", "report")


class Workflow:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write_config(self, config: dict) -> None:
        (self.root / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {args} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def planned(self, rule: str) -> int:
        """How many jobs of ``rule`` a dry run plans (0 when nothing is to be done)."""
        proc = self.snakemake("-n")
        out = proc.stdout + proc.stderr
        if "Nothing to be done" in out:
            return 0
        match = re.search(rf"^{rule}\s+(\d+)\s*$", out, flags=re.M)
        return int(match.group(1)) if match else 0

    def graphs(self) -> dict[str, float]:
        return {p.stem: p.stat().st_mtime_ns for p in (self.root / "cache/graphs").glob("*.h5")}


def copy_workflow(root: Path) -> Workflow:
    """A copy of the workflow's files (:data:`WORKFLOW_PARTS`) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    return Workflow(root)


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    return copy_workflow(tmp_path)
