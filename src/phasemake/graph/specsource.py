"""What the spec hash reads from source code: normalised ASTs, the globals a function reads,
and the dynamic routes to code that it refuses (see :mod:`phasemake.graph.spechash`)."""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import linecache
import runpy
import sys
import types
from typing import Any, NamedTuple

from phasemake.core.errors import SpecHashError

__all__ = [
    "DYNAMIC_FIX",
    "Call",
    "CodeInfo",
    "code_info",
    "file_tree",
    "normalised_dump",
    "refuse_dynamic",
]

FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "__import__"})

#: Objects that reach code or names the hash cannot see, whatever name they are read under
#: (``EV = eval``, ``builtins.eval``, ``from importlib import import_module as imp``), as a
#: global, an attribute of a module, a captured variable, a default argument or a class
#: attribute. Compared by identity.
DYNAMIC = {
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
DYNAMIC_ATTRS = frozenset(
    {"__dict__", "__globals__", "__builtins__", "__code__", "__closure__", "__subclasses__"}
)
DYNAMIC_FIX = (
    "code or values reached that way cannot be hashed, so a stale graph could be returned; "
    "read globals by their plain names, import helpers with `import` or `from ... import` "
    "(or `importlib.import_module('constant.name').attr`), and write the logic as ordinary "
    "Python"
)


def refuse_dynamic(value: Any, what: str) -> None:
    """Raise if ``value`` is one of the dynamic routes in :data:`DYNAMIC`."""
    label = DYNAMIC.get(id(value))
    if label is not None:
        raise SpecHashError(f"{what}, which is {label}: {DYNAMIC_FIX}")


_DOCSTRING_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def normalised_dump(node: ast.AST) -> bytes:
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


def file_tree(filename: str) -> ast.Module | None:
    lines = linecache.getlines(filename)
    if not lines:
        return None
    return _parse_source(filename, "".join(lines))


class Call(NamedTuple):
    """A call whose function is a name or an attribute chain rooted at a name."""

    func: tuple[str, ...]
    line: int
    obj: tuple[str, ...] | None  # first argument, when a name or attribute chain
    computed_name: bool  # second argument is not a constant string
    module: str | None  # a single constant-string argument (for import_module)
    tail: tuple[str, ...]  # attributes read from the call's result, e.g. ("RATE",)


class CodeInfo(NamedTuple):
    dump: bytes
    globals_: frozenset[str]
    bare: frozenset[str]
    chains: tuple[tuple[str, ...], ...]
    lines: dict[str, int]  # first line reading each global root name
    calls: tuple[Call, ...]
    follows: tuple[Call, ...]  # calls read as ``f("const").attr``: followed if imports


_CODE_CACHE: dict[types.CodeType, CodeInfo] = {}


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


def _call_record(call: ast.Call, tail: tuple[str, ...]) -> Call | None:
    func = _chain(call.func)
    if func is None:
        return None
    args = call.args
    module = _const_str(args[0]) if len(args) == 1 and not call.keywords else None
    return Call(
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
    records: list[Call]
    follows: list[Call]
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
            if cur.attr in DYNAMIC_ATTRS:
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


def code_info(fn: types.FunctionType, where: str) -> CodeInfo:
    code = fn.__code__
    info = _CODE_CACHE.get(code)
    if info is not None:
        return info
    label = f"{where} ({fn.__qualname__}, {code.co_filename}:{code.co_firstlineno})"
    tree = file_tree(code.co_filename)
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
        if isinstance(call.func, ast.Name) and call.func.id in FORBIDDEN_CALLS:
            raise SpecHashError(
                f"{label} calls {call.func.id}() at line {call.lineno}: code run through "
                "eval/exec/compile/__import__ cannot be hashed, so a stale graph could be "
                "returned; write that logic as ordinary Python in the function or in a "
                "helper function"
            )
    if "__builtins__" in bare or any(c[0] == "__builtins__" for c in chains):
        raise SpecHashError(
            f"{label} reads __builtins__ at line {refs.lines['__builtins__']}: any builtin "
            f"by a computed name; {DYNAMIC_FIX}"
        )
    for attr, line in refs.dynamic_attrs:
        raise SpecHashError(
            f"{label} reads .{attr} at line {line}: a namespace or code object by a computed "
            f"name; {DYNAMIC_FIX}"
        )
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.decorator_list = []
        node.name = ""
    names = _global_names(code)
    info = CodeInfo(
        dump=normalised_dump(node),
        globals_=frozenset(names),
        bare=frozenset(bare & names),
        chains=tuple(sorted(c for c in chains if c[0] in names)),
        lines=refs.lines,
        calls=tuple(c for c in refs.records if c.func[0] in names),
        follows=tuple(c for c in refs.follows if c.func[0] in names),
    )
    _CODE_CACHE[code] = info
    return info
