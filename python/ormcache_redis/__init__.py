"""ormcache_redis: Odoo's ormcache on a shared two-tier cache (Rust L1 + Redis L2).

The public API is small:

- :func:`ormcache`: the ``@ormcache``-compatible decorator (plus ``ttl=``).
- :class:`LRU`, :class:`TwoTierCache`: the cache mappings;
  :class:`UnitOfWork`: writes held until a transaction commits.
- :class:`RedisClient`, :class:`Codec`: the Redis client and the safe codec.
- :func:`cache_stats`: the figures of a set of caches as one dict.
- :func:`l1_memory`, :func:`set_l1_max_bytes`: the bytes every L1 of the
  process holds together, and their bound (``ormcache_redis_l1_max_mb``
  from the environment at import, 512 MiB by default; the Odoo addon
  derives it from ``limit_memory_soft``).
- :func:`set_single_flight`: single flight on or off for one method.
- :func:`canonical_key`: a key's canonical bytes (what names it across
  processes); :func:`qualified_name`: a method's name in every process
  (``module.qualname``); :func:`key_method`: the method of an Odoo cache
  key ``(model_name, method, *args)``.
- Errors: :class:`ConfigError` (a bad option: one sentence naming it),
  :class:`RedisUnavailable` (no answer in time, circuit open, budget spent),
  :class:`RedisReplyError` (an error reply, or a reply refused for its size),
  :class:`EncodeError`, :class:`DecodeError` and
  :class:`FormatVersionError` (the codec).
- ``__version__``.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from ormcache_redis._native import (
    LRU,
    Codec,
    ConfigError,
    DecodeError,
    EncodeError,
    FormatVersionError,
    RedisClient,
    RedisReplyError,
    RedisUnavailable,
    TwoTierCache,
    UnitOfWork,
    __version__,
    canonical_key,
    key_method,
    l1_memory,
    qualified_name,
    set_l1_max_bytes,
    set_single_flight,
)
from ormcache_redis.config import OptionSource
from ormcache_redis.stats import cache_stats
from ormcache_redis.two_tier_ormcache import ormcache

set_l1_max_bytes(OptionSource().value("ormcache_redis_l1_max_mb") << 20)

# Odoo and user code test `isinstance(cache, MutableMapping)`.
MutableMapping.register(LRU)

__all__ = [
    "LRU",
    "Codec",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "FormatVersionError",
    "RedisClient",
    "RedisReplyError",
    "RedisUnavailable",
    "TwoTierCache",
    "UnitOfWork",
    "__version__",
    "cache_stats",
    "canonical_key",
    "key_method",
    "l1_memory",
    "ormcache",
    "qualified_name",
    "set_l1_max_bytes",
    "set_single_flight",
]
