# Input, params and resources functions of rules/report.smk (Snakemake's linter keeps
# functions and rules in separate files).
import re

from phasemake import read_plan
from phasemake.fit.state import read_state
from phasemake.posterior.shardplan import read_shard_plan

# -- report (rules/report.smk) ------------------------------------------------------------------
#: Figures and tables of every analysis, and those only an analysis with cmc.enabled has.
REPORT_FILES = (
    "estimates.html",
    "model.html",
    "nlsq.png",
    "fit.png",
    "diagnostics.html",
    "timings.html",
)
POSTERIOR_REPORT_FILES = (
    "posterior_traces.png",
    "posterior_marginals.png",
    "posterior_pairs.png",
)


def report_files():
    """Every analysis's report figures and tables (see rules/report.smk)."""
    files = []
    for name, a in ANALYSES.items():
        names = REPORT_FILES + (POSTERIOR_REPORT_FILES if a["cmc"]["enabled"] else ())
        files += [f"results/{name}/report/{f}" for f in names]
    return files


def _posterior_summary(wildcards):
    a = wildcards.analysis
    enabled = ANALYSES[a]["cmc"]["enabled"]
    return {"posterior": f"results/{a}/cmc/consensus.json"} if enabled else {}


def estimates_inputs(wildcards):
    """The NLSQ fit and, with cmc.enabled, the consensus summary."""
    fit = f"results/{wildcards.analysis}/nlsq/fit.json"
    return {"fit": fit, **_posterior_summary(wildcards)}


def analysis_max_rhat(wildcards):
    """The R-hat gate of the analysis's shards (the diagnostics table shades above it)."""
    return ANALYSES[wildcards.analysis]["cmc"]["max_rhat"]


def analysis_model_config(wildcards):
    """The analysis's model: config name, callback, construction params and spec."""
    m = MODELS[ANALYSES[wildcards.analysis]["model"]]
    return {"model": m.name, "callback": m.callback, "params": m.params, "spec": m.spec}


def model_summary_inputs(wildcards):
    """Graph, trace plan (after its checkpoint) and observations of the analysis."""
    spec = _spec(wildcards)
    return {
        "graph": f"{CACHE}/graphs/{spec}.h5",
        "plan": checkpoints.plan_trace.get(spec=spec).output.plan,
        "observations": f"results/{wildcards.analysis}/data/observations.h5",
    }


def unit_benchmarks(wildcards):
    """Benchmark file of each unit of the analysis's trace plan (absent: a cache hit)."""
    plan = checkpoints.plan_trace.get(spec=_spec(wildcards)).output.plan
    pattern = str(rules.record_trace_unit.benchmark)
    return {u.key: pattern.format(unit=u.key) for u in read_plan(plan)[0]}


def graph_benchmark(wildcards):
    """Benchmark file of the analysis's graph build (absent: built by another workflow)."""
    return str(rules.build_graph.benchmark).format(spec=_spec(wildcards))


def nlsq_states(wildcards):
    """Every NLSQ pass state of the analysis, in pass order (checkpoints)."""
    count = read_state(final_nlsq_state(wildcards))["iteration"] + 1
    prefix = f"results/{wildcards.analysis}/nlsq"
    return [f"{prefix}/pass{k}/state.json" for k in range(count)]


def nlsq_plot_inputs(wildcards):
    """The fit and its pass states."""
    fit = f"results/{wildcards.analysis}/nlsq/fit.json"
    return {"fit": fit, "states": nlsq_states(wildcards)}


def posterior_plot_inputs(wildcards):
    """The shard posterior files, the consensus draws and summary, and the NLSQ fit."""
    a = wildcards.analysis
    return {
        "shards": consensus_inputs(wildcards)["shards"],
        "consensus": f"results/{a}/cmc/consensus.h5",
        "fit": f"results/{a}/nlsq/fit.json",
    }


def fit_plot_inputs(wildcards):
    """Observations, fit, model files and, with cmc.enabled, the consensus draws."""
    a = wildcards.analysis
    files = {
        "observations": f"results/{a}/data/observations.h5",
        "fit": f"results/{a}/nlsq/fit.json",
        **_model_files(wildcards),
    }
    if ANALYSES[a]["cmc"]["enabled"]:
        files["consensus"] = f"results/{a}/cmc/consensus.h5"
    return files


def timing_inputs(wildcards):
    """The analysis's last outputs (so the table comes last) and the checkpoints whose
    outputs decide which jobs ran (trace plan, NLSQ passes, shard plan)."""
    a = wildcards.analysis
    files = {
        "plan": checkpoints.plan_trace.get(spec=_spec(wildcards)).output.plan,
        **final_state_inputs(wildcards),
        "fit": f"results/{a}/nlsq/fit.json",
    }
    if ANALYSES[a]["cmc"]["enabled"]:
        files["shard_plan"] = checkpoints.plan_shards.get(analysis=a).output.plan
        files.update(_posterior_summary(wildcards))
    return files


def timing_benchmarks(wildcards):
    """Rule → benchmark files of every job of the analysis (those of rules that declare
    `benchmark:` and whose wildcard constraints admit the analysis: fit_sole_nlsq or
    accumulate_chunk), in workflow order; a missing file is a job its outputs came from
    the cache for."""
    a = wildcards.analysis
    cmc = ANALYSES[a]["cmc"]["enabled"]
    spec = _spec(wildcards)
    plan = checkpoints.plan_trace.get(spec=spec).output.plan
    passes = len(nlsq_states(wildcards))
    chunks = ANALYSES[a]["chunks"]
    keys = {
        ("spec",): [{"spec": spec}],
        ("unit",): [{"unit": u.key} for u in read_plan(plan)[0]],
        ("analysis",): [{"analysis": a}],
        ("analysis", "step"): [{"analysis": a, "step": k} for k in range(passes)],
        ("analysis", "chunk", "step"): [
            {"analysis": a, "step": k, "chunk": c}
            for k in range(passes)
            for c in range(chunks)
        ],
    }
    if cmc:
        shard_plan = checkpoints.plan_shards.get(analysis=a).output.plan
        count = read_shard_plan(shard_plan)["shards"]
        keys[("analysis", "parts", "shard")] = [
            {"analysis": a, "parts": count, "shard": s} for s in range(count)
        ]
    files, seen = {}, set()
    for each in workflow.rules:
        names = tuple(sorted(each.wildcard_names))
        if each.benchmark is None or names not in keys:
            continue
        if not cmc and any("/cmc/" in str(o) for o in each.output):
            continue  # a posterior rule of an analysis without posterior
        allowed = each.wildcard_constraints.get("analysis")
        if allowed and not re.fullmatch(getattr(allowed, "pattern", str(allowed)), a):
            continue  # a rule of the other kind of analysis (one or several chunks)
        pattern = str(getattr(rules, each.name).benchmark)  # without the constraints
        if pattern in seen:
            continue  # one file pattern, listed once
        seen.add(pattern)
        files[each.name] = [pattern.format(**k) for k in keys[names]]
    return files
