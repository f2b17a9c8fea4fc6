"""phasemake: phase-type model inference at scale, from a Python callback to posteriors.

Examples
--------
>>> import phasemake
>>> from phasemake.models import kingman
>>> graph = phasemake.build_graph(kingman, n=10)
>>> round(phasemake.expected_time(graph, [1.0]), 12)   # 2 (1 - 1/n)
1.8
"""

from ._version import __version__
from .artefact import atomic_path, read_artefact, write_artefact
from .cache import CacheEntry, GraphCache
from .canonical import encode as canonical_encode
from .dense import expected_rewards, expected_time, sub_intensity
from .errors import (
    ArtefactError,
    DataError,
    GraphBuildError,
    ModelError,
    PhasemakeError,
    SpecHashError,
)
from .graph import DEFAULT_MAX_STATES, Graph, build_graph
from .graphfile import read_graph, write_graph
from .model import Model, model
from .resolve import load_model
from .spechash import GRAPH_FORMAT_VERSION, explain_spec, spec_hash
from .trace import UnitPlan, plan_units, record_unit, stitch_units

# The JAX side (evaluator, trace files) is imported on first use, so that jobs that only
# build graphs or record trace units do not pay for importing JAX.
_LAZY = {
    "Trace": "evaluator",
    "claim_path": "tracefile",
    "claim_unit": "tracefile",
    "read_claim": "tracefile",
    "compile_trace": "tracefile",
    "load_trace": "tracefile",
    "read_plan": "tracefile",
    "read_unit": "tracefile",
    "stitch_trace_files": "tracefile",
    "write_plan": "tracefile",
    "write_trace": "tracefile",
    "write_unit": "tracefile",
    "ObservationModel": "obsmodel",
    "LMSettings": "nlsq",
    "fit_in_memory": "nlsq",
    "Observations": "observations",
    "read_data_file": "observations",
    "simulate_absorption_times": "observations",
    "simulate_sfs": "observations",
    "NUTSSettings": "sampling",
    "ShardQualityError": "sampling",
    "sample_nuts": "sampling",
    "log_prior": "priors",
    "combine": "consensus",
    "to_arviz": "consensus",
    "importance_refine": "refine",
    "absorption_fit_figure": "fitfigures",
    "marginals_figure": "figures",
    "nlsq_figure": "figures",
    "pair_figure": "figures",
    "save_figure": "figures",
    "sfs_fit_figure": "fitfigures",
    "trace_figure": "figures",
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
    "expected_rewards",
    "expected_time",
    "explain_spec",
    "fit_in_memory",
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
