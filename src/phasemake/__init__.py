"""phasemake: phase-type model inference at scale, from a Python callback to posteriors.

Examples
--------
>>> import phasemake
>>> from phasemake.models import kingman
>>> graph = phasemake.build_graph(kingman, n=10)
>>> round(phasemake.expected_time(graph, [1.0]), 12)   # 2 (1 - 1/n)
1.8
"""

from phasemake._version import __version__
from phasemake.core.artefact import atomic_path, read_artefact, write_artefact
from phasemake.core.canonical import encode as canonical_encode
from phasemake.core.errors import (
    ArtefactError,
    DataError,
    GraphBuildError,
    ModelError,
    PhasemakeError,
    SpecHashError,
)
from phasemake.graph.build import DEFAULT_MAX_STATES, Graph, build_graph
from phasemake.graph.cache import CacheEntry, GraphCache
from phasemake.graph.files import read_graph, write_graph
from phasemake.graph.model import Model, model
from phasemake.graph.resolve import load_model
from phasemake.graph.spechash import GRAPH_FORMAT_VERSION, explain_spec, spec_hash
from phasemake.trace.dense import expected_rewards, expected_time, sub_intensity
from phasemake.trace.units import UnitPlan, plan_units, record_unit, stitch_units

# The JAX side (evaluator, trace files) is imported on first use, so that jobs that only
# build graphs or record trace units do not pay for importing JAX.
_LAZY = {
    "Trace": "trace.evaluator",
    "EpochTrace": "trace.epochtrace",
    "epochs": "trace.epochs",
    "from_demes": "graph.demes",
    "claim_path": "trace.files",
    "claim_unit": "trace.files",
    "read_claim": "trace.files",
    "compile_trace": "trace.files",
    "load_trace": "trace.files",
    "read_plan": "trace.files",
    "read_unit": "trace.files",
    "stitch_trace_files": "trace.files",
    "write_plan": "trace.files",
    "write_trace": "trace.files",
    "write_unit": "trace.files",
    "ObservationModel": "data.obsmodel",
    "LMSettings": "fit.nlsq",
    "fit_in_memory": "fit.nlsq",
    "Observations": "data.observations",
    "read_data_file": "data.datafiles",
    "simulate_absorption_times": "data.simulation",
    "simulate_sfs": "data.simulation",
    "NUTSSettings": "posterior.sampling",
    "ShardQualityError": "posterior.sampling",
    "sample_nuts": "posterior.sampling",
    "log_prior": "posterior.priors",
    "combine": "posterior.consensus",
    "to_arviz": "posterior.consensus",
    "importance_refine": "posterior.refine",
    "absorption_fit_figure": "report.fitfigures",
    "marginals_figure": "report.figures",
    "nlsq_figure": "report.figures",
    "pair_figure": "report.figures",
    "save_figure": "report.figures",
    "sfs_fit_figure": "report.fitfigures",
    "trace_figure": "report.figures",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phasemake' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_STATES",
    "GRAPH_FORMAT_VERSION",
    "ArtefactError",
    "CacheEntry",
    "DataError",
    "EpochTrace",
    "Graph",
    "GraphBuildError",
    "GraphCache",
    "LMSettings",
    "Model",
    "ModelError",
    "NUTSSettings",
    "ObservationModel",
    "Observations",
    "PhasemakeError",
    "ShardQualityError",
    "SpecHashError",
    "Trace",
    "UnitPlan",
    "__version__",
    "absorption_fit_figure",
    "atomic_path",
    "build_graph",
    "canonical_encode",
    "claim_path",
    "claim_unit",
    "combine",
    "compile_trace",
    "epochs",
    "expected_rewards",
    "expected_time",
    "explain_spec",
    "fit_in_memory",
    "from_demes",
    "importance_refine",
    "load_model",
    "load_trace",
    "log_prior",
    "marginals_figure",
    "model",
    "nlsq_figure",
    "pair_figure",
    "plan_units",
    "read_artefact",
    "read_data_file",
    "read_graph",
    "read_plan",
    "read_unit",
    "record_unit",
    "sample_nuts",
    "save_figure",
    "sfs_fit_figure",
    "simulate_absorption_times",
    "simulate_sfs",
    "spec_hash",
    "stitch_trace_files",
    "stitch_units",
    "sub_intensity",
    "to_arviz",
    "trace_figure",
    "write_artefact",
    "write_graph",
    "write_plan",
    "write_trace",
    "write_unit",
]
