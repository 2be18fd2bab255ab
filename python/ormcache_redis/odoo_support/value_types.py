"""Odoo's types taught to the engine: value types to the codec (each comes
back as itself), recordsets to the cache-key encoder."""

from __future__ import annotations

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
