"""Stage 3 through real snakemake: per-unit jobs, parallel units, minimal re-recording."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import phasemake
from phasemake.models import kingman

pytestmark = pytest.mark.integration

CHAIN = """
import phasemake
from phasemake.models import kingman

BOOST = 1.0


@phasemake.model(parameters=["coal"], initial=lambda n: [n])
def chain(state, n):
    k = int(state[0])
    if k < 2:
        return []
    return [([k - 1], [k * (k - 1) / 2 * (BOOST if k > 4 else 1.0)])]
"""

CONFIG = {
    "cache": "cache",
    "models": {
        "chain": {"callback": "models/chain.py:chain", "params": {"n": 8}},
        "kingman": {"callback": "phasemake.models:kingman", "params": {"n": 6}},
    },
    "traces": {"max_unit_cost": 1},  # one level per unit
}


def units(workflow) -> dict[str, int]:
    folder = workflow.root / "cache/traces/units"
    return {p.stem: p.stat().st_mtime_ns for p in folder.glob("*.h5")}


def max_concurrent(output: str, rule: str) -> int:
    """Most ``rule`` jobs running at once, from snakemake's start and finish lines."""
    running = best = 0
    for line in output.splitlines():
        if re.match(rf"((local)?rule|Job \d+:) {rule}:", line):
            running += 1
            best = max(best, running)
        elif re.match(rf"Finished jobid: \d+ \(Rule: {rule}\)", line):
            running -= 1
    return best


def test_units_are_jobs_shared_parallel_and_minimal(workflow):
    (workflow.root / "models/chain.py").write_text(CHAIN)
    workflow.write_config(CONFIG)
    proc = workflow.snakemake("--cores", "2")
    first = units(workflow)
    # chain n=8 has 8 levels; kingman n=6's 6 levels are the same units as chain's lowest
    assert len(first) == 8
    assert len(list((workflow.root / "logs/record_trace_unit").glob("*.log"))) == 8
    assert max_concurrent(proc.stdout + proc.stderr, "record_trace_unit") == 2
    assert workflow.planned("record_trace_unit") == 0 and workflow.planned("stitch_trace") == 0

    # the traces from files evaluate to the dense reference
    spec = phasemake.spec_hash(kingman, n=6)
    trace = phasemake.load_trace(workflow.root / f"cache/traces/{spec}.h5")
    assert float(trace.expectation([1.0])) == pytest.approx(2 * (1 - 1 / 6), rel=1e-12)

    # BOOST only changes levels k > 4: four new units, nothing else re-recorded
    (workflow.root / "models/chain.py").write_text(CHAIN.replace("BOOST = 1.0", "BOOST = 2.0"))
    workflow.snakemake("--cores", "2")
    second = units(workflow)
    assert len(second) == 12
    assert {k: second[k] for k in first} == first

    # a corrupt unit is reported at parse time, recomputed, and the trace re-stitched
    plan = json.loads((workflow.root / f"cache/traces/{spec}/plan.json").read_text())
    victim = plan["units"][2]["key"]  # a unit of a configured model (kingman)
    with h5py.File(workflow.root / f"cache/traces/units/{victim}.h5", "r+") as f:
        f["edge_coef"][...] = np.asarray(f["edge_coef"]) + 1.0
    proc = workflow.snakemake("--cores", "2")
    out = proc.stdout + proc.stderr
    assert "is corrupt: its checksum" in out and victim in out
    # job messages name the model, not only the hashes: the unit is recorded from the graph
    # of the plan that claimed it first (kingman's, or chain's before BOOST changed,
    # whichever plan job ran first)
    claimer = Path(phasemake.read_claim(workflow.root / "cache/traces/units", victim)["graph"])
    if claimer.stem == spec:
        expected = f"record_trace_unit: unit {victim} of model kingman"
    else:
        expected = f"record_trace_unit: unit {victim} of the plan of spec {claimer.stem} (a model"
    assert expected in out
    assert f"stitch_trace: trace of model kingman (spec {spec})" in out
    phasemake.read_unit(workflow.root / f"cache/traces/units/{victim}.h5")
    assert workflow.planned("record_trace_unit") == 0


def test_units_of_a_model_that_left_the_config_are_reused(workflow):
    # chain n=8 plans (claims) all eight units; kingman n=6 then needs six of them
    (workflow.root / "models/chain.py").write_text(CHAIN)
    config = {**CONFIG, "models": {"chain": CONFIG["models"]["chain"]}}
    workflow.write_config(config)
    workflow.snakemake("--cores", "1")
    first = units(workflow)
    config["models"] = {"kingman": CONFIG["models"]["kingman"]}
    workflow.write_config(config)
    assert workflow.planned("record_trace_unit") == 0
    proc = workflow.snakemake("--cores", "1")
    assert "record_trace_unit:" not in proc.stdout + proc.stderr
    assert units(workflow) == first
    spec = phasemake.spec_hash(kingman, n=6)
    trace = phasemake.load_trace(workflow.root / f"cache/traces/{spec}.h5")
    assert float(trace.expectation([1.0])) == pytest.approx(2 * (1 - 1 / 6), rel=1e-12)

    # without the departed model's graph the units cannot be re-recorded: a clear error
    chain_graph = next(p for p in (workflow.root / "cache/graphs").glob("*.h5") if p.stem != spec)
    chain_graph.unlink()
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    assert "no longer in the config" in proc.stdout + proc.stderr
    assert "delete cache/traces/" in proc.stdout + proc.stderr
