"""What differs between Odoo 17.0, 18.0 and 19.0 where the addon meets Odoo.

One :class:`OdooVersion` per version; ``ODOO`` is the one this process
runs, chosen once when the addon is imported. The rest of the addon asks it
instead of reading ``odoo.release`` or probing Odoo's objects for a feature.
Each field names an Odoo behaviour; the references are to that version's
``odoo/tools/cache.py``, ``odoo/modules/registry.py`` (19:
``odoo/orm/registry.py``), ``odoo/http.py`` and ``odoo/models.py``. The
session store's own differences are the package's
``ormcache_redis.sessions.versions``, chosen by the same ``major``.

``@ormcache`` is looked up three ways, all with the version's rules here:
Odoo's own ``ormcache.lookup``; the Rust hit path (``native_lookup``), which
takes this record's counters, counter key and transaction statistics and
runs ``miss`` on a miss; and the addon decorator's ``ttl=`` lookup
(:meth:`OdooVersion.lookup`), which is Odoo's with the value stored for a
time, through the same ``miss``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import odoo.release

from ormcache_redis import ConfigError, TwoTierCache

# Not ``from odoo.tools import cache``: in 17.0/18.0 that name is the
# ``cache = ormcache`` alias, not the module.
odoo_cache = importlib.import_module("odoo.tools.cache")
# Odoo's logger for the unhashable-key warning, as in ormcache.lookup.
_odoo_logger = logging.getLogger("odoo.tools.cache")

TRANSACTION_LOOKUPS = "_ormcache_lookups"
"""19: the key of ``env.cr.cache``'s set of keys looked up in the transaction."""

# Read-only: one default shared by every call.
_NO_KEYWORDS: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- lookups


def find_17(ormcache: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, Any, bool]:
    """17.0 and 18.0, the start of ``ormcache.lookup``: ``ormcache.lru(model)``
    gives the mapping, the key's head ``(model._name, method)`` and
    ``STAT[db, model, method]``; no transaction statistics."""
    cache, head, counter = ormcache.lru(args[0])
    return cache, head + ormcache.key(*args, **kwargs), counter, False


def find_19(ormcache: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, Any, bool]:
    """19.0, the start of ``ormcache.lookup``: the key holds
    ``(model._name, method)``, the counter is ``_COUNTERS[db, method]``, and
    the transaction's set of keys says whether this is the key's first
    lookup in it (an unhashable key raises there, as in Odoo)."""
    model = args[0]
    cache = model.pool._Registry__caches[ormcache.cache_name]
    key = ormcache.key(*args, **kwargs)
    counter = odoo_cache._COUNTERS[model.pool.db_name, ormcache.method]
    lookups = model.env.cr.cache.setdefault(TRANSACTION_LOOKUPS, set())
    first = key not in lookups
    if first:
        counter.cache_name = ormcache.cache_name
        lookups.add(key)
    return cache, key, counter, first


# The miss code: ``ormcache.lookup`` of each version after the mapping was
# asked. The Rust hit path calls it with the first seven arguments (keywords
# go through Odoo's own wrapper); the decorator's ``ttl=`` lookup adds its
# keywords and the entry's time to live.


def miss_19(
    ormcache: Any,
    cache: Any,
    key: tuple,
    counter: Any,
    first: bool,
    args: tuple,
    error: BaseException,
    kwargs: Mapping[str, Any] = _NO_KEYWORDS,
    ttl: float | None = None,
) -> Any:
    """19.0: ``tx_miss``/``tx_err`` for a key first looked up in the
    transaction, compute time on the monotonic clock."""
    if isinstance(error, KeyError):
        counter.miss += 1
        counter.tx_miss += first
        start = time.monotonic()
        value = ormcache.method(*args, **kwargs)
        counter.gen_time += time.monotonic() - start
        _store(cache, key, value, ttl)
        return value
    counter.tx_err += first
    return _compute_uncached(ormcache, key, counter, args, kwargs, error)


def miss_18(
    ormcache: Any,
    cache: Any,
    key: tuple,
    counter: Any,
    first: bool,
    args: tuple,
    error: BaseException,
    kwargs: Mapping[str, Any] = _NO_KEYWORDS,
    ttl: float | None = None,
) -> Any:
    """18.0: 17.0's, plus ``cache_name`` and ``gen_time`` (wall clock) on a
    miss."""
    if isinstance(error, KeyError):
        counter.miss += 1
        counter.cache_name = ormcache.cache_name
        start = time.time()
        value = ormcache.method(*args, **kwargs)
        _store(cache, key, value, ttl)
        counter.gen_time += time.time() - start
        return value
    return _compute_uncached(ormcache, key, counter, args, kwargs, error)


def miss_17(
    ormcache: Any,
    cache: Any,
    key: tuple,
    counter: Any,
    first: bool,
    args: tuple,
    error: BaseException,
    kwargs: Mapping[str, Any] = _NO_KEYWORDS,
    ttl: float | None = None,
) -> Any:
    """17.0: count the miss, compute, store."""
    if isinstance(error, KeyError):
        counter.miss += 1
        value = ormcache.method(*args, **kwargs)
        _store(cache, key, value, ttl)
        return value
    return _compute_uncached(ormcache, key, counter, args, kwargs, error)


def _store(cache: Any, key: tuple, value: Any, ttl: float | None) -> None:
    # A stand-in pool (QWeb's) or a registry without the addon has Odoo's
    # own mappings: they know no time to live.
    if ttl is not None and isinstance(cache, TwoTierCache):
        cache.set(key, value, ttl)
    else:
        cache[key] = value


def _compute_uncached(
    ormcache: Any,
    key: tuple,
    counter: Any,
    args: tuple,
    kwargs: Mapping[str, Any],
    error: BaseException,
) -> Any:
    """Every version's answer to a key the mapping cannot hash: warn,
    count an error, compute without storing."""
    _odoo_logger.warning("cache lookup error on %r", key, exc_info=error)
    counter.err += 1
    return ormcache.method(*args, **kwargs)


# --------------------------------------------------------------------------- descriptors


def _lazy_property(getter: Callable[[Any], Any], owner: type, name: str) -> Any:
    from odoo.tools.func import lazy_property

    return lazy_property(getter)


def _cached_property(getter: Callable[[Any], Any], owner: type, name: str) -> Any:
    descriptor = functools.cached_property(getter)
    descriptor.__set_name__(owner, name)
    return descriptor


def _ordered_dict(lru: Any) -> dict:
    return dict(lru.d)


def _snapshot(lru: Any) -> dict:
    return lru.snapshot


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class OdooVersion:
    """One Odoo version, where versions differ for this addon."""

    major: int
    registry_module_name: str
    """Where ``Registry``, ``_REGISTRY_CACHES`` and ``_CACHES_BY_KEY`` live."""
    setup_hook: str
    """The ``Registry`` method that sets the models up (once per module
    loaded): after it the addon moves cached methods to the Rust hit path."""
    signaling_skipped_in_test_mode: bool
    """17.0/18.0: while ``registry.in_test_mode()``, ``setup_signaling`` and
    ``check_signaling`` return early and ``signal_changes`` reads nothing
    from the database; 19.0 reads it through the test cursor."""
    counters_name: str
    """The ``odoo.tools.cache`` dict of ``ormcache_counter``: 17.0/18.0
    ``STAT``, 19.0 ``_COUNTERS``."""
    counters_by_model: bool
    """The counters' key: ``(db_name, model_name, method)`` (17.0/18.0) or
    ``(db_name, method)`` (19.0)."""
    transaction_statistics: bool
    """19.0: ``tx_hit``/``tx_miss``/``tx_err`` for the first lookup of a key
    in a transaction, tracked in ``env.cr.cache['_ormcache_lookups']``."""
    lookup_takes_method: bool
    """17.0/18.0 build the wrapper with the ``decorator`` package, which
    calls ``ormcache.lookup(method, *args)``; 19.0 calls ``lookup(*args)``."""
    find: Callable[[Any, tuple, dict], tuple[Any, tuple, Any, bool]]
    """The start of ``ormcache.lookup``: ``(mapping, key, counter, first
    lookup in the transaction)`` of a call."""
    miss: Callable[..., Any]
    """The rest of ``ormcache.lookup`` after the mapping was asked:
    ``miss(ormcache, mapping, key, counter, first, args, error[, kwargs,
    ttl])``, ``error`` the ``KeyError`` or ``TypeError`` it raised."""
    session_store_descriptor: Callable[[Callable[[Any], Any], type, str], Any]
    """How ``Application.session_store`` caches its value: 17.0/18.0
    ``odoo.tools.func.lazy_property``, 19.0 ``functools.cached_property``
    (both non-data descriptors caching in the instance ``__dict__``).
    Called as ``(getter, owner class, attribute name)``."""
    lru_snapshot: Callable[[Any], dict]
    """The entries of one of Odoo's ``LRU`` (``Registry.registries``, a
    registry cache) as a dict: 17.0/18.0 read ``lru.d``, 19.0
    ``lru.snapshot`` (the addon's ``TwoTierCache`` has both)."""
    has_lang_data: bool
    """18.0+: ``res.lang`` caches ``LangData`` and ``LangDataDict``
    (``odoo.addons.base.models.res_lang``), which must come back from Redis
    as themselves."""
    domain_module_name: str | None
    """19.0: ``ir.rule._compute_domain`` caches ``Domain`` trees, the classes
    of this module, which the codec learns (``value_types.
    register_domain_types``); 17.0/18.0 cache domains as lists."""
    set_definitions_module_name: str | None
    """18.0+: ``res.groups._get_group_definitions`` (17.0: none) caches a
    ``SetDefinitions`` of this module in the ``groups`` cache, which the
    codec learns (``value_types.register_set_definitions``)."""
    flush_writes_multi: bool
    """18.0+: the flush writes stored fields through
    ``BaseModel._write_multi(vals_list)`` (which ``_write`` calls); 17.0
    through ``BaseModel._write(vals)``."""
    stats_handler_modules: tuple[str, ...]
    """The modules whose global ``log_ormcache_stats`` is the SIGUSR1
    handler Odoo installs: ``odoo.tools.cache`` defines it and
    ``odoo.service.server`` imports it; 17.0's ``odoo.tools`` re-exports it
    (``from .misc import *``)."""

    def registry_module(self) -> Any:
        return importlib.import_module(self.registry_module_name)

    @property
    def counters(self) -> Any:
        return getattr(odoo_cache, self.counters_name)

    def in_test_mode(self, registry: Any) -> bool:
        """Whether Odoo leaves the database's signaling numbers alone for
        this registry (a test run on 17.0/18.0): the addon then neither
        reads nor confirms them."""
        return self.signaling_skipped_in_test_mode and registry.in_test_mode()

    def lookup(self, ormcache: Any, args: tuple, kwargs: dict, ttl: float | None = None) -> Any:
        """This version's ``ormcache.lookup``, the value stored for ``ttl``
        seconds on a miss (the addon decorator's ``ttl=``): the same key,
        mapping, counters and miss code as Odoo's and the Rust hit path's."""
        cache, key, counter, first = self.find(ormcache, args, kwargs)
        try:
            value = cache[key]
        except (KeyError, TypeError) as caught:
            error = caught  # computed outside the handler, as 19 does
        else:
            counter.hit += 1
            if first:
                counter.tx_hit += 1
            return value
        return self.miss(ormcache, cache, key, counter, first, args, error, kwargs, ttl)


ODOO_17 = OdooVersion(
    major=17,
    registry_module_name="odoo.modules.registry",
    setup_hook="setup_models",
    signaling_skipped_in_test_mode=True,
    counters_name="STAT",
    counters_by_model=True,
    transaction_statistics=False,
    lookup_takes_method=True,
    find=find_17,
    miss=miss_17,
    session_store_descriptor=_lazy_property,
    lru_snapshot=_ordered_dict,
    has_lang_data=False,
    domain_module_name=None,
    set_definitions_module_name=None,
    flush_writes_multi=False,
    stats_handler_modules=("odoo.tools.cache", "odoo.service.server", "odoo.tools"),
)
ODOO_18 = OdooVersion(
    major=18,
    registry_module_name="odoo.modules.registry",
    setup_hook="setup_models",
    signaling_skipped_in_test_mode=True,
    counters_name="STAT",
    counters_by_model=True,
    transaction_statistics=False,
    lookup_takes_method=True,
    find=find_17,
    miss=miss_18,
    session_store_descriptor=_lazy_property,
    lru_snapshot=_ordered_dict,
    has_lang_data=True,
    domain_module_name=None,
    set_definitions_module_name="odoo.tools.set_expression",
    flush_writes_multi=True,
    stats_handler_modules=("odoo.tools.cache", "odoo.service.server"),
)
ODOO_19 = OdooVersion(
    major=19,
    registry_module_name="odoo.orm.registry",
    setup_hook="_setup_models__",
    signaling_skipped_in_test_mode=False,
    counters_name="_COUNTERS",
    counters_by_model=False,
    transaction_statistics=True,
    lookup_takes_method=False,
    find=find_19,
    miss=miss_19,
    session_store_descriptor=_cached_property,
    lru_snapshot=_snapshot,
    has_lang_data=True,
    domain_module_name="odoo.orm.domains",
    set_definitions_module_name="odoo.tools.set_expression",
    flush_writes_multi=True,
    stats_handler_modules=("odoo.tools.cache", "odoo.service.server"),
)
SUPPORTED = {version.major: version for version in (ODOO_17, ODOO_18, ODOO_19)}


def version_for(major: int) -> OdooVersion:
    try:
        return SUPPORTED[major]
    except KeyError:
        raise ConfigError(
            f"ormcache_redis supports Odoo 17.0, 18.0 and 19.0, not {major}."
        ) from None


ODOO = version_for(odoo.release.version_info[0])
"""The Odoo this process runs."""
