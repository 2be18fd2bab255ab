"""``@ormcache(..., depends_on={'sale.order': ['state'], 'product.category': []})``:
the ORM's own writes clear the method, as if the code had called
``self.method.clear_cache(self)`` in the same transaction.

Hook points (``install``), the same in 17.0, 18.0 and 19.0:

* ``BaseModel.create`` and ``BaseModel.unlink``: every record created or
  deleted through the ORM goes through them (imports and XML data too).
* ``BaseModel.write``: what the code writes, every field type (many2many
  rows and attachments are written there, not at flush), cleared at once so
  this transaction does not read the method's old value before the flush.
* the flush: ``BaseModel._write`` (17.0) / ``BaseModel._write_multi``
  (18.0+, which ``_write`` calls): stored computed fields recomputed by the
  ORM never go through ``write``; their new values reach the table only
  here (``sale.order.amount_total`` after a change of its lines).

A method is asked to clear once per unit of work (the window in which its
clear waits for the commit); a later change in that unit only drops the
values this process stored since, and only if it stored any.

Not seen: SQL run with ``env.cr.execute``, ``ondelete='cascade'`` deletions
done by PostgreSQL, and changes made by another database or outside Odoo.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ormcache_redis import LRU, qualified_name

from . import runtime
from .odoo_version import ODOO

_logger = logging.getLogger("odoo.addons.ormcache_redis")

INDEX_ATTRIBUTE = "_ormcache_redis_dependencies"

# Every decorator declaring ``depends_on``, in the order their classes were
# defined; ``_generation`` moves when one is added, so registries built
# before (tests imported after loading) pick it up at their next change.
_declared: list[Any] = []
_generation = 0


def normalize(depends_on: object) -> dict[str, frozenset[str] | None] | None:
    """The declaration as ``{model: fields or None (any field)}``; raises on a
    malformed one at decoration time (a typo must not wait for a write)."""
    if depends_on is None:
        return None
    if not isinstance(depends_on, Mapping) or not depends_on:
        raise TypeError(
            "ormcache depends_on is a non-empty dict {model name: [field names]}, "
            f"got {depends_on!r}"
        )
    normalized: dict[str, frozenset[str] | None] = {}
    for model_name, field_names in depends_on.items():
        if not isinstance(model_name, str) or isinstance(field_names, str):
            raise TypeError(
                f"ormcache depends_on: {model_name!r}: {field_names!r} must be "
                "a model name and a list of field names"
            )
        names = frozenset(field_names)
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"ormcache depends_on: field names of {model_name!r} must be strings")
        normalized[model_name] = names or None
    return normalized


def register(decorator: Any) -> None:
    """Called by the decorator once the method is known."""
    global _generation
    _declared.append(decorator)
    _generation += 1


def forget(decorator: Any) -> None:
    """Drops a declaration (methods defined and thrown away by tests)."""
    global _generation
    _declared.remove(decorator)
    _generation += 1


def _odoo_module(method: Any) -> str | None:
    parts = method.__module__.split(".")
    if parts[:2] == ["odoo", "addons"] and len(parts) > 2:
        return parts[2]
    return None


class _Dependency(NamedTuple):
    decorator: Any
    fields: frozenset[str] | None  # None: any field


class DependencyIndex:
    """One registry's declarations by model name, checked against its models."""

    def __init__(self, registry: Any, warned: set[tuple[str, str]]) -> None:
        self.generation = _generation
        self.warned = warned
        # (cache name, method name) -> the cache's store count when the
        # method's entries were last dropped here.
        self.evicted_at: dict[tuple[str, str], int] = {}
        by_model: dict[str, list[_Dependency]] = {}
        installed = registry._init_modules
        for decorator in _declared:
            module = _odoo_module(decorator.method)
            if module is not None and module not in installed:
                continue
            for model_name, fields in decorator.depends_on.items():
                model = registry.models.get(model_name)
                if model is None:
                    self._warn(
                        decorator,
                        model_name,
                        f"model {model_name!r} is not in database {registry.db_name!r}",
                    )
                    continue
                unknown = sorted(fields - model._fields.keys()) if fields else []
                if unknown:
                    # Clearing on any write of the model is the safe reading
                    # of a misspelt field: never a stale value.
                    self._warn(
                        decorator,
                        model_name,
                        f"{model_name!r} has no field {', '.join(map(repr, unknown))}: "
                        "any change of the model clears it",
                    )
                    fields = None
                by_model.setdefault(model_name, []).append(_Dependency(decorator, fields))
        self.by_model = {name: tuple(entries) for name, entries in by_model.items()}

    def _warn(self, decorator: Any, model_name: str, reason: str) -> None:
        name = qualified_name(decorator.method)
        if (name, model_name) in self.warned:
            return
        self.warned.add((name, model_name))
        _logger.warning("@ormcache depends_on of %s: %s", name, reason)

    def changed(self, records: Any, field_names: Iterable[str] | None) -> None:
        """``records`` were created/deleted (``field_names`` None) or written."""
        dependencies = self.by_model.get(records._name)
        if not dependencies:
            return
        written = None if field_names is None else set(field_names)
        for dependency in dependencies:
            if (
                written is not None
                and dependency.fields is not None
                and dependency.fields.isdisjoint(written)
            ):
                continue
            self._clear(dependency.decorator, records)

    def _clear(self, decorator: Any, records: Any) -> None:
        registry = records.pool
        cache_name, method = decorator.cache_name, decorator.method
        cache = registry._Registry__caches.get(cache_name)
        if not isinstance(cache, LRU):  # not this addon's cache: Odoo's clear
            decorator.clear_cache(records)
            return
        tier = runtime.tier_of(registry)
        marker = (cache_name, qualified_name(method))
        if tier is not None and tier.has_method_clear(cache_name, method):
            # Already on its way to every process; only values this thread
            # may have computed since (from this transaction's data) are
            # wrong here, and none was stored if the cache stored nothing.
            stored = LRU.stats(cache)["sets"]
            if self.evicted_at.get(marker) != stored:
                cache.evict_method(method)
                self.evicted_at[marker] = stored
            return
        decorator.clear_cache(records)
        self.evicted_at[marker] = LRU.stats(cache)["sets"]


def index_registry(registry: Any) -> DependencyIndex:
    """(Re)builds the registry's index, warning about bad declarations."""
    previous = registry.__dict__.get(INDEX_ATTRIBUTE)
    index = DependencyIndex(registry, previous.warned if previous is not None else set())
    registry.__dict__[INDEX_ATTRIBUTE] = index
    return index


def _index(registry: Any) -> DependencyIndex | None:
    index = registry.__dict__.get(INDEX_ATTRIBUTE)
    if index is not None and index.generation == _generation:
        return index
    if not _declared or not registry.ready:
        # While a registry loads, its models are incomplete; the changes
        # made then end with a registry change that every process obeys.
        return None
    return index_registry(registry)


def install() -> None:
    """Wraps the ORM's write paths (once, from post_load)."""
    from odoo import models

    BaseModel = models.BaseModel
    if getattr(BaseModel.unlink, "_ormcache_redis_hook", False):
        return

    def hook(original, fields_of, result_is_records=False):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            # The whole cost for a model nobody depends on: two dict lookups.
            index = _index(self.pool)
            if index is not None and self._name in index.by_model:
                records = result if result_is_records else self
                if records:
                    index.changed(records, fields_of(*args, **kwargs))
            return result

        wrapper._ormcache_redis_hook = True
        return wrapper

    def any_field(*args, **kwargs):
        return None

    def vals_fields(vals, *args, **kwargs):
        return vals

    def vals_list_fields(vals_list, *args, **kwargs):
        return {name for vals in vals_list for name in vals}

    BaseModel.create = hook(BaseModel.create, any_field, result_is_records=True)
    BaseModel.unlink = hook(BaseModel.unlink, any_field)
    BaseModel.write = hook(BaseModel.write, vals_fields)
    if ODOO.flush_writes_multi:  # 18.0+: _write calls it
        BaseModel._write_multi = hook(BaseModel._write_multi, vals_list_fields)
    else:
        BaseModel._write = hook(BaseModel._write, vals_fields)
