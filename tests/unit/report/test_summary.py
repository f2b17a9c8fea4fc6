"""phasemake summary and export, on real artefact files written by the package's writers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from phasemake.cli import main
from phasemake.core.artefact import write_json_artefact
from phasemake.core.errors import PhasemakeError
from phasemake.posterior.combination import _against_truth
from phasemake.posterior.consensus import summarise_draws, write_consensus
from phasemake.report.summary import closing_lines, export_analysis, find_results, summary_text

FIT = {
    "parameters": {
        "coal": {"estimate": 1.02, "se": 0.03, "fixed": False, "wald95": [0.962, 1.081]},
        "mig": {"estimate": 0.5, "se": 0.0, "fixed": True},
    },
    "free": ["coal"],
    "converged": True,
    "status": "converged",
    "passes": 6,
    "reason": "relative change below tolerance",
    "chi2": 10.0,
    "count": 100,
}


DIAGNOSTICS = [  # two shards' rows as consensus.json records them
    {"r_hat": [1.004], "ess_bulk": [310.2], "ess_tail": [280.0], "divergences": 1},
    {"r_hat": [1.012], "ess_bulk": [250.7], "ess_tail": [301.0], "divergences": 2},
]


def _write(root, *, posterior=True, truth=None):
    folder = root / "times"
    write_json_artefact(folder / "nlsq" / "fit.json", kind="phasemake.fit", version=1, payload=FIT)
    if not posterior:
        return None
    rng = np.random.default_rng(3)
    phi = np.log(rng.normal(1.0, 0.05, size=(2, 500, 1)))  # chains × draws × parameters
    summary = {**summarise_draws(phi, ["coal"]), "rule": "scott", "shards": 2}
    summary["shard_diagnostics"] = DIAGNOSTICS
    if truth:
        summary["truth"] = _against_truth(summary, truth)
    write_json_artefact(
        folder / "cmc" / "consensus.json",
        kind="phasemake.consensus_summary",
        version=1,
        payload=summary,
    )
    write_consensus(folder / "cmc" / "consensus.h5", phi, summary, free=["coal"])
    return phi, summary


def test_summary_lists_estimates_intervals_truth_and_status(tmp_path):
    _, post = _write(tmp_path, truth={"coal": 1.0})
    text = summary_text(find_results(tmp_path))
    q = post["parameters"]["coal"]["quantiles"]
    assert text.startswith("times: NLSQ converged after 6 passes; posterior: scott consensus")
    # the shards' worst diagnostics: max R-hat, min bulk and tail ESS, all divergences
    assert "(R-hat ≤ 1.012, bulk ESS ≥ 251, tail ESS ≥ 280, 3 divergent)" in text.splitlines()[0]
    assert "[0.962, 1.081]" in text  # the Wald interval of fit.json
    assert f"[{q['0.025']:.4g}, {q['0.975']:.4g}]" in text  # the posterior 95% interval
    assert q["0.025"] < q["0.05"] < q["0.95"] < q["0.975"]
    coal_line = next(line for line in text.splitlines() if line.startswith("coal"))
    assert coal_line.split()[-1] == "yes"  # truth 1.0 inside the 95% interval
    mig_line = next(line for line in text.splitlines() if line.startswith("mig"))
    assert "fixed" in mig_line


def test_summary_of_an_analysis_without_posterior_or_fit(tmp_path):
    _write(tmp_path, posterior=False)
    (tmp_path / "later").mkdir()
    text = summary_text(find_results(tmp_path))
    assert "times: NLSQ converged after 6 passes; no posterior" in text
    assert "later: not fitted yet" in text
    with pytest.raises(PhasemakeError, match=r"no results for analysis 'nope'.*'later', 'times'"):
        find_results(tmp_path, analyses=["nope"])


def test_export_writes_estimates_draws_and_netcdf(tmp_path):
    phi, post = _write(tmp_path)
    paths = export_analysis("times", results=tmp_path, out=tmp_path / "out")
    assert [p.name for p in paths] == ["estimates.csv", "draws.csv", "posterior.nc"]
    with open(paths[0]) as f:
        rows = {r["parameter"]: r for r in csv.DictReader(f)}
    assert float(rows["coal"]["estimate"]) == 1.02
    assert float(rows["coal"]["q0.975"]) == post["parameters"]["coal"]["quantiles"]["0.975"]
    assert rows["mig"]["fixed"] == "True"
    draws = np.loadtxt(paths[1], delimiter=",", skiprows=1)
    assert draws.shape == (1000,)
    np.testing.assert_allclose(np.sort(draws), np.sort(np.exp(phi).ravel()), rtol=1e-15)
    import arviz

    idata = arviz.from_netcdf(paths[2])
    assert float(idata.posterior["coal"].mean()) == pytest.approx(np.exp(phi).mean(), rel=1e-12)


def test_cli_summary_and_export(tmp_path, capsys):
    _write(tmp_path)
    assert main(["summary", "--results", str(tmp_path)]) == 0
    assert "times: NLSQ converged" in capsys.readouterr().out
    assert main(["export", "times", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "times" / "export" / "posterior.nc").is_file()
    assert main(["summary", "missing", "--results", str(tmp_path)]) == 2
    assert "no results for analysis 'missing'" in capsys.readouterr().err


def test_sfs_fits_also_show_theta_per_site(tmp_path):
    # θ = 4Neμ = 2 mutation / coal; se and interval from the log-scale covariance
    fit = {
        **FIT,
        "parameters": {
            "coal": {"estimate": 2.0, "se": 0.0, "fixed": True},
            "mutation": {"estimate": 0.003, "se": 0.0003, "fixed": False, "wald95": [1, 2]},
        },
        "free": ["mutation"],
        "log_covariance": [[0.01]],
    }
    path = tmp_path / "sfs" / "nlsq" / "fit.json"
    write_json_artefact(path, kind="phasemake.fit", version=1, payload=fit)
    line = next(
        x for x in summary_text(find_results(tmp_path)).splitlines() if x.startswith("θ=4Neμ")
    )
    lo, hi = 0.003 * np.exp(-1.959963984540054 * 0.1), 0.003 * np.exp(1.959963984540054 * 0.1)
    assert line.split()[1:3] == ["0.003", "0.0003"]
    assert f"[{lo:.4g}, {hi:.4g}]" in line
    (estimates,) = export_analysis("sfs", results=tmp_path)
    rows = {r["parameter"]: r for r in csv.DictReader(estimates.open())}
    theta = rows["theta_4Nemu_per_site"]
    assert theta["fixed"] == "derived" and float(theta["estimate"]) == 0.003
    assert float(theta["wald95_low"]) == pytest.approx(lo, rel=1e-12)


def test_profile_intervals_show_open_sides_and_lead_the_closing_line(tmp_path):
    fit = {
        **FIT,
        "parameters": {
            **FIT["parameters"],
            "coal": {**FIT["parameters"]["coal"], "profile": [0.37, None]},
        },
    }
    folder = tmp_path / "times" / "nlsq"
    write_json_artefact(folder / "fit.json", kind="phasemake.fit", version=1, payload=fit)
    text = summary_text(find_results(tmp_path))
    header = text.splitlines()[1]
    assert "Wald 95%" in header and "profile 95%" in header
    assert "[0.37, open]" in text.splitlines()[2]
    (line,) = closing_lines(find_results(tmp_path))
    assert "coal 1.02 [0.37, open]" in line  # no posterior: the profile, never a number
    (csv_path,) = export_analysis("times", results=tmp_path)
    with open(csv_path) as f:
        rows = {r["parameter"]: r for r in csv.DictReader(f)}
    assert rows["coal"]["profile95_low"] == "0.37" and rows["coal"]["profile95_high"] == ""
