"""Tables of an analysis for the workflow's report, as small self-contained HTML pages.

Each ``*_table`` function takes the payloads the workflow's files hold (``fit.json``,
``consensus.json``, graph and plan facts, ``benchmark:`` files) and returns an HTML page
(:func:`write_html` writes one atomically). Nothing here imports JAX, so the jobs that
write tables start fast.

Examples
--------
>>> page = html_page("demo", [("numbers", html_table(["a", "b"], [[1, 2.5]]))])
>>> "<td>2.5</td>" in page
True
"""

from __future__ import annotations

import csv
import html
import os
from collections.abc import Mapping, Sequence
from typing import Any

from phasemake.core.artefact import atomic_path, read_json_artefact
from phasemake.trace.files import read_claim

__all__ = [
    "build_seconds",
    "data_facts",
    "diagnostics_table",
    "estimates_table",
    "html_page",
    "html_table",
    "model_table",
    "read_benchmark",
    "read_fit",
    "read_posterior_summary",
    "timings_table",
    "unit_origins",
    "write_html",
]

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em; color: #111;
       background: #fff; }
h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
table.kv td { text-align: left; } table.kv td:first-child { background: #f4f4fa; }
td.bad { background: #fdd; } td.good { background: #dfd; }
p.note { color: #444; max-width: 60em; }
"""


def read_fit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified payload of an NLSQ ``fit.json``."""
    return read_json_artefact(path, kind="phasemake.fit", versions=(1,))


def read_posterior_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified payload of a ``consensus.json``."""
    return read_json_artefact(path, kind="phasemake.consensus_summary", versions=(1,))


def _cell(value: Any) -> str:
    if isinstance(value, tuple):  # (text, css class)
        return f'<td class="{value[1]}">{_text(value[0])}</td>'
    return f"<td>{_text(value)}</td>"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    if isinstance(value, Mapping):
        return html.escape(", ".join(f"{k} = {_plain(v)}" for k, v in value.items()))
    return html.escape(str(value))


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_plain(v)}" for k, v in value.items()) + "}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; a cell given as ``(value, "bad")`` or ``(value, "good")`` is shaded.
    With an empty ``header`` it is a key–value list (no header row, values left-aligned)."""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    if not any(header):
        return f'<table class="kv"><tbody>{body}</tbody></table>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, sections: Sequence[tuple[str, str]], *, note: str = "") -> str:
    """A complete HTML page: a title, an optional note, then ``(heading, html)`` sections."""
    parts = [f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections]
    lead = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{lead}"
        + "".join(parts)
        + "</body></html>\n"
    )


def write_html(page: str, path: str | os.PathLike[str]) -> None:
    """Write an HTML page atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")


def format_profile(bounds) -> str:
    """A profile interval as text, ``open`` for a side the data do not close (``None``).

    Examples
    --------
    >>> format_profile([0.37, None])
    '[0.37, open]'
    """
    return "[" + ", ".join("open" if b is None else f"{b:.4g}" for b in bounds) + "]"


def _flag(ok: bool, value: Any) -> tuple[Any, str]:
    return (value, "good" if ok else "bad")


def estimates_table(
    analysis: str,
    fit: Mapping[str, Any],
    *,
    posterior: Mapping[str, Any] | None = None,
    truth: Mapping[str, float] | None = None,
) -> str:
    """The result of an analysis: per parameter the NLSQ estimate and standard error, its
    95% profile-likelihood interval (``open`` on a side the data do not close), the
    posterior mean, sd, 95% and 90% intervals and median, and the simulated truth (shaded
    green when the 95% posterior interval, or else ± 1.96 se, covers it)."""
    truth = truth or {}
    header = ["parameter", "NLSQ estimate", "NLSQ se"]
    linked = fit.get("headline") == "robust"  # linked rows: the block sandwich leads
    if linked:
        header += ["robust se", "robust 95%"]
    profiled = any("profile" in p for p in fit["parameters"].values())
    if profiled:
        header.append("profile 95%")
    unadjusted = (posterior or {}).get("unadjusted")
    if posterior:
        header += ["posterior mean", "posterior sd", "2.5%", "5%", "median", "95%", "97.5%"]
    if unadjusted:
        header.append("unadjusted 95%")
    if truth:
        header += ["true value", "(mean − true) / sd"]
    rows = []
    for name, p in fit["parameters"].items():
        if p["fixed"]:
            rows.append([name, p["estimate"], "fixed", *[""] * (len(header) - 3)])
            continue
        row: list[Any] = [name, p["estimate"], p["se"]]
        mean, sd = p["estimate"], p["se"]
        lo, hi = mean - 1.96 * sd, mean + 1.96 * sd
        if linked:
            robust = p.get("robust95") or [None, None]
            row += [p.get("se_robust", "–"), format_profile(robust)]
            if None not in robust:
                sd, (lo, hi) = p["se_robust"], robust
        if profiled:
            row.append(format_profile(p["profile"]) if "profile" in p else "–")
        if posterior:
            q = posterior["parameters"][name]
            qs = q["quantiles"]
            mean, sd, lo, hi = q["mean"], q["sd"], qs["0.025"], qs["0.975"]
            row += [mean, sd, lo, qs["0.05"], qs["0.5"], qs["0.95"], hi]
        if unadjusted:
            raw = unadjusted["parameters"][name]["quantiles"]
            row.append(format_profile([raw["0.025"], raw["0.975"]]))
        if truth:
            true = truth.get(name)
            row += [_flag(lo <= true <= hi, true), (mean - true) / sd] if true else ["", ""]
        rows.append(row)
    status = "converged" if fit["converged"] else f"NOT converged ({fit['status']})"
    lines = [
        ["NLSQ", f"{status} after {fit['passes']} passes: {fit['reason']}"],
        ["χ² at the estimate", f"{fit['chi2']:.6g} over {fit['count']:.0f} rows/cells"],
    ]
    robust = fit.get("robust")
    if robust:
        lead = "they lead" if linked else "the model-based intervals lead (no linkage set)"
        lines.append(
            [
                "linked rows",
                f"{robust['blocks']} blocks; overdispersion {robust['overdispersion']:.3g} "
                f"(robust over model-based variance); {lead}"
                + (
                    "; posterior adjusted by the open-faced sandwich (Shaby 2014)"
                    if unadjusted
                    else ""
                ),
            ]
        )
    lines += [["warning", _flag(False, w)] for w in fit.get("warnings", [])]
    if posterior:
        lines += [["posterior warning", _flag(False, w)] for w in posterior.get("warnings", [])]
        grid = posterior.get("grid")
        if grid and "parameters" in grid:
            for name, g in grid["parameters"].items():
                lines.append(
                    [
                        f"grid posterior of {name}",
                        f"95% [{g['grid95'][0]:.4g}, {g['grid95'][1]:.4g}] "
                        f"(draws [{g['draws95'][0]:.4g}, {g['draws95'][1]:.4g}]); grid mass "
                        f"beyond the draws' tails {g['grid_mass_below']:.3f} / "
                        f"{g['grid_mass_above']:.3f} (expected 0.025 ± {g['tolerance']:.3f})",
                    ]
                )
    if posterior:
        how = f"{posterior['rule']} consensus of {posterior['shards']} shard(s)"
        refinement = posterior.get("refinement")
        if refinement:
            done = "refined" if refinement.get("applied") else "not refined (k > 0.7)"
            k, ess = refinement.get("pareto_k"), refinement.get("ess")
            how += f", {done} by importance sampling (Pareto k = {_plain(k)}, ESS {_plain(ess)})"
        lines.append(["posterior", how])
    note = (
        "θ scale. The posterior columns come from the consensus draws; the truth is shaded "
        "green when the 95% posterior interval (or NLSQ ± 1.96 se) covers it."
    )
    return html_page(
        f"{analysis}: estimates",
        [("parameters", html_table(header, rows)), ("fit", html_table([], lines))],
        note=note,
    )


def diagnostics_table(
    analysis: str,
    fit: Mapping[str, Any],
    *,
    posterior: Mapping[str, Any] | None = None,
    max_rhat: float = 1.05,
) -> str:
    """Sampler diagnostics per shard (R-hat, ESS, tail ESS, divergences, attempts, step size), the
    between-shard heterogeneity, the importance-sampling refinement when present, and the
    NLSQ stopping rule."""
    sections = []
    if posterior:
        free = posterior["free"]
        header = ["shard", "rows", "attempts", "target accept", "divergences"]
        header += [f"R-hat {n}" for n in free] + [f"ESS {n}" for n in free]
        header += [f"tail ESS {n}" for n in free]
        header += ["step size", "mean leapfrog steps", "failed attempts"]
        rows = []
        for d in posterior["shard_diagnostics"]:
            failed = "; ".join(f"{r['attempt']}: {r['problem']}" for r in d["failed_attempts"])
            rhat = [_flag(r <= max_rhat, r) for r in d["r_hat"]]
            rows.append(
                [
                    d["shard"],
                    d["rows"],
                    d["attempt"],
                    d["target_accept"],
                    _flag(d["divergences"] == 0, d["divergences"]),
                    *rhat,
                    *d["ess"],
                    *(d.get("ess_tail") or [""] * len(free)),
                    ", ".join(f"{s:.3g}" for s in d["step_size"]),
                    d["mean_leapfrog_steps"],
                    failed or "none",
                ]
            )
        sections.append(("shards", html_table(header, rows)))
        het = posterior["heterogeneity"]
        hrows = [
            [
                "all parameters",
                het["Q"],
                het["df"],
                _flag(het["p_value"] > 0.01, het["p_value"]),
                "",
            ]
        ]
        for n, q, i2 in zip(free, het["per_parameter_Q"], het["per_parameter_I2"], strict=True):
            hrows.append([n, q, posterior["shards"] - 1, "", i2])
        het_table = html_table(["", "Q", "df", "p-value", "I²"], hrows)
        if posterior["shards"] == 1:
            het_table = "<p>One shard (full-data NUTS): nothing to compare.</p>"
        sections.append(("between-shard heterogeneity", het_table))
        refinement = posterior.get("refinement")
        if refinement:
            flags = {"pareto_k": lambda k: k is not None and k <= 0.7, "applied": bool}
            rrows = [
                [k, _flag(flags[k](v), v) if k in flags else v]
                for k, v in sorted(refinement.items())
                if not _nested(v)
            ]
            sections.append(("importance-sampling refinement", html_table([], rrows)))
    lines = [
        ["status", _flag(bool(fit["converged"]), fit["status"])],
        ["passes", fit["passes"]],
        ["stopping rule", fit["reason"]],
        ["residual scale s²", fit["scale"]],
    ]
    sections.append(("NLSQ", html_table([], lines)))
    note = (
        f"R-hat is shaded red above {max_rhat}, divergences when any, the heterogeneity "
        "p-value below 0.01 (shards disagree more than their posteriors allow)."
        if posterior
        else "No posterior: this analysis has cmc.enabled false."
    )
    return html_page(f"{analysis}: diagnostics", sections, note=note)


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list) and len(str(value)) > 200


def model_table(
    analysis: str,
    *,
    model: Mapping[str, Any],
    graph: Mapping[str, Any],
    units: Sequence[Mapping[str, Any]],
    data: Mapping[str, Any],
) -> str:
    """The model of an analysis: its graph, its trace's work units (with their origin:
    recorded from this graph or reused from another's, and whether this working
    directory recorded them) and the data."""
    reused = sum(not u["own"] for u in units)
    here = sum(u["recorded_here"] for u in units)
    facts = [[k, v] for k, v in model.items()] + [[k, v] for k, v in graph.items()]
    facts += [
        ["work units", len(units)],
        ["units shared with another graph (cache hits)", reused],
        ["units not recorded in this working directory (cache hits)", len(units) - here],
    ]
    header = ["unit", "levels", "vertices", "edges", "cost", "recorded from", "recorded here"]
    rows = [
        [
            u["key"][:12],
            f"[{u['level_start']}, {u['level_stop']})",
            u["vertices"],
            u["edges"],
            u["cost"],
            "this graph" if u["own"] else f"graph {u['source'][:12]}",
            f"{u['seconds']:.2f} s" if u["recorded_here"] else "no (cache)",
        ]
        for u in units
    ]
    sections = [
        ("model and graph", html_table([], facts)),
        ("work units of the elimination trace", html_table(header, rows)),
        ("data", html_table([], [[k, v] for k, v in data.items()])),
    ]
    return html_page(f"{analysis}: model", sections)


def unit_origins(
    units: Sequence[Any],
    *,
    spec: str,
    units_dir: str | os.PathLike[str],
    benchmarks: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Each work unit of ``spec``'s plan (:class:`phasemake.UnitPlan`) as a row for
    :func:`model_table`: ``own`` when this spec's plan claimed it (it is recorded from this
    graph), else ``source``, the spec whose plan did (a cache hit: recorded once for
    both); ``recorded_here`` and ``seconds`` from its job's benchmark file, if any."""
    rows = []
    for unit in units:
        claimed_by = os.path.basename(os.path.dirname(read_claim(units_dir, unit.key)["plan"]))
        here = os.path.exists(benchmarks[unit.key])
        seconds = read_benchmark(benchmarks[unit.key])["s"] if here else 0.0
        own = {"own": claimed_by == spec, "source": claimed_by}
        rows.append({**unit._asdict(), **own, "recorded_here": here, "seconds": seconds})
    return rows


def data_facts(header: Mapping[str, Any]) -> dict[str, Any]:
    """What an observations file holds (its verified header): kind, rows, the simulation
    settings this kind uses (or the source file), blocks and checksum."""
    kind, source = header["kind"], header["provenance"].get("data", {})
    facts: dict[str, Any] = {"observations": kind, "rows": header["n_rows"]}
    if "simulate" in source:
        keep = ("theta", "size", "censor_at") if kind == "absorption_times" else ("theta",)
        keep += ("windows", "sites") if kind == "sfs" else ()
        facts["simulated"] = {k: source["simulate"].get(k) for k in (*keep, "seed")}
    else:
        facts["file"] = source.get("file")
    facts["blocks"] = len(header["block_checksums"])
    facts["checksum"] = header["checksum"][:19]
    return facts


def read_benchmark(path: str | os.PathLike[str]) -> dict[str, float]:
    """The first row of a Snakemake ``benchmark:`` file: seconds, max RSS (MB), CPU time."""
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))

    def number(key: str) -> float:
        try:
            return float(row.get(key, "nan"))
        except ValueError:  # "NA" when the job was too short to measure
            return float("nan")

    return {"s": number("s"), "max_rss": number("max_rss"), "cpu_time": number("cpu_time")}


def build_seconds(path: str | os.PathLike[str]) -> float | str:
    """The graph build job's wall seconds (its Snakemake benchmark file: process start and
    imports included), or where the graph came from when this working directory did not
    build it (the graph file holds no timings)."""
    if not os.path.exists(path):
        return "not built here (from the cache)"
    return round(read_benchmark(path)["s"], 3)


def _job(rule: str, path: str) -> str:
    """A job's name from its benchmark file: the path after ``/{rule}/``, no suffix."""
    tail = path.split(f"/{rule}/", 1)[-1]
    return tail.removesuffix(".benchmark.tsv")


def timings_table(analysis: str, benchmarks: Mapping[str, Sequence[str]]) -> str:
    """Per rule the jobs and their wall time (total, mean, longest), CPU time and peak
    memory, from the rules' ``benchmark:`` files; a file that does not exist belongs to a
    job whose output came from the cache (or another working directory)."""
    rows, jobs, total = [], [], 0.0
    for rule, paths in benchmarks.items():
        found = [(p, read_benchmark(p)) for p in paths if os.path.exists(p)]
        seconds = [b["s"] for _, b in found]
        total += sum(seconds)
        rows.append(
            [
                rule,
                len(found),
                len(paths) - len(found),
                sum(seconds) if found else None,
                sum(seconds) / len(found) if found else None,
                max(seconds) if found else None,
                sum(b["cpu_time"] for _, b in found) if found else None,
                max(b["max_rss"] for _, b in found) if found else None,
            ]
        )
        jobs += [[rule, _job(rule, p), b["s"], b["cpu_time"], b["max_rss"]] for p, b in found]
    header = [
        "rule",
        "jobs",
        "no benchmark file",
        "wall s (sum)",
        "mean s",
        "longest s",
        "CPU s (sum)",
        "peak RSS MB",
    ]
    jobs.sort(key=lambda r: -r[2])
    sections = [
        ("per rule", html_table(header, rows)),
        (
            "jobs, longest first",
            html_table(["rule", "job", "wall s", "CPU s", "RSS MB"], jobs),
        ),
    ]
    note = (
        f"Sum of job wall times: {total:.1f} s (jobs run in parallel, so the run took less). "
        "A job without a benchmark file here had its output in the cache already (or ran in "
        "another working directory); rules that declare no benchmark file are not listed."
    )
    return html_page(f"{analysis}: timings", sections, note=note)
