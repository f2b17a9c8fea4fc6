"""Spec hashing: each case is a pair of model files differing in exactly one way.

``same`` pairs must hash equal (the graph cannot differ); ``differ`` pairs must hash
differently (the graph could differ). Rejections must name the offending value.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest

import phasemake
from phasemake import SpecHashError, spec_hash
from phasemake.models import block_counting, kingman, two_deme

BASE = '''
import phasemake
from helpers import step_rate

SCALE = 1.0


def mig_rate(k):
    return k * SCALE


@phasemake.model(parameters=["coal", "mig"], initial=lambda n: [n, 0])
def cb(state, n):
    """Two demes."""
    a, b = state.tolist()
    if a + b < 2:
        return []
    out = []
    if a >= 2:
        out.append(([a - 1, b], (step_rate(a), 0.0)))
    if a >= 1:
        out.append(([a - 1, b + 1], (0.0, mig_rate(a))))
    if b >= 1:
        out.append(([a + 1, b - 1], (0.0, mig_rate(b))))
    return out
'''

HELPERS = '''
from deep import pairs


def step_rate(k):
    """Pairs of k lineages."""
    return pairs(k)
'''

DEEP = """
def pairs(k):
    return k * (k - 1) / 2
"""


def variant(model=BASE, helpers=HELPERS, deep=DEEP) -> dict[str, str]:
    return {"model.py": model, "helpers.py": helpers, "deep.py": deep}


def test_identical_files_hash_equal(model_files):
    assert model_files.spec(variant(), n=3) == model_files.spec(variant(), n=3)


# --- edits that cannot change the graph --------------------------------------------------

SAME_EDITS = {
    "formatting": BASE.replace(
        "out.append(([a - 1, b], (step_rate(a), 0.0)))",
        "out.append(  (  [a - 1,\n                   b], (step_rate( a ), 0.0) ) )",
    ).replace("SCALE = 1.0", "SCALE  =  (1.0)"),
    "comments": BASE.replace("    out = []", "    # start empty\n    out = []  # list")
    + "\n# trailing comment\n",
    "docstrings": BASE.replace('"""Two demes."""', '"""Two demes, edited."""').replace(
        "def mig_rate(k):\n", 'def mig_rate(k):\n    """Added docstring."""\n'
    ),
    "callback renamed": BASE.replace("def cb(", "def other_name(") + "\ncb = other_name\n",
}


@pytest.mark.parametrize("case", sorted(SAME_EDITS))
def test_edits_that_cannot_change_the_graph(model_files, case):
    base = model_files.spec(variant(), n=3)
    assert model_files.spec(variant(model=SAME_EDITS[case]), n=3) == base


def test_helper_docstring_and_comment_edits_do_not_count(model_files):
    base = model_files.spec(variant(), n=3)
    helpers = HELPERS.replace('"""Pairs of k lineages."""', '"""Edited."""  # note')
    deep = "# a comment\n" + DEEP.replace("def pairs(k):", 'def pairs(k):\n    """doc"""')
    assert model_files.spec(variant(helpers=helpers, deep=deep), n=3) == base


def test_construction_param_order_does_not_count():
    assert spec_hash(two_deme, n1=2, n2=3) == spec_hash(two_deme, n2=3, n1=2)


# --- edits that could change the graph ---------------------------------------------------

DIFFER_EDITS = {
    "callback logic": variant(model=BASE.replace("if a >= 1:", "if a > 1:")),
    "same-module helper": variant(model=BASE.replace("return k * SCALE", "return k * SCALE * 2")),
    "module constant": variant(model=BASE.replace("SCALE = 1.0", "SCALE = 2.0")),
    "imported helper": variant(helpers=HELPERS.replace("return pairs(k)", "return pairs(k) + 0")),
    "helper of helper (recursive)": variant(deep=DEEP.replace("k - 1", "k - 2")),
    "declared parameters": variant(model=BASE.replace('["coal", "mig"]', '["coal", "m"]')),
    "parameter order": variant(model=BASE.replace('["coal", "mig"]', '["mig", "coal"]')),
    "initial distribution": variant(model=BASE.replace("lambda n: [n, 0]", "lambda n: [0, n]")),
    "default argument": variant(
        model=BASE.replace("def cb(state, n):", "def cb(state, n, unused=1):")
    ),
}


@pytest.mark.parametrize("case", sorted(DIFFER_EDITS))
def test_edits_that_could_change_the_graph(model_files, case):
    base = model_files.spec(variant(), n=3)
    assert model_files.spec(DIFFER_EDITS[case], n=3) != base


def test_default_argument_value(model_files):
    model = BASE.replace("def cb(state, n):", "def cb(state, n, scale=1.0):")
    one = model_files.spec(variant(model=model), n=3)
    two = model_files.spec(variant(model=model.replace("scale=1.0", "scale=1.5")), n=3)
    assert one != two


def test_constant_read_by_helper_in_other_module_through_attribute(model_files):
    model = BASE.replace("from helpers import step_rate", "import helpers\nstep_rate = None")
    model = model.replace("step_rate(a)", "helpers.step_rate(a) * helpers.FACTOR")
    one = model_files.spec(variant(model=model, helpers=HELPERS + "\nFACTOR = 1\n"), n=3)
    two = model_files.spec(variant(model=model, helpers=HELPERS + "\nFACTOR = 2\n"), n=3)
    assert one != two


CLOSURE = """
import phasemake


def make(scale):
    @phasemake.model(parameters=["coal"], initial=[3])
    def cb(state, n):
        k = int(state[0])
        return [([k - 1], (scale * k * (k - 1) / 2,))] if k > 1 else []

    return cb


cb = make(SCALE)
"""


def test_decorated_closure_captured_value(model_files):
    # phasic returns the cached graph here: the captured value is not part of its hash
    one = model_files.spec({"model.py": CLOSURE.replace("SCALE", "1.0")}, n=3)
    two = model_files.spec({"model.py": CLOSURE.replace("SCALE", "2.0")}, n=3)
    assert one != two


def test_initial_function_body(model_files):
    model = BASE.replace("lambda n: [n, 0]", "start").replace(
        "SCALE = 1.0", "SCALE = 1.0\n\n\ndef start(n):\n    return [n, 0]"
    )
    one = model_files.spec(variant(model=model), n=3)
    two = model_files.spec(variant(model=model.replace("return [n, 0]", "return [0, n]")), n=3)
    assert one != two


def test_construction_params_are_typed():
    assert spec_hash(kingman, n=10) != spec_hash(kingman, n=11)
    assert spec_hash(two_deme, n1=2, n2=2) != spec_hash(two_deme, n1=2, n2=2, relative_size=1.0)
    assert spec_hash(two_deme, n1=2, n2=2, relative_size=1) != spec_hash(
        two_deme, n1=2, n2=2, relative_size=1.0
    )


def test_numpy_params_by_dtype_shape_and_bytes():
    a = np.arange(4, dtype=np.int64)
    base = spec_hash(kingman, n=4, table=a)
    assert spec_hash(kingman, n=4, table=a.copy()) == base
    assert spec_hash(kingman, n=4, table=a.astype(np.int32)) != base
    assert spec_hash(kingman, n=4, table=a.reshape(2, 2)) != base
    assert spec_hash(kingman, n=4, table=a + 1) != base


def test_graph_format_version(monkeypatch):
    base = spec_hash(kingman, n=4)
    monkeypatch.setattr(phasemake.graph.spechash, "GRAPH_FORMAT_VERSION", 2)
    assert spec_hash(kingman, n=4) != base


def test_hashing_never_calls_the_callback(model_files):
    model = BASE.replace('    """Two demes."""', '    raise RuntimeError("called")')
    assert len(model_files.spec(variant(model=model), n=3)) == 32


def test_mutual_recursion_terminates(model_files):
    model = BASE.replace(
        "def mig_rate(k):\n    return k * SCALE",
        "def mig_rate(k):\n    return k * SCALE if k < 5 else other(k)\n\n\n"
        "def other(k):\n    return mig_rate(k - 1)",
    )
    assert len(model_files.spec(variant(model=model), n=3)) == 32


def test_builtin_models_hash_stably():
    assert spec_hash(block_counting, n=5) == spec_hash(block_counting, n=5)
    assert len({spec_hash(m, n=5) for m in (kingman, block_counting)}) == 2


# --- rejections ---------------------------------------------------------------------------


def test_rejects_source_unavailable():
    namespace: dict = {"phasemake": phasemake}
    exec(
        "@phasemake.model(parameters=['coal'], initial=[2])\n"
        "def dynamic(state, n):\n    return []\n",
        namespace,
    )
    with pytest.raises(SpecHashError, match=r"source of model .dynamic.*unavailable"):
        spec_hash(namespace["dynamic"], n=2)


def test_rejects_unencodable_captured_object(model_files):
    text = CLOSURE.replace("SCALE", "Opaque()").replace(
        "import phasemake", "import phasemake\n\n\nclass Opaque:\n    pass\n"
    )
    text = text.replace("make(Opaque())", "make(__import__('threading').Lock())")
    with pytest.raises(SpecHashError, match=r"captured variable 'scale'.*lock"):
        model_files.spec({"model.py": text}, n=3)


def test_rejects_unencodable_module_global(model_files):
    model = BASE.replace("SCALE = 1.0", "import threading\n\nSCALE = threading.Lock()")
    with pytest.raises(SpecHashError, match="SCALE"):
        model_files.spec(variant(model=model), n=3)


@pytest.mark.parametrize("call", ["eval('1')", "exec('x = 1')"])
def test_rejects_eval_and_exec(model_files, call):
    model = BASE.replace("    out = []", f"    {call}\n    out = []")
    with pytest.raises(SpecHashError, match=r"(eval|exec)\(\)"):
        model_files.spec(variant(model=model), n=3)


def test_rejects_eval_in_a_helper(model_files):
    helpers = HELPERS.replace("return pairs(k)", "return eval('pairs(k)')")
    with pytest.raises(SpecHashError, match=r"step_rate.*eval\(\)"):
        model_files.spec(variant(helpers=helpers), n=3)


def test_rejects_undecorated_callback():
    with pytest.raises(phasemake.ModelError, match="not a phasemake model"):
        spec_hash(kingman.callback, n=3)


def test_rejects_unencodable_construction_param():
    with pytest.raises(SpecHashError, match="construction params"):
        spec_hash(kingman, n=object())


@contextlib.contextmanager
def isolated_imports():
    """Forget the modules and sys.path entries a model load adds (as ModelFiles.spec does),
    so that a later test imports its own ``helpers``."""
    before, path_before = set(sys.modules), list(sys.path)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]
        sys.path[:] = path_before


def test_explain_lists_dependencies(model_files):
    folder = model_files.write(variant())
    with isolated_imports():
        model = phasemake.load_model("model.py:cb", base_dir=folder)
        spec, trail = phasemake.explain_spec(model, n=3)
    where = " ".join(w for w, _ in trail)
    assert spec == spec_hash(model, n=3)
    for name in ("SCALE", "step_rate", "pairs", "mig_rate"):
        assert name in where


# --- dynamic routes to code: rejected wherever they are reached, or followed ---------------

DYNAMIC_ROUTES = {
    "builtins.eval": ("import builtins", "builtins.eval('1')"),
    "alias EV = eval": ("EV = eval", "EV('1')"),
    "getattr(builtins, computed)": ("import builtins", 'getattr(builtins, "ev" + "al")("1")'),
    "vars(builtins)[...]": ("import builtins", 'vars(builtins)["eval"]("1")'),
    "globals()[...]": ("", 'globals()["SCALE"]'),
    "locals()": ("", "locals()"),
    "sys.modules[...]": ("import sys", 'sys.modules["helpers"].step_rate(a)'),
    "from sys import modules": ("from sys import modules", 'modules["helpers"]'),
    "import_module(computed)": ("import importlib", 'importlib.import_module("help" + "ers")'),
    "import_module result kept": ("import importlib", 'm = importlib.import_module("helpers")'),
    "import_module alias, computed": (
        "from importlib import import_module as imp",
        'imp("help" + "ers").step_rate(a)',
    ),
    "__import__ alias": ("IMP = __import__", 'IMP("helpers")'),
    "from builtins import exec": ("from builtins import exec as run", 'run("x = 1")'),
    "__builtins__": ("", '__builtins__["eval"]'),
    ".__globals__": ("", "mig_rate.__globals__"),
    ".__dict__": ("import helpers as hm", 'hm.__dict__["step_rate"]'),
    "getattr(module, computed)": ("import helpers as hm", 'getattr(hm, "step_" + "rate")(a)'),
    "compile alias": ("C = compile", 'C("1", "f", "eval")'),
    "sys._getframe": ("import sys", "sys._getframe(0)"),
}


@pytest.mark.parametrize("case", sorted(DYNAMIC_ROUTES))
def test_rejects_every_dynamic_route_to_code(model_files, case):
    header, line = DYNAMIC_ROUTES[case]
    model = BASE.replace("SCALE = 1.0", f"{header}\n\nSCALE = 1.0").replace(
        "    out = []", f"    {line}\n    out = []"
    )
    with pytest.raises(SpecHashError, match=r"model 'cb'.*line \d+.*cannot be hashed"):
        model_files.spec(variant(model=model), n=3)


def test_rejects_dynamic_route_in_a_helper_module(model_files):
    helpers = "import builtins\n" + HELPERS.replace(
        "return pairs(k)", 'return getattr(builtins, "ev" + "al")("pairs(k)")'
    )
    with pytest.raises(SpecHashError, match=r"step_rate.*line \d+"):
        model_files.spec(variant(helpers=helpers), n=3)


@pytest.mark.parametrize(
    "how",
    [
        "def cb(state, n, ev=eval):",  # default argument
        "def cb(state, n, *, ev=eval):",  # keyword default
    ],
)
def test_rejects_eval_as_a_default_argument(model_files, how):
    model = BASE.replace("def cb(state, n):", how)
    with pytest.raises(SpecHashError, match=r"eval\(\).*cannot be hashed"):
        model_files.spec(variant(model=model), n=3)


def test_rejects_eval_captured_by_a_closure(model_files):
    text = CLOSURE.replace("make(SCALE)", "make(eval)")
    with pytest.raises(SpecHashError, match=r"captured variable 'scale'.*eval\(\)"):
        model_files.spec({"model.py": text}, n=3)


def test_rejects_eval_as_a_class_attribute(model_files):
    model = BASE.replace(
        "SCALE = 1.0", "class Ops:\n    run = staticmethod(eval)\n\n\nSCALE = 1.0"
    ).replace("    out = []", "    Ops.run('1')\n    out = []")
    with pytest.raises(SpecHashError, match=r"Ops.run.*eval\(\)"):
        model_files.spec(variant(model=model), n=3)


STATIC_LOOKALIKES = {
    "module attribute by constant chain": ("import sys", "sys.maxsize"),
    "builtins.len by chain": ("import builtins", "builtins.len([a])"),
    "getattr with a constant name on a module": ("import helpers as hm", 'getattr(hm, "pairs")'),
    "getattr with a computed name on a local": ("", 'getattr(state, "sh" + "ape")'),
    "a local named vars": ("", "vars = [a, b]"),
}


@pytest.mark.parametrize("case", sorted(STATIC_LOOKALIKES))
def test_static_lookalikes_are_accepted(model_files, case):
    header, line = STATIC_LOOKALIKES[case]
    model = BASE.replace("SCALE = 1.0", f"{header}\n\nSCALE = 1.0").replace(
        "    out = []", f"    {line}\n    out = []"
    )
    assert len(model_files.spec(variant(model=model), n=3)) == 32


IMPORT_MODULE = """
import importlib

import phasemake


@phasemake.model(parameters=["coal"], initial=lambda n: [n])
def cb(state, n):
    k = int(state[0])
    if k < 2:
        return []
    return [([k - 1], (importlib.import_module("helper_rate").RATE * k * (k - 1) / 2,))]
"""


@pytest.mark.parametrize(
    "model",
    [
        IMPORT_MODULE,
        IMPORT_MODULE.replace(
            "import importlib\n", "from importlib import import_module\n"
        ).replace("importlib.import_module(", "import_module("),
    ],
)
def test_import_module_with_a_constant_name_is_followed(model_files, model):
    one = model_files.spec({"model.py": model, "helper_rate.py": "RATE = 1\n"}, n=4)
    same = model_files.spec({"model.py": model, "helper_rate.py": "# note\nRATE = 1\n"}, n=4)
    seven = model_files.spec({"model.py": model, "helper_rate.py": "RATE = 7\n"}, n=4)
    assert one == same
    assert one != seven


def test_import_module_of_a_missing_module_is_rejected(model_files):
    with pytest.raises(SpecHashError, match=r"helper_rate.*importing.*failed"):
        model_files.spec({"model.py": IMPORT_MODULE}, n=4)


def test_graph_cache_never_returns_a_graph_built_with_an_old_helper(model_files, tmp_path):
    """The issue's stale graph: a helper reached through importlib.import_module."""
    from phasemake.graph.cache import GraphCache

    cache = GraphCache(tmp_path / "cache")

    def coefficients(rate: int) -> list[float]:
        files = {"model.py": IMPORT_MODULE, "helper_rate.py": f"RATE = {rate}\n"}
        folder = model_files.write(files)
        with isolated_imports():
            model = phasemake.load_model("model.py:cb", base_dir=folder)
            graph = cache.load_or_build(model, n=4)
        return sorted(graph.edge_coef[:, 0].tolist(), reverse=True)

    assert coefficients(1) == [6.0, 3.0, 1.0]
    assert coefficients(7) == [42.0, 21.0, 7.0]
    assert len(cache.entries()) == 2


def test_rejects_params_beyond_the_encoding_limits():
    bomb: list = ["x"] * 10
    for _ in range(8):
        bomb = [bomb] * 10  # 10^9 leaves, shared like YAML aliases
    with pytest.raises(SpecHashError, match=r"more than \d+ elements"):
        spec_hash(kingman, n=4, bomb=bomb)
