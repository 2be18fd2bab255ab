"""Which ``@ormcache`` key expressions the engine evaluates itself.

A key expression is Python source compiled into the key function (Odoo's
``lambda self, xmlid: (self._name, method, xmlid)``). Most are a parameter
(``'xmlid'``), an attribute path from one (``'self.env.uid'``), or one of
these passed to the builtin ``frozenset`` or ``tuple``
(``'frozenset(groups)'``). For those the engine computes the same values
without running the key function, and on a hit without building the key
tuple. :func:`key_plan` says whether every expression of a method is of
these shapes and describes them; anything else (a call, arithmetic, a
builtin shadowed where the key function is compiled) keeps the compiled
key function. The Odoo addon's ``OdooLookup`` and this package's
``ormcache`` both use it.
"""

from __future__ import annotations

import ast
import builtins
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["KeyPart", "KeyPlan", "key_plan"]

# (argument index, attributes read in order, builtin applied or None).
KeyPart = tuple[int, list[str], str | None]
# The parts, and each parameter's default by argument index (None:
# required; a default of None also reads as required, so such calls take
# the compiled key function).
KeyPlan = tuple[list[KeyPart], list[Any]]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_WRAPPERS = ("frozenset", "tuple")


def key_plan(
    method: Callable[..., Any], expressions: Sequence[object], namespace: Mapping[str, Any]
) -> KeyPlan | None:
    """The plan of ``method``'s key expressions, or None when one of them
    is not of a shape the engine evaluates. ``namespace``: the globals the
    key function is compiled in (a name there shadows a builtin)."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters or any(p.kind not in _POSITIONAL for p in parameters):
        return None
    names = [p.name for p in parameters]
    parts = []
    for expression in expressions:
        part = _part(expression, names, namespace)
        if part is None:
            return None
        parts.append(part)
    defaults = [None if p.default is inspect.Parameter.empty else p.default for p in parameters]
    return parts, defaults


def _part(expression: object, names: list[str], namespace: Mapping[str, Any]) -> KeyPart | None:
    if not isinstance(expression, str):
        return None
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return None
    wrapper = None
    if isinstance(node, ast.Call):
        wrapper = _builtin_wrapper(node, names, namespace)
        if wrapper is None:
            return None
        node = node.args[0]
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return None
    return names.index(node.id), attributes[::-1], wrapper


def _builtin_wrapper(call: ast.Call, names: list[str], namespace: Mapping[str, Any]) -> str | None:
    """``frozenset`` or ``tuple`` when ``call`` is the builtin of that name
    applied to one plain argument."""
    function = call.func
    if not isinstance(function, ast.Name) or function.id not in _WRAPPERS:
        return None
    if len(call.args) != 1 or call.keywords or isinstance(call.args[0], ast.Starred):
        return None
    name = function.id
    if name in names or namespace.get(name, getattr(builtins, name)) is not getattr(builtins, name):
        return None
    return name
