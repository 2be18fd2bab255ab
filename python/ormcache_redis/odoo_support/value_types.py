"""Odoo's types taught to the engine: value types to the codec (each comes
back as itself), recordsets to the cache-key encoder.

Every type here is rebuilt from plain data by its own constructor, never
from a name found in the bytes: the set of classes is closed, and a state
that does not have the shape its class writes is a decode error (a miss).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

from ormcache_redis._native import register_key_type

# Safe default factories for collections.defaultdict (anything else, e.g. a
# lambda or a model method, cannot be rebuilt safely in another process).
SAFE_DEFAULT_FACTORIES: dict[str, Any] = {
    "list": list,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
}


def register_value_types(
    codec: Any,
    *,
    frozendict: type | None = None,
    markup: type | None = None,
    lang_data: type | None = None,
    lang_data_dict: type | None = None,
    ordered_set: type | None = None,
) -> list[str]:
    """Teaches the codec Odoo's value types; returns the tags registered.

    Each type comes back as itself: a Markup that came back as str would be
    escaped twice, a LangData that came back as dict would lose attribute
    access, an OrderedSet that came back as list would lose set operations.
    """
    tags = []
    # Each one's state is its base type's value; it is rebuilt by itself.
    for cls, tag, base in (
        (frozendict, "odoo.frozendict", dict),
        (markup, "markupsafe.Markup", str),
        (lang_data, "odoo.LangData", dict),
        (lang_data_dict, "odoo.LangDataDict", dict),
        (ordered_set, "odoo.OrderedSet", list),
    ):
        if cls is not None:
            codec.register_type(cls, tag, base, cls)
            tags.append(tag)
    codec.register_type(
        defaultdict, "collections.defaultdict", defaultdict_to_state, defaultdict_from_state
    )
    tags.append("collections.defaultdict")
    return tags


def defaultdict_to_state(value: defaultdict) -> tuple[str, dict]:
    factory = value.default_factory
    if factory is None:
        return ("", dict(value))
    for name, safe in SAFE_DEFAULT_FACTORIES.items():
        if factory is safe:
            return (name, dict(value))
    # The engine counts the value as unencodable and keeps it in L1.
    raise TypeError(f"defaultdict with default_factory {factory!r} is not shared")


def defaultdict_from_state(state: Any) -> defaultdict:
    name, items = state
    if name == "":
        return defaultdict(None, items)
    try:
        factory = SAFE_DEFAULT_FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown defaultdict factory {name!r}") from None
    return defaultdict(factory, items)


def register_domain_types(codec: Any, domains: Any) -> list[str]:
    """Teaches the codec Odoo 19's domain trees (``domains`` is the module
    ``odoo.orm.domains``), which ``ir.rule._compute_domain`` caches: each
    node comes back as its own class, with its children, its condition and
    its optimization level, so the tree compares equal to the one computed
    and an optimized tree is not optimized again. ``Domain.TRUE`` and
    ``Domain.FALSE`` come back as themselves (they compare by identity).

    Not registered, hence never shared: ``DomainCustom`` (it holds
    functions) and conditions whose value the codec cannot encode (a
    ``Query`` or an ``SQL``): the engine keeps such values in the process.
    """
    nodes = DomainNodes(domains)
    registrations = (
        (domains.DomainBool, "odoo.DomainBool", nodes.bool_state, nodes.bool_from_state),
        (domains.DomainNot, "odoo.DomainNot", nodes.not_state, nodes.not_from_state),
        (domains.DomainAnd, "odoo.DomainAnd", nodes.nary_state, nodes.and_from_state),
        (domains.DomainOr, "odoo.DomainOr", nodes.nary_state, nodes.or_from_state),
        (
            domains.DomainCondition,
            "odoo.DomainCondition",
            nodes.condition_state,
            nodes.condition_from_state,
        ),
    )
    for cls, tag, to_state, from_state in registrations:
        codec.register_type(cls, tag, to_state, from_state)
    return [tag for _cls, tag, _to, _from in registrations]


class DomainNodes:
    """Each node's state and its rebuild, as Odoo builds nodes internally:
    the class's constructor, then ``_opt_level`` set past the immutability
    guard (as ``Domain._optimize`` does). A condition's field is looked up
    again on first use (``_field_instance`` is a per-process memo)."""

    def __init__(self, domains: Any) -> None:
        self.domains = domains
        self.levels = {int(level): level for level in domains.OptimizationLevel}

    def level_of(self, node: Any) -> int:
        return int(node._opt_level)

    def with_level(self, node: Any, level: Any) -> Any:
        if type(level) is not int or level not in self.levels:
            raise ValueError(f"invalid domain optimization level {level!r}")
        object.__setattr__(node, "_opt_level", self.levels[level])
        return node

    def child(self, value: Any) -> Any:
        if not isinstance(value, self.domains.Domain):
            raise ValueError(f"a domain node holds {type(value).__name__}, not a domain")
        return value

    def bool_state(self, node: Any) -> bool:
        return bool(node.value)

    def bool_from_state(self, state: Any) -> Any:
        if type(state) is not bool:
            raise ValueError("invalid constant domain")
        return self.domains.Domain.TRUE if state else self.domains.Domain.FALSE

    def not_state(self, node: Any) -> tuple[int, Any]:
        return (self.level_of(node), node.child)

    def not_from_state(self, state: Any) -> Any:
        level, child = state
        return self.with_level(self.domains.DomainNot(self.child(child)), level)

    def nary_state(self, node: Any) -> tuple[int, tuple]:
        return (self.level_of(node), node.children)

    def and_from_state(self, state: Any) -> Any:
        return self.nary_from_state(self.domains.DomainAnd, state)

    def or_from_state(self, state: Any) -> Any:
        return self.nary_from_state(self.domains.DomainOr, state)

    def nary_from_state(self, cls: type, state: Any) -> Any:
        level, children = state
        if type(children) is not tuple or len(children) < 2:
            raise ValueError(f"{cls.__name__} needs a tuple of at least two domains")
        return self.with_level(cls(tuple(map(self.child, children))), level)

    def condition_state(self, node: Any) -> tuple[int, str, str, Any]:
        return (self.level_of(node), node.field_expr, node.operator, node.value)

    def condition_from_state(self, state: Any) -> Any:
        level, field_expr, operator, value = state
        if type(field_expr) is not str or not field_expr:
            raise ValueError("invalid field in a domain condition")
        if type(operator) is not str or operator not in self.domains.CONDITION_OPERATORS:
            raise ValueError(f"invalid operator {operator!r} in a domain condition")
        return self.with_level(self.domains.DomainCondition(field_expr, operator, value), level)


def register_set_definitions(codec: Any, set_expression: Any) -> str:
    """Teaches the codec Odoo 18/19's group definitions
    (``set_expression.SetDefinitions``, the value of
    ``res.groups._get_group_definitions`` in the ``groups`` cache).

    The state is each set's id, name, and its closed supersets and
    disjoint sets, in the definitions' order; the constructor computes the
    same closure from it (the closure of a closed relation is itself), so
    every set has the same subsets, supersets and disjoint sets as the one
    computed from the database. Set expressions (``Union``) hold the sets
    of the process's definitions and are not registered.
    """
    cls = set_expression.SetDefinitions
    rebuild = functools.partial(set_definitions_from_state, cls)
    codec.register_type(cls, "odoo.SetDefinitions", set_definitions_state, rebuild)
    return "odoo.SetDefinitions"


def set_definitions_state(definitions: Any) -> tuple:
    leaves = {}
    for leaf in definitions._SetDefinitions__leaves.values():
        leaves.setdefault(leaf.id, leaf)
    return tuple(
        (
            leaf.id,
            leaf.ref,
            tuple(sorted(leaf.supersets - {leaf.id})),
            tuple(sorted(leaf.disjoints)),
        )
        for leaf in leaves.values()
    )


def set_definitions_from_state(cls: type, state: Any) -> Any:
    if type(state) is not tuple:
        raise ValueError("invalid set definitions")
    definitions: dict[int, dict] = {}
    for leaf_id, ref, supersets, disjoints in state:
        if type(supersets) is not tuple or type(disjoints) is not tuple:
            raise ValueError("invalid sets in set definitions")
        ids = (leaf_id, *supersets, *disjoints)
        if not all(type(value) is int for value in ids) or leaf_id in definitions:
            raise ValueError("invalid set id in set definitions")
        if type(ref) is not str or ref in ("", "*"):
            raise ValueError("invalid set name in set definitions")
        definitions[leaf_id] = {"ref": ref, "supersets": supersets, "disjoints": disjoints}
    names = [info["ref"] for info in definitions.values()]
    if len(set(names)) != len(names):
        raise ValueError("two sets of the same name in set definitions")
    try:
        return cls(definitions)
    except KeyError:
        raise ValueError("set definitions refer to an unknown set") from None


def register_recordset_keys(base_model: type) -> None:
    """Recordsets in cache keys (``self.env.company`` in
    ``res.partner._get_view_cache_key``, ``self.env.user``...) are encoded
    as Odoo compares them: model name and set of ids, whatever the
    environment. Records not in the database (new ids) keep the key local."""
    register_key_type(base_model, "odoo.recordset", recordset_key_state)


def recordset_key_state(records: Any) -> tuple[str, tuple[int, ...]]:
    ids = records._ids
    if not all(type(record_id) is int for record_id in ids):
        raise TypeError(f"new {records._name} records cannot be part of a shared cache key")
    return (records._name, tuple(sorted(set(ids))))
