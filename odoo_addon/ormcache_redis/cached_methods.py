"""The scanner of cached methods: the one test of "is this an ``@ormcache``
method" and the one walk over a registry's model classes (each defining
class once), used by the Registry hooks, method_clear, native_lookup and
the warning about cached compute methods below.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableSet
from typing import Any

from ormcache_redis import qualified_name

_logger = logging.getLogger("odoo.addons.ormcache_redis")


def ormcache_of(value: Any) -> Any | None:
    """The ``ormcache`` instance that decorates ``value`` (a function, or a
    method or classmethod wrapping one), or None when it is not a cached
    method."""
    function = getattr(value, "__func__", value)
    cache = getattr(function, "__cache__", None)
    return cache if getattr(cache, "method", None) is not None else None


def is_ormcache_method(value: Any) -> bool:
    return ormcache_of(value) is not None


def defining_classes(
    registry: Any, seen: MutableSet[type] | None = None
) -> Iterator[tuple[str, type]]:
    """``(model name, class)`` of every class in the MRO of the registry's
    model classes, each once (under the first model that has it). Classes
    already in ``seen`` are skipped; the ones yielded are added to it."""
    if seen is None:
        seen = set()
    for model_name, model_class in registry.models.items():
        for klass in model_class.__mro__:
            if klass in seen:
                continue
            seen.add(klass)
            yield model_name, klass


def cached_methods(registry: Any) -> Iterator[tuple[str, str, Any]]:
    """``(model name, attribute, function)`` of every ``@ormcache`` method
    of the registry's model classes, each defining class once (under the
    first model that has it)."""
    for model_name, klass in defining_classes(registry):
        for attribute, value in vars(klass).items():
            if is_ormcache_method(value):
                yield model_name, attribute, getattr(value, "__func__", value)


# module.qualname of the compute methods already reported by
# warn_cached_computes: each is reported once per process.
WARNED_COMPUTES: set[str] = set()


def warn_cached_computes(registry: Any, warned: set[str] | None = None) -> None:
    """Warns about compute methods decorated with ``@ormcache``: on a cache
    hit the method body does not run, so nothing is assigned to the field.
    ``warned``: the methods already reported (default: the process's)."""
    if warned is None:
        warned = WARNED_COMPUTES
    fields_by_method: dict[str, tuple[Any, str, list[str]]] = {}
    for model_name, model_class in registry.models.items():
        for field in model_class._fields.values():
            compute = field.compute
            if not compute:
                continue
            function = getattr(model_class, compute, None) if isinstance(compute, str) else compute
            cache = ormcache_of(function)
            if cache is None:
                continue
            name = qualified_name(cache.method)
            if name in warned:
                continue
            attribute = compute if isinstance(compute, str) else cache.method.__name__
            first_model, _attribute, field_names = fields_by_method.setdefault(
                name, (model_name, attribute, [])
            )
            if first_model == model_name:
                field_names.append(field.name)
    for name, (model_name, attribute, field_names) in fields_by_method.items():
        warned.add(name)
        _logger.warning(
            "%s.%s (%s) computes field(s) %s but is decorated with @ormcache: on a cache hit "
            "it does not run, so the field gets no value. Cache a helper method that returns "
            "the value and assign it in the compute method instead.",
            model_name,
            attribute,
            name,
            ", ".join(field_names),
        )
