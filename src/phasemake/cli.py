"""The ``phasemake`` command line: hash specs, build graphs, manage the cache.

Examples
--------
::

    phasemake hash models/my_model.py:coalescent --param n=10
    phasemake hash phasemake.models:two_deme --param n1=3 --param n2=2 --explain
    phasemake build phasemake.models:block_counting --param n=30 --cache cache
    phasemake cache stats --cache cache
    phasemake cache verify --cache cache --remove-invalid
    phasemake cache clear --cache cache [--spec SPEC ...]
    phasemake check [--configfile my.yaml] [--workflow path/to/phasemake]
    phasemake summary [ANALYSIS ...] [--results results]
    phasemake export ANALYSIS [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from phasemake._version import __version__
from phasemake.core.errors import PhasemakeError
from phasemake.graph.build import DEFAULT_MAX_STATES
from phasemake.graph.cache import GraphCache
from phasemake.graph.resolve import load_model
from phasemake.graph.spechash import explain_spec, spec_hash

__all__ = ["main", "parse_params"]


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``k=v`` strings; values are YAML scalars (``10`` is an int, ``10.0`` a float).

    Examples
    --------
    >>> parse_params(["n=10", "size=10.0", "label=abc", "ns=[1, 2]"])
    {'n': 10, 'size': 10.0, 'label': 'abc', 'ns': [1, 2]}
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise PhasemakeError(f"--param {item!r} must look like name=value, e.g. n=10")
        if key in params:
            raise PhasemakeError(f"--param {key} is given twice")
        params[key] = yaml.safe_load(raw)
    return params


def _model_and_params(args: argparse.Namespace):
    """The model and its ``--param`` values, checked as the workflow checks a config's."""
    from phasemake.configcheck import check_model_params

    model = load_model(args.callback)
    params = parse_params(args.param)
    check_model_params(model.name, model, params, where="--param")
    return model, params


def _cmd_hash(args: argparse.Namespace) -> int:
    model, params = _model_and_params(args)
    t0 = time.perf_counter()
    if args.explain:
        spec, trail = explain_spec(model, **params)
        for where, digest in trail:
            print(f"{digest}  {where}")
    else:
        spec = spec_hash(model, **params)
    elapsed = time.perf_counter() - t0
    print(spec)
    if args.timing:
        print(f"hashed in {elapsed * 1e3:.3f} ms", file=sys.stderr)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    model, params = _model_and_params(args)
    cache = GraphCache(args.cache)
    graph = cache.load_or_build(model, max_states=args.max_states, **params)
    print(cache.graph_path(spec_hash(model, **params)))
    print(graph.summary())
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    cache = GraphCache(args.cache)
    if args.action == "stats":
        entries = cache.entries()
        total = sum(e.bytes for e in entries)
        print(f"{cache.graph_dir}: {len(entries)} graphs, {total / 1e6:.2f} MB")
        for e in entries:
            print(
                f"  {e.spec}  {e.model:<16} {e.vertices:>10} vertices {e.edges:>11} edges "
                f"{e.bytes / 1e6:>9.2f} MB  params={e.params}"
            )
        traces, units = cache.trace_files()
        for label, files in (("traces", traces), ("trace units", units)):
            size = sum(p.stat().st_size for p in files)
            print(f"{cache.trace_dir}: {len(files)} {label}, {size / 1e6:.2f} MB")
        return 0
    if args.action == "verify":
        bad = 0
        for path, problem in cache.verify():
            if problem is None:
                print(f"ok       {path}")
                continue
            bad += 1
            print(f"INVALID  {problem}")
            if args.remove_invalid:
                path.unlink(missing_ok=True)
                print(f"removed  {path}")
        print(f"{bad} invalid file(s)")
        return 1 if bad and not args.remove_invalid else 0
    removed = cache.clear(args.spec or None)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} file(s) removed")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import os

    from phasemake.configcheck import check_config_path
    from phasemake.workflow import count_states

    schema = os.path.join(args.workflow, "config", "config.schema.yaml")
    if not os.path.isfile(schema):
        raise PhasemakeError(
            f"no phasemake workflow in {os.path.abspath(args.workflow)!r} (it has no "
            "config/config.schema.yaml); run this in the workflow's folder or pass "
            "--workflow path/to/phasemake"
        )
    path = args.configfile or os.path.join(args.workflow, "config", "config.yaml")
    start = time.perf_counter()
    config, models = check_config_path(path, schema_path=schema)
    for name, m in models.items():
        n = count_states(m, bound=args.states)
        size = f"{n} states" if n is not None else f"more than {args.states} states (not counted)"
        print(f"model {name}: {m.callback} {m.params} -> spec {m.spec}, {size}")
    for name, a in config["analyses"].items():
        data = a["data"]
        source = data["file"] if "file" in data else "simulated"
        cmc = "posterior" if a["cmc"]["enabled"] else "no posterior"
        print(
            f"analysis {name}: {a['observations']} of model {a['model']} from {source}, "
            f"{a['chunks']} chunk(s), {cmc}"
        )
    print(f"{path}: OK ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from phasemake.report.summary import find_results, summary_text

    print(summary_text(find_results(args.results, analyses=args.analysis)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from phasemake.report.summary import export_analysis

    for path in export_analysis(args.analysis, results=args.results, out=args.out):
        print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasemake", description="Phase-type model graphs, traces and inference."
    )
    parser.add_argument("--version", action="version", version=f"phasemake {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("callback", help="FILE.py:NAME or package.module:NAME")
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="K=V",
            help="construction param (YAML value: 10 is an int, 10.0 a float); repeatable",
        )

    p_hash = sub.add_parser("hash", help="print the spec hash of a model and its params")
    model_args(p_hash)
    p_hash.add_argument("--explain", action="store_true", help="list hashed dependencies")
    p_hash.add_argument("--timing", action="store_true", help="print the hashing time")
    p_hash.set_defaults(func=_cmd_hash)

    p_build = sub.add_parser("build", help="build (or load) a graph into the cache")
    model_args(p_build)
    p_build.add_argument("--cache", default="cache", help="cache directory (default: cache)")
    p_build.add_argument("--max-states", type=int, default=DEFAULT_MAX_STATES)
    p_build.set_defaults(func=_cmd_build)

    p_cache = sub.add_parser("cache", help="report on and manage the graph and trace cache")
    p_cache.add_argument("action", choices=["stats", "verify", "clear"])
    p_cache.add_argument("--cache", default="cache", help="cache directory (default: cache)")
    p_cache.add_argument(
        "--remove-invalid", action="store_true", help="verify: delete invalid files"
    )
    p_cache.add_argument(
        "--spec", action="append", default=[], help="clear: only these specs (repeatable)"
    )
    p_cache.set_defaults(func=_cmd_cache)

    p_check = sub.add_parser(
        "check", help="run the workflow's parse-time checks of a config, in seconds"
    )
    p_check.add_argument(
        "--configfile", default=None, help="the config (default: WORKFLOW/config/config.yaml)"
    )
    p_check.add_argument(
        "--workflow", default=".", help="the workflow folder, for its config schema"
    )
    p_check.add_argument(
        "--states",
        type=int,
        default=20_000,
        help="explore each model's graph up to this many states (default: 20000)",
    )
    p_check.set_defaults(func=_cmd_check)

    p_summary = sub.add_parser(
        "summary", help="estimates, intervals and status of the analyses, as a table"
    )
    p_summary.add_argument("analysis", nargs="*", help="analyses to show (default: all)")
    p_summary.add_argument("--results", default="results", help="results folder")
    p_summary.set_defaults(func=_cmd_summary)

    p_export = sub.add_parser(
        "export", help="write an analysis's estimates and draws as CSV and NetCDF"
    )
    p_export.add_argument("analysis", help="the analysis (its folder under --results)")
    p_export.add_argument("--results", default="results", help="results folder")
    p_export.add_argument(
        "--out", default=None, help="output folder (default: results/ANALYSIS/export)"
    )
    p_export.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phasemake`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except PhasemakeError as err:
        print(f"phasemake: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
