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

from ormcache_redis import qualified_name, set_single_flight
from ormcache_redis.odoo_support import shared_tier
from ormcache_redis.two_tier_ormcache import check_decorator_arguments

from . import dependencies, method_clear
from .odoo_version import ODOO, odoo_cache


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

    # With ``ttl``: the version's own lookup (Odoo's key, mapping, counters
    # and miss code), the value stored for ``ttl`` seconds.
    if ODOO.lookup_takes_method:  # 17.0/18.0: ``lookup(method, *args)``

        def lookup(self, method, *args, **kwargs):
            if self.ttl is None:
                return super().lookup(method, *args, **kwargs)
            return ODOO.lookup(self, args, kwargs, self.ttl)

    else:

        def lookup(self, *args, **kwargs):
            if self.ttl is None:
                return super().lookup(*args, **kwargs)
            return ODOO.lookup(self, args, kwargs, self.ttl)
