"""Arithmetic expressions of named parameters (``"1/(2*N)"``, ``"t1 + dt"``, ``"1-f"``):
checked without evaluating anything (the workflow does it at parse time, without JAX) and
compiled to functions of a flat parameter vector for any array module (``jax.numpy`` for
the evaluator).

Allowed: numbers, parameter names, ``+ - * / **``, unary ``-``, and ``exp``, ``log`` and
``sqrt`` of one argument. Anything else (attributes, calls of other names, subscripts) is
refused with a message naming it: an expression is data, never code that runs.

Examples
--------
>>> import numpy as np
>>> f = compile_expression("1/(2*N)", ["N", "T"], "rates[0].coal", xp=np)
>>> float(f(np.array([5000.0, 100.0])))
0.0001
>>> check_expression("N.start_size", ["N"], "rates[0].coal")
Traceback (most recent call last):
...
phasemake.core.errors.PhasemakeError: rates[0].coal = 'N.start_size': ...
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from typing import Any

from phasemake.core.errors import PhasemakeError

__all__ = ["check_expression", "compile_expression"]

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_FUNCTIONS = ("exp", "log", "sqrt")


def _tree(expr: Any, where: str) -> ast.AST | float:
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return float(expr)
    if not isinstance(expr, str):
        raise PhasemakeError(f"{where} = {expr!r}; expected a number or an expression string")
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError as err:
        raise PhasemakeError(f"{where} = {expr!r} is not an expression: {err.msg}") from None


def _walk(node, expr, names, where, build):
    """Validate ``node`` and combine its parts with ``build`` (a dict of constructors)."""

    def go(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return build["number"](float(n.value))
        if isinstance(n, ast.Name):
            if n.id not in names:
                raise PhasemakeError(
                    f"{where} = {expr!r}: unknown name {n.id!r}; expected one of "
                    f"{list(names)} (or exp, log, sqrt)"
                )
            return build["name"](list(names).index(n.id))
        if isinstance(n, ast.BinOp) and type(n.op) in _BINARY:
            return build["binary"](_BINARY[type(n.op)], go(n.left), go(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            return build["sign"](-1.0 if isinstance(n.op, ast.USub) else 1.0, go(n.operand))
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id in _FUNCTIONS
            and len(n.args) == 1
            and not n.keywords
        ):
            return build["call"](n.func.id, go(n.args[0]))
        raise PhasemakeError(
            f"{where} = {expr!r}: {ast.unparse(n)!r} is not allowed; expected numbers, "
            "parameter names, + - * / **, exp, log and sqrt"
        )

    return go(node)


_CHECK = {
    "number": lambda v: None,
    "name": lambda i: None,
    "binary": lambda op, a, b: None,
    "sign": lambda s, a: None,
    "call": lambda f, a: None,
}


def check_expression(expr: Any, names: Sequence[str], where: str) -> None:
    """Raise :class:`PhasemakeError` naming ``where`` unless ``expr`` is an allowed
    expression of ``names`` (module docstring)."""
    tree = _tree(expr, where)
    if not isinstance(tree, float):
        _walk(tree, expr, names, where, _CHECK)


def _call(fn: Callable[[Any], Any], arg: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda phi: fn(arg(phi))


def compile_expression(
    expr: Any, names: Sequence[str], where: str, *, xp: Any
) -> Callable[[Any], Any]:
    """``expr`` as a function of a flat parameter vector, computed with the array module
    ``xp`` (``numpy`` or ``jax.numpy``: differentiable with the latter)."""
    tree = _tree(expr, where)
    if isinstance(tree, float):
        value = tree
        return lambda phi: xp.asarray(value, dtype=phi.dtype)
    build = {
        "number": lambda v: lambda phi: xp.asarray(v, dtype=phi.dtype),
        "name": lambda i: lambda phi: phi[i],
        "binary": lambda op, a, b: lambda phi: op(a(phi), b(phi)),
        "sign": lambda s, a: lambda phi: s * a(phi),
        "call": lambda f, a: _call(getattr(xp, f), a),
    }
    return _walk(tree, expr, names, where, build)
