"""Figures of a set of caches, as plain dicts for logs, screens and tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ormcache_redis._native import LRU, TwoTierCache, l1_memory

MIB = 1 << 20


def cache_stats(caches: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{cache name: stats}`` for every engine cache in ``caches``.

    ``caches`` is typically ``registry._Registry__caches``; objects that are
    not engine caches are reported with their size only.
    """
    result: dict[str, dict[str, Any]] = {}
    for name, cache in caches.items():
        if isinstance(cache, (TwoTierCache, LRU)):
            result[name] = cache.stats()
        else:
            result[name] = {"entries": len(cache)}
    for stats in result.values():
        # Both LRU and TwoTierCache count lookups that returned a value as
        # `hits` and the others as `misses`.
        hits = stats.get("hits", 0)
        lookups = hits + stats.get("misses", 0)
        stats["hit_ratio"] = hits / lookups if lookups else 0.0
    return result


def l1_memory_text() -> str:
    """The process's L1 in one sentence, as the logs and screens show it."""
    memory = l1_memory()
    return (
        f"L1 of this process: {memory['bytes'] / MIB:.1f} MiB of {memory['max_bytes'] / MIB:.0f} "
        f"MiB in {memory['caches']} caches, {memory['byte_evictions']} entries evicted for "
        f"bytes, {memory['too_large']} values too large to keep"
    )
