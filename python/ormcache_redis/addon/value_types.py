"""Odoo's value types taught to the codec: each comes back as itself."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

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
) -> list[str]:
    """Teaches the codec Odoo's value types; returns the tags registered.

    Each type comes back as itself: a Markup that came back as str would be
    escaped twice, a LangData that came back as dict would lose attribute
    access.
    """
    tags = []
    # Each one's state is its base type's value; it is rebuilt by itself.
    for cls, tag, base in (
        (frozendict, "odoo.frozendict", dict),
        (markup, "markupsafe.Markup", str),
        (lang_data, "odoo.LangData", dict),
        (lang_data_dict, "odoo.LangDataDict", dict),
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
