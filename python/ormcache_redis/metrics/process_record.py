"""The record one process publishes: its figures, gathered from the
engine's caches and clients, and encoded within the caps readers check
(the busiest methods kept when there are too many)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ormcache_redis._native import RedisClient, l1_memory
from ormcache_redis.metrics.record_check import check_process
from ormcache_redis.metrics.record_format import (
    CACHE_COUNTERS,
    CACHE_GAUGES,
    CLIENT_COUNTERS,
    CLIENT_ROLES,
    FORMAT,
    L1_FIGURES,
    LATENCY_BUCKETS,
    MAX_CACHE_NAME,
    MAX_COUNT,
    MAX_DB_NAME,
    MAX_NAME,
    MAX_REASON,
    MAX_RECORD_SERIES,
    METHOD_COUNTERS,
    SESSION_COUNTERS,
    name_ok,
)


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_COUNT)
    return 0


def latency_counts(engine_buckets: Iterable[Any]) -> list[int]:
    """The engine's ``(upper bound in µs, count)`` pairs as counts per
    :data:`LATENCY_BUCKETS` bucket, the last one being +Inf (not cumulative)."""
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for upper_us, count in engine_buckets:
        seconds = upper_us / 1e6
        slot = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS)
        )
        counts[slot] = min(counts[slot] + _count(count), MAX_COUNT)
    return counts


def _cache_figures(stats: Mapping[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {name: _count(stats.get(name)) for name in CACHE_COUNTERS}
    figures.update({name: _count(stats.get(name)) for name in CACHE_GAUGES})
    methods = {}
    for method_name, method_stats in (stats.get("methods") or {}).items():
        if not name_ok(method_name, MAX_NAME):
            continue  # readers would refuse the whole record
        method: dict[str, Any] = {name: _count(method_stats.get(name)) for name in METHOD_COUNTERS}
        method["latency"] = latency_counts(method_stats.get("redis_latency_buckets_us") or ())
        method["latency_sum_us"] = _count(method_stats.get("redis_latency_sum_us"))
        methods[method_name] = method
    figures["methods"] = methods
    return figures


def process_figures(
    databases: Mapping[str, Mapping[str, Any]],
    *,
    clients: Mapping[str, RedisClient | None] | None = None,
    session_counts: Mapping[str, int] | None = None,
    dropped: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """This process's figures, as published (names readers would refuse
    are left out; :func:`encode_figures` fits the rest within the caps).

    ``databases``: ``{database: {cache name: cache}}`` (engine caches; a
    registry's ``_Registry__caches``); ``clients``: ``{"cache"|"sessions":
    RedisClient}``; ``session_counts``: ``saved`` and refusals by kind;
    ``dropped``: ``{database: {reason: writes dropped}}`` by the addon's
    transaction rules.
    """
    result: dict[str, Any] = {"format": FORMAT, "databases": {}, "clients": {}, "sessions": {}}
    for db_name, caches in databases.items():
        if not name_ok(db_name, MAX_DB_NAME):
            continue
        database: dict[str, Any] = {"caches": {}, "dropped": {}}
        for cache_name, cache in caches.items():
            if not name_ok(cache_name, MAX_CACHE_NAME):
                continue
            try:
                stats = cache.stats()
            except Exception:
                continue
            database["caches"][cache_name] = _cache_figures(stats)
        for reason, count in ((dropped or {}).get(db_name) or {}).items():
            if name_ok(reason, MAX_REASON):
                database["dropped"][reason] = _count(count)
        result["databases"][db_name] = database
    for role, client in (clients or {}).items():
        if client is None or role not in CLIENT_ROLES:
            continue
        stats = client.stats()
        figures = {name: _count(stats.get(name)) for name in CLIENT_COUNTERS}
        figures["healthy"] = 1 if client.healthy else 0
        result["clients"][role] = figures
    result["sessions"] = {
        name: _count((session_counts or {}).get(name)) for name in SESSION_COUNTERS
    }
    memory = l1_memory()
    result["l1"] = {name: _count(memory.get(name)) for name in L1_FIGURES}
    return result


def _dumps(figures: Mapping[str, Any]) -> bytes:
    return json.dumps(figures, separators=(",", ":")).encode()


def _lookups(method: Mapping[str, Any]) -> int:
    return sum(_count(method.get(name)) for name in ("l1_hits", "l2_hits", "misses"))


def _ranked_methods(figures: Mapping[str, Any]) -> tuple[list[tuple[str, str, str]], int]:
    """Every method of ``figures`` as ``(database, cache, method)``, most
    lookups first, and how many series the record has besides."""
    others, ranked = 0, []
    for db_name, database in figures["databases"].items():
        others += 1 + len(database["caches"]) + len(database["dropped"])
        for cache_name, cache in database["caches"].items():
            for method_name, method in cache["methods"].items():
                ranked.append((-_lookups(method), db_name, cache_name, method_name))
    ranked.sort()
    return [(db, cache, method) for _, db, cache, method in ranked], others


def _with_methods(figures: Mapping[str, Any], kept: set[tuple[str, str, str]]) -> dict[str, Any]:
    """``figures`` with only the ``kept`` methods."""
    databases = {
        db_name: {
            **database,
            "caches": {
                cache_name: {
                    **cache,
                    "methods": {
                        name: method
                        for name, method in cache["methods"].items()
                        if (db_name, cache_name, name) in kept
                    },
                }
                for cache_name, cache in database["caches"].items()
            },
        }
        for db_name, database in figures["databases"].items()
    }
    return {**figures, "databases": databases}


def encode_figures(figures: Mapping[str, Any]) -> tuple[bytes | None, str]:
    """``figures`` as published, and why they were trimmed (``""`` when
    not): readers' own :func:`check_process` must accept them, so beyond a
    cap only the methods of most lookups are kept (fewer and fewer, down to
    none). ``(None, why)`` when even that is refused."""
    data = _dumps(figures)
    checked, reason = check_process(data)
    if checked is not None:
        return data, ""
    try:
        ranked, others = _ranked_methods(figures)
        keep = min(len(ranked), max(MAX_RECORD_SERIES - others, 0))
        while True:
            data = _dumps(_with_methods(figures, set(ranked[:keep])))
            if check_process(data)[0] is not None:
                return data, reason
            if keep == 0:
                break
            keep //= 2
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return None, reason
