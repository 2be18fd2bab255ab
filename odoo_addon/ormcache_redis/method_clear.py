"""``self._some_method.clear_cache(self)`` on every ``@ormcache`` method.

Guides teach it, but on 17.0, 18.0 and 19.0 Odoo's own ``ormcache`` gives
the decorated method no ``clear_cache`` (AttributeError). With this addon
loaded server-wide, every method cached by Odoo's ``ormcache`` (and its
subclasses: ``ormcache_context``, this addon's decorator) gets one that
clears that method's entries, and only those, in every worker and server
when the transaction commits; nothing happens elsewhere if it rolls back.
When the method's cache is not shared through Redis, Odoo's signaling of
the whole cache is the only invalidation every process hears of: that is
used instead.

Two ways in: ``patch_ormcache`` (from the ``post_load`` hook, before custom
addons are imported) covers every method decorated from then on;
``give_clear_cache`` is applied by ``registry_hooks`` to the methods of the
registry's model classes, which covers core methods decorated earlier.
"""

from __future__ import annotations

import functools
from typing import Any

from . import cached_methods, runtime
from .odoo_version import ODOO, odoo_cache


def clear_method_cache(cache: Any, model: Any) -> None:
    """Invalidates the entries of the method ``cache`` (an ``ormcache``
    instance) decorates, here and in every process."""
    registry = model.pool
    tier = runtime.tier_of(registry)
    if tier is not None and tier.request_method_clear(cache.cache_name, cache.method):
        return
    # Not shared through Redis (cache kept local, no URL, or the addon is
    # not loaded server-wide): Odoo's own invalidation of the whole cache
    # is the only one every process hears of.
    registry.clear_cache(_signal_name(cache.cache_name))


def _signal_name(cache_name: str) -> str:
    """The signaling name whose invalidation clears ``cache_name``."""
    caches_by_key = ODOO.registry_module()._CACHES_BY_KEY
    if cache_name in caches_by_key:
        return cache_name
    for name, cache_names in caches_by_key.items():
        if cache_name in cache_names:
            return name
    return "default"


def give_clear_cache(lookup: Any) -> None:
    """Gives a method decorated with ``ormcache`` its ``clear_cache``,
    unless it has one (this addon's decorator sets its own)."""
    cache = cached_methods.ormcache_of(lookup)
    if cache is None:
        return
    if not hasattr(lookup, "clear_cache"):
        lookup.clear_cache = functools.partial(clear_method_cache, cache)


def patch_ormcache() -> None:
    """Every ``ormcache`` decoration from now on gives the method its
    ``clear_cache``. Idempotent; Odoo's ``__call__`` runs unchanged."""
    original_call = odoo_cache.ormcache.__call__
    if getattr(original_call, "_ormcache_redis_clear_cache", False):
        return

    @functools.wraps(original_call)
    def __call__(self, method):
        lookup = original_call(self, method)
        give_clear_cache(lookup)
        return lookup

    __call__._ormcache_redis_clear_cache = True
    odoo_cache.ormcache.__call__ = __call__
