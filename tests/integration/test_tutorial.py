"""docs/tutorial.md, executed: the files it shows are the files this test writes, its commands
are the commands this test runs, and what its console blocks show is what they print.

The tutorial works in `~/machines` with the clone in `~/phasemake`; here `~/machines` is a
temporary directory and `~/phasemake` this repository (its `.venv/bin` the running Python's
folder). Code blocks with a `title="path"` are written to that path; `console` blocks are
commands (`$ ...`, a quoted argument may span lines) each followed by its exact output;
`bash` blocks are run line by line, except the installation (`git clone`) and `cd`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

TUTORIAL = REPO / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, str, str]]:
    """(language, title or "", text) of every fenced block, in order."""
    out = []
    for lang, rest, text in BLOCK.findall(TUTORIAL.read_text()):
        title = re.search(r'title="([^"]+)"', rest)
        out.append((lang, title.group(1) if title else "", text))
    return out


def _local(command: str, home: Path) -> str:
    bindir = Path(sys.executable).parent
    command = command.replace("~/phasemake/.venv/bin/", f"{bindir}/")
    return command.replace("~/phasemake/", f"{REPO}/").replace("~/machines", str(home))


def _console(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"console block line without a command: {lines[i]}"
        command = lines[i][2:]
        while command.count('"') % 2:  # a quoted argument spanning lines
            i += 1
            command += "\n" + lines[i]
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        pairs.append((command, output))
    return [(c, "\n".join(o)) for c, o in pairs]


def _run(command: str, cwd: Path) -> str:
    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_the_tutorial_runs_as_written(tmp_path):
    home = tmp_path / "machines"
    (home / "models").mkdir(parents=True)
    (home / "data").mkdir()
    ran = 0
    for lang, title, text in _blocks():
        if title:
            (home / title).parent.mkdir(parents=True, exist_ok=True)
            (home / title).write_text(text)
        elif lang == "console":
            for command, expected in _console(text):
                out = _run(_local(command, home), home)
                assert out.rstrip("\n") == expected, f"$ {command}\n{out}"
                ran += 1
        elif lang == "bash" and "git clone" not in text:
            for line in text.splitlines():
                if line.strip() and not line.startswith(("cd ", "mkdir ")):
                    words = shlex.split(_local(line, home))
                    assert Path(words[0]).exists(), line
                    _run(_local(line, home), home)
                    ran += 1
    assert ran >= 8  # the checks, the simulation, the runs, the report, the results
    assert (home / "report.html").is_file()
