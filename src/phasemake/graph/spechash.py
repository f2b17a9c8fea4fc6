"""Spec hashing: a content hash of everything a model's graph depends on.

The guarantee, precisely. For a model and its construction params, the spec hash covers:

- the callback's normalised AST (formatting, comments and docstrings do not count) and that
  of its initial-distribution function;
- every global a hashed function reads, by its plain name or as an attribute chain of a
  module (``helpers.RATE``), followed recursively through user functions, classes and
  modules (code outside site-packages and the standard library, and phasemake itself);
  ``importlib.import_module("constant.name").attr`` is followed like an import;
- captured closure values, default arguments, the declared parameters and their order,
  the construction params (canonically encoded: ``10`` ≠ ``10.0``) and the graph-format
  version.

It refuses, with a :class:`~phasemake.core.errors.SpecHashError` naming the function, its
file, the line and the fix, every dynamic route to code or names it cannot follow, under
whatever name it is reached (an alias ``EV = eval``, ``builtins.eval``, ``from importlib
import import_module as imp``, a captured variable, a default argument, a class attribute):
``eval``, ``exec``, ``compile``, ``__import__``, ``globals()``, ``vars()``, ``locals()``,
the ``builtins``, ``importlib``, ``importlib.util``, ``runpy`` and ``sys`` modules used as
values, ``importlib.import_module`` with a computed name or whose result is kept rather
than read as ``...("name").attr``, ``importlib.reload`` and the ``importlib.util`` loaders,
``runpy.run_*``, ``sys.modules``, ``sys._getframe``, ``getattr(<module>, <computed
name>)``, and reads of ``__builtins__``, ``.__dict__``, ``.__globals__``,
``.__builtins__``, ``.__code__``, ``.__closure__`` or ``.__subclasses__``. Source that is
unavailable and values without a canonical encoding (or beyond the encoding's size
limits) are refused too.

What remains out of reach (the graph must not depend on it; pass it as a construction
param instead):

- anything read at build time from outside the Python code: files (``open``,
  ``np.load``), environment variables, the clock, random state, the network;
- library code (numpy, the standard library, other site-packages), hashed by its name and
  not its content or version;
- mutation at run time: values are hashed as they are when the hash is computed;
- a user module used as a plain value (``m = helpers``): hashed by its own source, not by
  the modules it imports; ``getattr`` with a computed name on an object that is not a
  module global (a local variable, an instance), and introspection through other library
  functions (``inspect``, ``operator.attrgetter``, ``ctypes``, ``pickle``).

Nothing is built to compute the hash, and the callback is never called. The AST analysis
is in :mod:`phasemake.graph.specsource`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import site
import struct
import sys
import sysconfig
import textwrap
import types
from collections.abc import Iterable
from typing import Any

import numpy as np

from phasemake.core.canonical import EncodingLimitExceeded, UnencodableValue, encode
from phasemake.core.errors import SpecHashError
from phasemake.graph.model import Model, as_model
from phasemake.graph.specsource import (
    DYNAMIC_FIX,
    Call,
    CodeInfo,
    code_info,
    file_tree,
    normalised_dump,
    refuse_dynamic,
)

__all__ = ["GRAPH_FORMAT_VERSION", "explain_spec", "spec_hash"]

#: Version of the graph semantics and file layout; part of every spec hash.
GRAPH_FORMAT_VERSION = 1

_MISSING = object()


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


def _frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def _sha(*parts: bytes) -> bytes:
    return hashlib.sha256(_frame(*parts)).digest()


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
        refuse_dynamic(obj, where)
        if isinstance(obj, Model):
            return self.model(obj, where)
        if isinstance(obj, types.ModuleType):
            if not _is_user_module(obj):
                return _sha(b"module", obj.__name__.encode())
            tree = file_tree(getattr(obj, "__file__", "") or "")
            if tree is None:
                raise SpecHashError(
                    f"{where} is module {obj.__name__!r}, whose source is unavailable; "
                    "import it from a .py file"
                )
            return _sha(b"user-module", normalised_dump(tree))
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
        info = code_info(fn, where)
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
                refuse_dynamic(value, f"{label} reads {name} at line {info.lines.get(name)}")
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
                refuse_dynamic(target, f"{label} reads {path} at line {info.lines[name]}")
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

    def _check_calls(self, fn: types.FunctionType, info: CodeInfo, label: str) -> None:
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
                    f"{call.line}: an attribute of a module chosen at run time; {DYNAMIC_FIX}"
                )

    def _follow(self, fn: types.FunctionType, call: Call, label: str, module: str) -> bytes:
        """``f("const").a.b``: followed like ``import const`` when ``f`` is
        ``importlib.import_module``; otherwise ``f`` is hashed as an ordinary global."""
        func = self._resolve(fn, call.func)
        path = ".".join(call.func)
        if func is not importlib.import_module:
            refuse_dynamic(func, f"{label} reads {path} at line {call.line}")
            return path.encode() + self.obj(func, f"global {module}.{path}")
        name = call.module or ""
        if name.startswith("."):
            raise SpecHashError(
                f"{label} calls {path}({name!r}) at line {call.line}: a relative import by "
                f"import_module cannot be followed; {DYNAMIC_FIX}"
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
        refuse_dynamic(target, f"{label} reads {shown} at line {call.line}")
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
        parts = [b"class", normalised_dump(ast.parse(textwrap.dedent(source)))]
        for name, member in sorted(vars(cls).items()):
            refuse_dynamic(getattr(member, "__func__", member), f"{where}.{name}")
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
