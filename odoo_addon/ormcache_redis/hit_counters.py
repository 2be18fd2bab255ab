"""Odoo's ``@ormcache`` statistics counters, their hit counts held natively.

Odoo counts each hit in the method's ``ormcache_counter`` (``hit``, and on
19 ``tx_hit`` for a key's first lookup in a transaction): Python ints in
``__slots__``, so every hit allocates the next int and frees the last. The
counters the Rust hit path creates (``native_lookup.py``) are of
:func:`counter_class`: Odoo's class with those two counts moved to
``_native.HitCounter``, and everything else (the other slots, ``__init__``,
``ratio`` and the other properties) taken from Odoo's class as it is in
the running version. Odoo's code, ``get_cache_key_counter``, the SIGUSR1
statistics and the addon's miss code read and write them as before;
counters Odoo created first stay Odoo's.
"""

from __future__ import annotations

import functools

from ormcache_redis.odoo_support.odoo_lookup import HitCounter

from .odoo_version import odoo_cache

NATIVE_COUNTS = ("hit", "tx_hit")


@functools.cache
def counter_class() -> type:
    """Odoo's ``ormcache_counter``, ``hit`` and ``tx_hit`` native."""
    odoo_class = odoo_cache.ormcache_counter
    slots = tuple(odoo_class.__slots__)
    namespace = {
        name: value
        for name, value in vars(odoo_class).items()
        if name not in ("__slots__", "__dict__", "__weakref__", "__module__", *slots)
    }
    namespace["__slots__"] = tuple(name for name in slots if name not in NATIVE_COUNTS)
    namespace["__module__"] = __name__
    return type(odoo_class.__name__, (HitCounter,), namespace)
