"""Report tables (HTML) from synthetic payloads and real benchmark and JSON artefact files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasemake.core.artefact import write_json_artefact
from phasemake.core.errors import ArtefactError
from phasemake.report.tables import (
    data_facts,
    diagnostics_table,
    estimates_table,
    model_table,
    read_benchmark,
    read_fit,
    read_posterior_summary,
    timings_table,
    unit_origins,
    write_html,
)

FIT = {
    "free": ["coal", "mig"],
    "parameters": {
        "coal": {"estimate": 1.02, "se": 0.03, "fixed": False},
        "mig": {"estimate": 0.24, "se": 0.02, "fixed": False},
        "mutation": {"estimate": 0.001, "se": 0.0, "fixed": True},
    },
    "status": "converged",
    "converged": True,
    "passes": 7,
    "reason": "ftol: χ² decreased by 1e-12",
    "chi2": 41234.5,
    "count": 20000.0,
    "scale": 1.0,
    "history": [],
}


def _posterior(refinement=None):
    quantiles = {"0.025": 0.94, "0.05": 0.95, "0.25": 0.99, "0.5": 1.01, "0.75": 1.03}
    quantiles |= {"0.95": 1.06, "0.975": 1.07}
    summary = {
        "rule": "scott",
        "shards": 2,
        "free": ["coal", "mig"],
        "parameters": {
            "coal": {"mean": 1.01, "sd": 0.03, "quantiles": quantiles},
            "mig": {
                "mean": 0.30,
                "sd": 0.01,
                "quantiles": {
                    **quantiles,
                    "0.025": 0.27,
                    "0.05": 0.28,
                    "0.95": 0.32,
                    "0.975": 0.33,
                },
            },
        },
        "shard_diagnostics": [
            {
                "shard": s,
                "rows": 5000,
                "attempt": 1 + s,
                "failed_attempts": [{"attempt": 1, "problem": "divergence rate 0.05 > 0.01"}] * s,
                "target_accept": 0.8,
                "divergences": 3 * s,
                "r_hat": [1.001, 1.2 if s else 1.01],
                "ess": [400.0, 350.0],
                "step_size": [0.5, 0.6],
                "mean_leapfrog_steps": 7.0,
            }
            for s in range(2)
        ],
        "heterogeneity": {
            "Q": 2.5,
            "df": 2,
            "p_value": 0.29,
            "per_parameter_Q": [1.0, 1.5],
            "per_parameter_I2": [0.0, 0.33],
        },
    }
    if refinement is not None:
        summary["refinement"] = refinement
    return summary


def test_estimates_table_marks_the_truth():
    page = estimates_table(
        "times", FIT, posterior=_posterior(), truth={"coal": 1.0, "mig": 0.25, "mutation": 0.001}
    )
    assert page.startswith("<!DOCTYPE html>") and "times: estimates" in page
    assert '<td class="good">1</td>' in page  # coal inside its 95% [0.94, 1.07]
    assert '<td class="bad">0.25</td>' in page  # mig outside its 95% [0.27, 0.33]
    assert "<th>2.5%</th><th>5%</th><th>median</th><th>95%</th><th>97.5%</th>" in page
    # shaded by the 95% interval, not the 90%: a truth between the 5% and 2.5% points
    edge = estimates_table("times", FIT, posterior=_posterior(), truth={"mig": 0.275})
    assert '<td class="good">0.275</td>' in edge
    assert "<td>fixed</td>" in page
    assert "scott consensus of 2 shard(s)" in page
    nlsq_only = estimates_table("times", FIT, truth={"coal": 1.0})
    assert "posterior mean" not in nlsq_only and '<td class="good">1</td>' in nlsq_only


def test_diagnostics_table_shades_problems_and_shows_the_refinement():
    page = diagnostics_table("times", FIT, posterior=_posterior(), max_rhat=1.05)
    assert '<td class="bad">1.2</td>' in page and '<td class="good">1.01</td>' in page
    assert '<td class="bad">3</td>' in page  # divergences
    assert "1: divergence rate 0.05 &gt; 0.01" in page  # failed attempt, escaped
    assert "importance-sampling refinement" not in page
    refined = _posterior({"pareto_k": 0.41, "ess": 812.5, "applied": True})
    page = diagnostics_table("times", FIT, posterior=refined)
    assert "importance-sampling refinement" in page
    assert '<td>pareto_k</td><td class="good">0.41</td>' in page
    assert '<td>applied</td><td class="good">yes</td>' in page
    estimates = estimates_table("times", FIT, posterior=refined)
    assert "refined by importance sampling (Pareto k = 0.41, ESS 812)" in estimates
    one = {**_posterior(), "shards": 1, "shard_diagnostics": _posterior()["shard_diagnostics"][:1]}
    assert "nothing to compare" in diagnostics_table("times", FIT, posterior=one)
    nlsq_only = diagnostics_table("times", FIT)
    assert "<h2>shards</h2>" not in nlsq_only and "cmc.enabled false" in nlsq_only


def test_model_table_counts_cache_hits():
    unit = {"level_start": 0, "level_stop": 4, "vertices": 10, "edges": 24, "cost": 127}
    units = [
        {
            **unit,
            "key": "a" * 32,
            "own": True,
            "source": "s1",
            "recorded_here": True,
            "seconds": 0.4,
        },
        {**unit, "key": "b" * 32, "own": False, "source": "f" * 32, "recorded_here": False},
    ]
    page = model_table(
        "times",
        model={"model": "two_deme", "params": {"n1": 6}},
        graph={"vertices": 48, "edges": 150},
        units=units,
        data={"rows": 20000},
    )
    assert "<td>units shared with another graph (cache hits)</td><td>1</td>" in page
    assert "<td>units not recorded in this working directory (cache hits)</td><td>1</td>" in page
    assert "graph ffffffffffff" in page and "0.40 s" in page and "no (cache)" in page


def test_timings_table_from_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    paths = []
    for k, (s, rss) in enumerate([(2.5, 300.0), (4.0, 350.0)]):
        path = tmp_path / "logs/accumulate_chunk/times/pass0" / f"chunk{k}.benchmark.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{s}\t0:00:0{int(s)}\t{rss}\t1\t1\t1\t0\t0\t50\t{s / 2}\n")
        paths.append(str(path))
    assert read_benchmark(paths[0]) == {"s": 2.5, "max_rss": 300.0, "cpu_time": 1.25}
    missing = str(tmp_path / "graph.benchmark.tsv")
    page = timings_table("times", {"build_graph": [missing], "accumulate_chunk": paths})
    assert "<td>build_graph</td><td>0</td><td>1</td><td>–</td>" in page
    assert (
        "<td>accumulate_chunk</td><td>2</td><td>0</td><td>6.5</td><td>3.25</td><td>4</td>" in page
    )
    first, second = page.index("<td>times/pass0/chunk1</td>"), page.index("times/pass0/chunk0<")
    assert first < second  # longest first
    assert "Sum of job wall times: 6.5 s" in page


def test_readers_verify_the_artefacts(tmp_path):
    fit, post = tmp_path / "fit.json", tmp_path / "consensus.json"
    write_json_artefact(fit, kind="phasemake.fit", version=1, payload=FIT)
    write_json_artefact(post, kind="phasemake.consensus_summary", version=1, payload=_posterior())
    assert read_fit(fit)["passes"] == 7
    assert read_posterior_summary(post)["shards"] == 2
    with pytest.raises(ArtefactError):
        read_fit(post)
    write_html("<p>x</p>", tmp_path / "out" / "t.html")
    assert (tmp_path / "out" / "t.html").read_text() == "<p>x</p>"


def test_unit_origins_from_claim_manifests_and_benchmarks(tmp_path):
    from phasemake import UnitPlan

    units = [UnitPlan(k, 2 * k, 2 * k + 2, 10, 20, 30, c * 32) for k, c in enumerate("ab")]
    spec, other = "1" * 32, "2" * 32
    for unit, owner in zip(units, (spec, other), strict=True):
        manifest = {"plan": f"cache/traces/{owner}/plan.json", "graph": "g.h5"}
        (tmp_path / f"{unit.key}.source.json").write_text(json.dumps(manifest))
    bench = {u.key: str(tmp_path / f"{u.key}.benchmark.tsv") for u in units}
    Path(bench["a" * 32]).write_text("s\tmax_rss\tcpu_time\n0.75\t100\t0.5\n")
    rows = unit_origins(units, spec=spec, units_dir=tmp_path, benchmarks=bench)
    assert [(r["own"], r["source"], r["recorded_here"], r["seconds"]) for r in rows] == [
        (True, spec, True, 0.75),
        (False, other, False, 0.0),
    ]


def test_data_facts_keep_the_settings_of_the_observation_kind():
    simulate = {"theta": {"coal": 1.0}, "size": 100, "censor_at": 12.0, "windows": 9, "seed": 1}
    header = {
        "kind": "absorption_times",
        "n_rows": 100,
        "provenance": {"data": {"simulate": simulate}},
        "block_checksums": ["x", "y"],
        "checksum": "sha256:" + "0" * 64,
    }
    facts = data_facts(header)
    assert facts["simulated"] == {"theta": {"coal": 1.0}, "size": 100, "censor_at": 12.0, "seed": 1}
    assert facts["blocks"] == 2
    page = model_table("a", model={}, graph={}, units=[], data=facts)
    assert "<td>theta = {coal = 1}, size = 100, censor_at = 12, seed = 1</td>" in page
    file_header = {**header, "provenance": {"data": {"file": "times.csv"}}}
    assert data_facts(file_header)["file"] == "times.csv"
