"""Wall time of the smoke config (config/smoke.yaml) on a fresh clone: the figure the README
quotes.

Clones the repository's committed HEAD into a temporary folder (an empty cache, no JAX
compilation cache: a user's first run), runs ``snakemake --cores all --configfile
config/smoke.yaml`` there and prints the wall time beside the issue's target ("about a
minute"), then a second run of the same command (nothing to do: the parse-time cost).

Usage::

    python benchmarks/smoke.py [--cores N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 60.0


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "phasemake"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        cmd = [sys.executable, "-m", "snakemake", "--cores", args.cores]
        cmd += ["--configfile", "config/smoke.yaml"]
        first = timed(cmd, clone)
        again = timed(cmd, clone)
    print(f"`snakemake --cores {args.cores} --configfile config/smoke.yaml` on a fresh clone\n")
    print("| run | wall time | target | ratio to target |")
    print("|---|---|---|---|")
    print(f"| first (empty cache) | {first:.1f} s | {TARGET_S:.0f} s | {first / TARGET_S:.2f} |")
    print(f"| again (nothing to do) | {again:.1f} s | | |")


if __name__ == "__main__":
    from doc_table import recorded

    with recorded("smoke"):
        main()
