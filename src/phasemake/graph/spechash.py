"""Spec hashing: a content hash of everything a model's graph depends on.

The hash covers the callback's normalised AST (formatting, comments and docstrings do not
count), every global it reads — followed recursively through user helper functions, classes
and modules —, captured closure values, default arguments, the declared parameters and
initial distribution, the construction params (canonically encoded) and the graph-format
version. Nothing is built to compute it. Anything that cannot be hashed safely is rejected
with a :class:`~phasemake.core.errors.SpecHashError` rather than ignored, so a cached graph is
never returned for a model that changed.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import importlib
import importlib.util
import inspect
import linecache
import os
import runpy
import site
import struct
import sys
import sysconfig
import textwrap
import types
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from phasemake.core.canonical import EncodingLimitExceeded, UnencodableValue, encode
from phasemake.core.errors import SpecHashError
from phasemake.graph.model import Model, as_model

__all__ = ["GRAPH_FORMAT_VERSION", "explain_spec", "spec_hash"]

#: Version of the graph semantics and file layout; part of every spec hash.
GRAPH_FORMAT_VERSION = 1

_FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "__import__"})
_MISSING = object()

#: Objects that reach code or names the hash cannot see, whatever name they are read under
#: (``EV = eval``, ``builtins.eval``, ``from importlib import import_module as imp``), as a
#: global, an attribute of a module, a captured variable, a default argument or a class
#: attribute. Compared by identity.
_DYNAMIC = {
    id(obj): label
    for obj, label in [
        (builtins.eval, "eval()"),
        (builtins.exec, "exec()"),
        (builtins.compile, "compile()"),
        (builtins.__import__, "__import__()"),
        (builtins.globals, "globals()"),
        (builtins.vars, "vars()"),
        (builtins.locals, "locals()"),
        (builtins, "the builtins module itself (any builtin by a computed name)"),
        (importlib, "the importlib module itself"),
        (importlib.util, "the importlib.util module itself"),
        (importlib.import_module, "importlib.import_module()"),
        (importlib.__import__, "importlib.__import__()"),
        (importlib.reload, "importlib.reload()"),
        (importlib.util.spec_from_file_location, "importlib.util.spec_from_file_location()"),
        (importlib.util.module_from_spec, "importlib.util.module_from_spec()"),
        (runpy, "the runpy module"),
        (runpy.run_path, "runpy.run_path()"),
        (runpy.run_module, "runpy.run_module()"),
        (sys, "the sys module itself (sys.modules by a computed name)"),
        (sys.modules, "sys.modules (any module by a computed name)"),
        (sys._getframe, "sys._getframe() (other frames' variables)"),
    ]
}
#: Attributes that reach namespaces or code objects by a computed name.
_DYNAMIC_ATTRS = frozenset(
    {"__dict__", "__globals__", "__builtins__", "__code__", "__closure__", "__subclasses__"}
)
_DYNAMIC_FIX = (
    "code or values reached that way cannot be hashed, so a stale graph could be returned; "
    "read globals by their plain names, import helpers with `import` or `from ... import` "
    "(or `importlib.import_module('constant.name').attr`), and write the logic as ordinary "
    "Python"
)


def _library_roots() -> tuple[str, ...]:
    paths = set(sysconfig.get_paths().values())
    try:
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    except AttributeError:  # site disabled in some embedded interpreters
        pass
    roots = {os.path.realpath(p) for p in paths if p}
    return tuple(sorted(r.rstrip(os.sep) + os.sep for r in roots))


_LIB_ROOTS = _library_roots()


def _is_library_file(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_LIB_ROOTS)


def _is_user_module(module: types.ModuleType) -> bool:
    if module.__name__.split(".")[0] == "phasemake":
        return True
    filename = getattr(module, "__file__", None)
    return bool(filename) and not _is_library_file(filename)


def _is_user_class(cls: type) -> bool:
    if (cls.__module__ or "").split(".")[0] == "phasemake":
        return True
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if filename is None:
        try:
            filename = inspect.getfile(cls)
        except TypeError:  # built-in class
            return False
    return not _is_library_file(filename)


def _refuse_dynamic(value: Any, what: str) -> None:
    """Raise if ``value`` is one of the dynamic routes in :data:`_DYNAMIC`."""
    label = _DYNAMIC.get(id(value))
    if label is not None:
        raise SpecHashError(f"{what}, which is {label}: {_DYNAMIC_FIX}")


def _frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def _sha(*parts: bytes) -> bytes:
    return hashlib.sha256(_frame(*parts)).digest()


_DOCSTRING_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _normalised_dump(node: ast.AST) -> bytes:
    """AST dump without positions, comments (never in the AST) or docstrings."""
    for owner in ast.walk(node):
        if isinstance(owner, _DOCSTRING_OWNERS):
            body = owner.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                owner.body = body[1:] or [ast.Pass()]
    return ast.dump(node, annotate_fields=False, include_attributes=False).encode()


@functools.lru_cache(maxsize=256)
def _parse_source(filename: str, text: str) -> ast.Module:
    return ast.parse(text, filename=filename)


def _file_tree(filename: str) -> ast.Module | None:
    lines = linecache.getlines(filename)
    if not lines:
        return None
    return _parse_source(filename, "".join(lines))


class _Call(NamedTuple):
    """A call whose function is a name or an attribute chain rooted at a name."""

    func: tuple[str, ...]
    line: int
    obj: tuple[str, ...] | None  # first argument, when a name or attribute chain
    computed_name: bool  # second argument is not a constant string
    module: str | None  # a single constant-string argument (for import_module)
    tail: tuple[str, ...]  # attributes read from the call's result, e.g. ("RATE",)


class _CodeInfo(NamedTuple):
    dump: bytes
    globals_: frozenset[str]
    bare: frozenset[str]
    chains: tuple[tuple[str, ...], ...]
    lines: dict[str, int]  # first line reading each global root name
    calls: tuple[_Call, ...]
    follows: tuple[_Call, ...]  # calls read as ``f("const").attr``: followed if imports


_CODE_CACHE: dict[types.CodeType, _CodeInfo] = {}


def _global_names(code: types.CodeType) -> set[str]:
    """Names the code may read as globals: ``co_names`` of it and its nested code objects.

    This over-approximates (attribute names are in ``co_names`` too); callers intersect it
    with the names the AST reads bare or as the root of an attribute chain.
    """
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``a.b.c`` as ``("a", "b", "c")``; None unless a name or an attribute chain of one."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, *reversed(attrs)) if isinstance(node, ast.Name) else None


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _call_record(call: ast.Call, tail: tuple[str, ...]) -> _Call | None:
    func = _chain(call.func)
    if func is None:
        return None
    args = call.args
    module = _const_str(args[0]) if len(args) == 1 and not call.keywords else None
    return _Call(
        func=func,
        line=call.lineno,
        obj=_chain(args[0]) if args else None,
        computed_name=len(args) >= 2 and _const_str(args[1]) is None,
        module=module,
        tail=tail,
    )


class _Refs(NamedTuple):
    bare: set[str]
    chains: set[tuple[str, ...]]
    calls: list[ast.Call]
    lines: dict[str, int]
    records: list[_Call]
    follows: list[_Call]
    dynamic_attrs: list[tuple[str, int]]


def _references(node: ast.AST) -> _Refs:
    """Bare names, attribute chains rooted at names, calls, and the line of each name."""
    refs = _Refs(set(), set(), [], {}, [], [], [])

    def seen(name: str, at: ast.AST) -> None:
        line = getattr(at, "lineno", 0)
        refs.lines[name] = min(refs.lines.get(name, line), line)

    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ast.Call):
            refs.calls.append(cur)
            record = _call_record(cur, ())
            if record is not None:
                refs.records.append(record)
        if isinstance(cur, ast.Attribute):
            if cur.attr in _DYNAMIC_ATTRS:
                refs.dynamic_attrs.append((cur.attr, cur.lineno))
            attrs = []
            root: ast.AST = cur
            while isinstance(root, ast.Attribute):
                attrs.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name):
                refs.chains.add((root.id, *reversed(attrs)))
                seen(root.id, root)
                continue
            if isinstance(root, ast.Call):
                follow = _call_record(root, tuple(reversed(attrs)))
                if follow is not None and follow.module is not None:
                    # f("const").attr: import_module is followed like an import (resolved
                    # when hashing); the function's own chain is not a reference here
                    refs.follows.append(follow)
                    refs.calls.append(root)
                    seen(follow.func[0], root)
                    continue
            stack.append(root)
            continue
        if isinstance(cur, ast.Name):
            refs.bare.add(cur.id)
            seen(cur.id, cur)
            continue
        stack.extend(ast.iter_child_nodes(cur))
    return refs


def _find_function_node(fn: types.FunctionType, tree: ast.Module) -> ast.AST | None:
    code = fn.__code__
    line = code.co_firstlineno
    if code.co_name == "<lambda>":
        argnames = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
        cands = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Lambda)
            and n.lineno == line
            and [a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs] == argnames
        ]
        if len(cands) > 1:  # several lambdas on one line: use instruction columns
            cols = {c for (ln, _, c, _) in code.co_positions() if ln == line and c}
            cands = [
                n for n in cands if all(n.col_offset <= c < (n.end_col_offset or 0) for c in cols)
            ]
        return cands[0] if len(cands) == 1 else None
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name:
            first = min([n.lineno] + [d.lineno for d in n.decorator_list])
            if first == line or n.lineno == line:
                return n
    return None


def _code_info(fn: types.FunctionType, where: str) -> _CodeInfo:
    code = fn.__code__
    info = _CODE_CACHE.get(code)
    if info is not None:
        return info
    label = f"{where} ({fn.__qualname__}, {code.co_filename}:{code.co_firstlineno})"
    tree = _file_tree(code.co_filename)
    node = _find_function_node(fn, tree) if tree is not None else None
    if node is None:
        raise SpecHashError(
            f"the source of {label} is unavailable or ambiguous, so its changes could not be "
            "detected; define it with `def` in a .py file (not interactively, through exec, "
            "or as one of several lambdas on a line)"
        )
    refs = _references(node)
    bare, chains = refs.bare, refs.chains
    for call in refs.calls:
        if isinstance(call.func, ast.Name) and call.func.id in _FORBIDDEN_CALLS:
            raise SpecHashError(
                f"{label} calls {call.func.id}() at line {call.lineno}: code run through "
                "eval/exec/compile/__import__ cannot be hashed, so a stale graph could be "
                "returned; write that logic as ordinary Python in the function or in a "
                "helper function"
            )
    if "__builtins__" in bare or any(c[0] == "__builtins__" for c in chains):
        raise SpecHashError(
            f"{label} reads __builtins__ at line {refs.lines['__builtins__']}: any builtin "
            f"by a computed name; {_DYNAMIC_FIX}"
        )
    for attr, line in refs.dynamic_attrs:
        raise SpecHashError(
            f"{label} reads .{attr} at line {line}: a namespace or code object by a computed "
            f"name; {_DYNAMIC_FIX}"
        )
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.decorator_list = []
        node.name = ""
    names = _global_names(code)
    info = _CodeInfo(
        dump=_normalised_dump(node),
        globals_=frozenset(names),
        bare=frozenset(bare & names),
        chains=tuple(sorted(c for c in chains if c[0] in names)),
        lines=refs.lines,
        calls=tuple(c for c in refs.records if c.func[0] in names),
        follows=tuple(c for c in refs.follows if c.func[0] in names),
    )
    _CODE_CACHE[code] = info
    return info


class _Hasher:
    """Digests objects reachable from a model; one instance per hash computation."""

    def __init__(self, trail: list[tuple[str, str]] | None = None) -> None:
        self.memo: dict[int, bytes] = {}
        self.active: set[int] = set()
        self.trail = trail

    def obj(self, obj: Any, where: str) -> bytes:
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            return _sha(b"recursive", where.encode())
        self.active.add(key)
        try:
            digest = self._uncached(obj, where)
        finally:
            self.active.discard(key)
        self.memo[key] = digest
        if self.trail is not None:
            self.trail.append((where, digest.hex()[:12]))
        return digest

    def _uncached(self, obj: Any, where: str) -> bytes:
        if obj is _MISSING:
            return b"missing"
        _refuse_dynamic(obj, where)
        if isinstance(obj, Model):
            return self.model(obj, where)
        if isinstance(obj, types.ModuleType):
            if not _is_user_module(obj):
                return _sha(b"module", obj.__name__.encode())
            tree = _file_tree(getattr(obj, "__file__", "") or "")
            if tree is None:
                raise SpecHashError(
                    f"{where} is module {obj.__name__!r}, whose source is unavailable; "
                    "import it from a .py file"
                )
            return _sha(b"user-module", _normalised_dump(tree))
        if isinstance(obj, functools.partial):
            return _sha(
                b"partial",
                self.obj(obj.func, f"{where}.func"),
                self.sequence(obj.args, f"{where}.args"),
                self.mapping(obj.keywords, f"{where}.keywords"),
            )
        if isinstance(obj, types.MethodType):
            return _sha(
                b"method",
                self.obj(obj.__func__, where),
                self.obj(obj.__self__, f"{where}.__self__"),
            )
        if isinstance(obj, types.FunctionType):
            if _is_library_file(obj.__code__.co_filename):
                return _sha(b"libfunc", f"{obj.__module__}.{obj.__qualname__}".encode())
            return self.function(obj, where)
        if isinstance(obj, type):
            if _is_user_class(obj):
                return self.user_class(obj, where)
            return _sha(b"class", f"{obj.__module__}.{obj.__qualname__}".encode())
        if callable(obj) and not isinstance(obj, np.ndarray):
            module = getattr(obj, "__module__", None) or type(obj).__module__
            name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
            owner = sys.modules.get(module or "")
            if name and owner is not None and not _is_user_module(owner):
                return _sha(b"libobj", f"{module}.{name}".encode())
        try:
            return _sha(b"value", encode(obj, where=where))
        except EncodingLimitExceeded as err:
            raise SpecHashError(f"cannot hash {err}") from None
        except UnencodableValue as err:
            raise SpecHashError(
                f"cannot hash {err.where}: its type {type(err.value).__qualname__} has no "
                "canonical encoding, so a change to it could not be detected. Use None, bool, "
                "int, float, complex, str, bytes, numpy arrays, tuples/lists/dicts/sets or "
                "dataclasses of these, or pass the value as a construction param"
            ) from None

    def sequence(self, values: Iterable[Any], where: str) -> bytes:
        return _sha(*(self.obj(v, f"{where}[{i}]") for i, v in enumerate(values)))

    def mapping(self, values: dict[str, Any] | None, where: str) -> bytes:
        items = sorted((values or {}).items())
        return _sha(*(k.encode() + self.obj(v, f"{where}[{k!r}]") for k, v in items))

    def function(self, fn: types.FunctionType, where: str) -> bytes:
        info = _code_info(fn, where)
        parts = [b"function", info.dump]
        parts.append(self.sequence(fn.__defaults__ or (), f"default arguments of {where}"))
        parts.append(self.mapping(fn.__kwdefaults__, f"keyword defaults of {where}"))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            try:
                value = cell.cell_contents
            except ValueError:  # cell not yet filled
                value = _MISSING
            label = f"captured variable {name!r} of {fn.__qualname__}"
            parts.append(name.encode() + self.obj(value, label))
        module = fn.__module__ or "?"
        label = f"{where} ({fn.__qualname__}, {fn.__code__.co_filename})"
        self._check_calls(fn, info, label)
        roots = sorted(info.bare | {c[0] for c in info.chains})
        for name in roots:
            value = self._lookup(fn, name)
            if name in info.bare or not isinstance(value, types.ModuleType):
                _refuse_dynamic(value, f"{label} reads {name} at line {info.lines.get(name)}")
                parts.append(name.encode() + self.obj(value, f"global {module}.{name}"))
                continue
            # a module read only through attributes: hash just the attributes read
            for chain in (c for c in info.chains if c[0] == name):
                target, path = value, name
                for attr in chain[1:]:
                    if not isinstance(target, types.ModuleType):
                        break
                    target = getattr(target, attr, _MISSING)
                    path += "." + attr
                _refuse_dynamic(target, f"{label} reads {path} at line {info.lines[name]}")
                parts.append(path.encode() + self.obj(target, f"global {module}.{path}"))
        for call in info.follows:
            parts.append(self._follow(fn, call, label, module))
        return _sha(*parts)

    def _resolve(self, fn: types.FunctionType, chain: tuple[str, ...]) -> Any:
        """The value of a global name or attribute chain through modules (else _MISSING)."""
        value = self._lookup(fn, chain[0])
        for attr in chain[1:]:
            if not isinstance(value, types.ModuleType):
                return _MISSING
            value = getattr(value, attr, _MISSING)
        return value

    def _check_calls(self, fn: types.FunctionType, info: _CodeInfo, label: str) -> None:
        """Refuse ``getattr(<module>, <computed name>)``: any attribute of the module."""
        for call in info.calls:
            if not call.computed_name or call.obj is None:
                continue
            if self._resolve(fn, call.func) is not builtins.getattr:
                continue
            target = self._resolve(fn, call.obj) if call.obj[0] in info.globals_ else None
            if isinstance(target, types.ModuleType):
                raise SpecHashError(
                    f"{label} calls getattr({'.'.join(call.obj)}, <computed name>) at line "
                    f"{call.line}: an attribute of a module chosen at run time; {_DYNAMIC_FIX}"
                )

    def _follow(self, fn: types.FunctionType, call: _Call, label: str, module: str) -> bytes:
        """``f("const").a.b``: followed like ``import const`` when ``f`` is
        ``importlib.import_module``; otherwise ``f`` is hashed as an ordinary global."""
        func = self._resolve(fn, call.func)
        path = ".".join(call.func)
        if func is not importlib.import_module:
            _refuse_dynamic(func, f"{label} reads {path} at line {call.line}")
            return path.encode() + self.obj(func, f"global {module}.{path}")
        name = call.module or ""
        if name.startswith("."):
            raise SpecHashError(
                f"{label} calls {path}({name!r}) at line {call.line}: a relative import by "
                f"import_module cannot be followed; {_DYNAMIC_FIX}"
            )
        try:
            target: Any = importlib.import_module(name)
        except Exception as err:  # any import failure: the dependency cannot be seen
            raise SpecHashError(
                f"{label} calls {path}({name!r}) at line {call.line}, and importing "
                f"{name!r} to follow it failed ({type(err).__name__}: {err}); make the module "
                "importable from the model file's folder"
            ) from None
        shown = f"{path}({name!r})"
        for attr in call.tail:
            if not isinstance(target, types.ModuleType):
                break
            target = getattr(target, attr, _MISSING)
            shown += "." + attr
        _refuse_dynamic(target, f"{label} reads {shown} at line {call.line}")
        return shown.encode() + self.obj(target, f"global {module}.{shown}")

    @staticmethod
    def _lookup(fn: types.FunctionType, name: str) -> Any:
        if name in fn.__globals__:
            return fn.__globals__[name]
        return getattr(builtins, name, _MISSING)

    def user_class(self, cls: type, where: str) -> bytes:
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError) as err:
            raise SpecHashError(
                f"{where} is class {cls.__qualname__!r}, whose source is unavailable ({err}); "
                "define it in a .py file"
            ) from None
        parts = [b"class", _normalised_dump(ast.parse(textwrap.dedent(source)))]
        for name, member in sorted(vars(cls).items()):
            _refuse_dynamic(getattr(member, "__func__", member), f"{where}.{name}")
            func = getattr(member, "__func__", member)
            if isinstance(member, property):
                func = member.fget
            if isinstance(func, types.FunctionType):
                parts.append(name.encode() + self.obj(func, f"{where}.{name}"))
        for base in cls.__bases__:
            parts.append(self.obj(base, f"base class of {where}"))
        return _sha(*parts)

    def model(self, model: Model, where: str) -> bytes:
        return _sha(
            b"model",
            encode(list(model.parameters)),
            self.obj(model.initial, f"initial distribution of {where}"),
            self.obj(model.callback, where),
        )


def _spec_digest(callback: Any, params: dict[str, Any], trail: list | None) -> str:
    model = as_model(callback)
    hasher = _Hasher(trail)
    try:
        encoded_params = encode(params, where="construction params")
    except EncodingLimitExceeded as err:
        raise SpecHashError(f"model {model.name!r}: {err}") from None
    except UnencodableValue as err:
        raise SpecHashError(
            f"{err.where} of model {model.name!r} has type {type(err.value).__qualname__}, "
            "which has no canonical encoding; use numbers, strings, booleans, lists, dicts "
            "or numpy arrays"
        ) from None
    digest = _sha(
        b"phasemake-spec",
        encode(GRAPH_FORMAT_VERSION),
        hasher.obj(model, f"model {model.name!r}"),
        encoded_params,
    )
    return digest.hex()[:32]


def spec_hash(callback: Model, /, **params: Any) -> str:
    """Content hash of a model spec: the callback, its dependencies and construction params.

    Parameters
    ----------
    callback
        A model declared with :func:`phasemake.model`.
    **params
        Construction params passed to the callback (and to a callable initial
        distribution). Their order does not matter; their types do (``10`` ≠ ``10.0``).

    Returns
    -------
    str
        32 lowercase hex characters (128 bits of sha256).

    Raises
    ------
    SpecHashError
        If some dependency cannot be hashed safely; the message names it.

    Examples
    --------
    >>> from phasemake.models import kingman
    >>> spec_hash(kingman, n=10) == spec_hash(kingman, n=10)
    True
    >>> spec_hash(kingman, n=10) == spec_hash(kingman, n=10.0)
    False
    """
    return _spec_digest(callback, params, None)


def explain_spec(callback: Model, /, **params: Any) -> tuple[str, list[tuple[str, str]]]:
    """The spec hash and the list of ``(dependency, short digest)`` it was computed from.

    Useful to see why a model's spec changed: diff the lists of two versions.

    Examples
    --------
    >>> from phasemake.models import kingman
    >>> spec, deps = explain_spec(kingman, n=4)
    >>> any("kingman" in where for where, _ in deps)
    True
    """
    trail: list[tuple[str, str]] = []
    spec = _spec_digest(callback, params, trail)
    return spec, trail
