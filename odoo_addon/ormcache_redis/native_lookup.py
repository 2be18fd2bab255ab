"""The ``@ormcache`` hit path in Rust (``_native.OdooLookup``).

Every cached method is a wrapper around ``ormcache.lookup``. On 19 that is
three Python frames and a fresh ``set()`` per call before the mapping is
asked; on 17.0 and 18.0 the wrapper comes from the ``decorator`` package,
whose 5.x (Odoo's pin for Python 3.11+) binds each call's arguments with
``inspect``, several microseconds per hit. ``install`` replaces the wrapper
of each method whose key expressions are parameters, attribute paths from
them, or those passed to ``frozenset``/``tuple`` (``'xmlid'``,
``'model_name', 'mode'``, ``'self.env.uid'``, ``'frozenset(modules)'``:
most of core; ``ormcache_redis.key_plan``) with an ``OdooLookup`` that
builds the same key, keeps the same counters (19: ``_COUNTERS`` with its
``tx_*`` counts and ``env.cr.cache['_ormcache_lookups']``; 17.0/18.0:
``STAT``) and asks the same mapping in one native call. Which counters, keyed how, and the code
run on a miss or an error (Odoo's own) come from the version's record
(``odoo_version.ODOO``). It carries the wrapper's attributes
(``__cache__``, ``__wrapped__``, ``clear_cache``, API markers), so
``add_value``, ``get_cache_key_counter`` and the SIGUSR1 statistics read it
as before. Methods decorated with this addon's ``ormcache`` (``ttl=``,
``depends_on=``) take the same path, their time to live applied by the
miss code. Calls with keywords go through Odoo's wrapper; methods with
other key expressions keep it. ``ormcache_redis_native_lookup = False``
turns it off.
"""

from __future__ import annotations

import functools
import logging
import types
import weakref
from typing import Any

from odoo import fields as odoo_fields

from ormcache_redis.key_plan import KeyPart, KeyPlan, key_plan
from ormcache_redis.odoo_support.odoo_lookup import OdooLookup

from . import cached_methods, hit_counters
from .odoo_version import ODOO, odoo_cache
from .ormcache_with_ttl import ormcache as addon_ormcache

_logger = logging.getLogger("odoo.addons.ormcache_redis")

_COPIED = ("__module__", "__name__", "__qualname__", "__doc__")
# The decorators whose keys, counters and hits are Odoo's own: Odoo's, and
# this addon's (its ``ttl`` is the miss code's to apply). Any other
# subclass may have its own key rules and keeps its wrapper.
_COVERED = (odoo_cache.ormcache, addon_ormcache)

# (class, attribute) -> Odoo's wrapper, to put it back (benchmarks, tests).
_replaced: dict[tuple[type, str], Any] = {}
# Classes already looked at: install runs after every setup of the models.
_scanned: weakref.WeakSet[type] = weakref.WeakSet()


def plan(function: Any) -> KeyPlan | None:
    """``(key parts, defaults)`` (see ``ormcache_redis.key_plan``) when
    ``function`` is Odoo's wrapper of a method this path covers exactly,
    else None."""
    if type(function) is not types.FunctionType:
        return None
    ormcache = cached_methods.ormcache_of(function)
    if type(ormcache) not in _COVERED:
        return None
    if ormcache.skiparg is not None:
        return None
    # Odoo compiles its key lambda in odoo.tools.cache's globals (17.0,
    # 18.0) or in {'method': method} (19): a name either defines shadows.
    namespace = {**vars(odoo_cache), "method": ormcache.method}
    return key_plan(ormcache.method, ormcache.args, namespace)


def native_lookup(function: Any, key_parts: list[KeyPart], defaults: list[Any]) -> OdooLookup:
    ttl = getattr(cached_methods.ormcache_of(function), "ttl", None)
    # A miss stores for ``ttl`` seconds; a hit is L1's, which knows the expiry.
    miss = ODOO.miss if ttl is None else functools.partial(ODOO.miss, ttl=ttl)
    lookup = OdooLookup(
        function,
        key_parts,
        defaults,
        ODOO.counters,
        miss,
        counters_by_model=ODOO.counters_by_model,
        transaction_statistics=ODOO.transaction_statistics,
        # ``Id.__get__`` is the same in 17.0, 18.0 and 19.0: ``_ids[0]`` for
        # one record, False for none, an error for several.
        id_field=odoo_fields.Id,
        counter_class=hit_counters.counter_class(),
    )
    lookup.__dict__.update(function.__dict__)
    for name in _COPIED:
        setattr(lookup, name, getattr(function, name, None))
    return lookup


def install(registry: Any) -> int:
    """Replaces the wrappers of the registry's model classes (each defining
    class once; classes shared with other registries are already done).
    Returns how many were replaced."""
    replaced = 0
    for _model_name, klass in cached_methods.defining_classes(registry, _scanned):
        for attribute, value in list(vars(klass).items()):
            found = plan(value)
            if found is None:
                continue
            setattr(klass, attribute, native_lookup(value, *found))
            _replaced[klass, attribute] = value
            replaced += 1
    if replaced:
        _logger.debug("native hit path for %d more cached method(s)", replaced)
    return replaced


def uninstall() -> None:
    """Puts Odoo's wrappers back everywhere."""
    for (klass, attribute), function in _replaced.items():
        setattr(klass, attribute, function)
    _replaced.clear()
    _scanned.clear()
