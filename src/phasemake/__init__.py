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

__all__ = [
    "DEFAULT_MAX_STATES",
    "GRAPH_FORMAT_VERSION",
    "ArtefactError",
    "CacheEntry",
    "Graph",
    "GraphBuildError",
    "GraphCache",
    "Model",
    "ModelError",
    "PhasemakeError",
    "SpecHashError",
    "__version__",
    "atomic_path",
    "build_graph",
    "canonical_encode",
    "expected_rewards",
    "expected_time",
    "explain_spec",
    "load_model",
    "model",
    "read_artefact",
    "read_graph",
    "spec_hash",
    "sub_intensity",
    "write_artefact",
    "write_graph",
]
