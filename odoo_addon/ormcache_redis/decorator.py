"""``from odoo.addons.ormcache_redis import ormcache``: Odoo's decorator,
plus ``ttl=`` and a per-method ``clear_cache``.

It subclasses Odoo's own ``ormcache`` (rather than the engine's standalone
decorator) so that everything Odoo does with a cached method keeps working:
its stats counters and ``kill -USR1`` table, ``get_cache_key_counter``,
``add_value`` and the ``__cache__`` attribute used by core code and tests.

``self._some_method.clear_cache(self)`` invalidates that method's entries,
and only those, in every worker and server: at once in this process, and
through one generation bump in Redis when the transaction commits (Odoo's
``signal_changes``); nothing happens elsewhere if it rolls back.
"""

from __future__ import annotations

import inspect
import logging
import time

from ormcache_redis._native import TwoTierCache, qualified_name, set_single_flight
from ormcache_redis.addon import shared_tier
from ormcache_redis.decorator import check_decorator_arguments

from . import dependencies, method_clear

odoo_cache = method_clear.odoo_cache
_logger = logging.getLogger(__name__)

# 17.0/18.0 call ``lookup(method, *args)`` (built with ``decorator``),
# 19.0 calls ``lookup(*args)``.
_LOOKUP_TAKES_METHOD = list(inspect.signature(odoo_cache.ormcache.lookup).parameters)[1:2] == [
    "method"
]


class ormcache(odoo_cache.ormcache):
    """``@ormcache(*key_exprs, cache='default', ttl=None)``.

    ``ttl`` (seconds) bounds the life of each entry in both tiers (without
    it, entries live until invalidated, and at most ``ormcache_redis_expire``
    in Redis). ``single_flight``: on a shared miss one process computes and
    the others wait for its value: always (True), never (False), or when the
    method's measured compute time is at least 20 ms (None).

    ``depends_on={'model': ['field', ...]}`` (``[]``: any field) clears the
    method when the ORM creates, deletes or writes (one of the fields of)
    records of those models: see ``dependencies``.
    """

    def __init__(
        self,
        *args,
        ttl: float | None = None,
        single_flight: bool | None = None,
        depends_on=None,
        **kwargs,
    ):
        check_decorator_arguments(args, ttl)
        super().__init__(*args, **kwargs)
        self.ttl = ttl
        self.single_flight = single_flight
        self.depends_on = dependencies.normalize(depends_on)

    def __call__(self, method):
        lookup = super().__call__(method)
        if self.single_flight is not None:
            set_single_flight(method, self.single_flight)
        if self.depends_on:
            dependencies.register(self)
        lookup.clear_cache = self.clear_cache
        shared_tier.DECORATED_METHODS.add((self.cache_name, qualified_name(method)))
        return lookup

    def clear_cache(self, model) -> None:
        """Invalidates this method's entries, here and in every process."""
        method_clear.clear_method_cache(self, model)

    if _LOOKUP_TAKES_METHOD:

        def lookup(self, method, *args, **kwargs):
            if self.ttl is None:
                return super().lookup(method, *args, **kwargs)
            return self._lookup_with_ttl(args, kwargs)

    else:

        def lookup(self, *args, **kwargs):
            if self.ttl is None:
                return super().lookup(*args, **kwargs)
            return self._lookup_with_ttl(args, kwargs)

    def _lookup_with_ttl(self, args, kwargs):
        # Odoo's lookup, except that the value is stored with its TTL.
        model = args[0]
        if _LOOKUP_TAKES_METHOD:
            cache, key0, counter = self.lru(model)
            key = key0 + self.key(*args, **kwargs)
        else:
            cache = model.pool._Registry__caches[self.cache_name]
            key = self.key(*args, **kwargs)
            counter = odoo_cache._COUNTERS[model.pool.db_name, self.method]
        if hasattr(counter, "cache_name"):
            counter.cache_name = self.cache_name
        try:
            value = cache[key]
            counter.hit += 1
            return value
        except KeyError:
            counter.miss += 1
        except TypeError:
            _logger.warning("cache lookup error on %r", key, exc_info=True)
            counter.err += 1
            return self.method(*args, **kwargs)
        start = time.monotonic()
        value = self.method(*args, **kwargs)
        if hasattr(counter, "gen_time"):
            counter.gen_time += time.monotonic() - start
        if isinstance(cache, TwoTierCache):
            cache.set(key, value, self.ttl)
        else:
            cache[key] = value
        return value
