"""``kill -USR1 <pid>``: after Odoo's own table, the shared-tier figures
of every registry of the process (17.0, 18.0, 19.0)."""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from typing import Any

from ormcache_redis.stats import MIB, l1_memory_text

from . import runtime
from .odoo_version import ODOO, odoo_cache

_logger = logging.getLogger("odoo.addons.ormcache_redis")


def install() -> None:
    """``kill -USR1``: Odoo's table first, then the shared-tier figures."""
    original = odoo_cache.log_ormcache_stats

    @functools.wraps(original)
    def log_ormcache_stats(sig=None, frame=None):
        result = original(sig, frame)
        # Logging from a signal handler can deadlock on the handler's lock
        # (19 moved its own logging to a thread for that reason).
        threading.Thread(target=log_shared_stats, name="ormcache_redis.stats").start()
        return result

    # Odoo's handler, in every module that holds it under that name.
    for name in ODOO.stats_handler_modules:
        importlib.import_module(name).log_ormcache_stats = log_ormcache_stats


def stats_lines(registry: Any) -> list[str]:
    tier = runtime.tier_of(registry)
    if tier is None:
        return []
    lines = [
        f"ormcache_redis {registry.db_name}: registry r{tier.registry_sequence}, "
        f"counters {tier.counters}"
    ]
    for cache_name, cache in registry._Registry__caches.items():
        stats = cache.stats()
        lines.append(
            f"{cache_name:>25}: {len(cache)}/{cache.count} entries "
            f"({stats.get('bytes', 0) / MIB:.1f} MiB), "
            f"shared={'yes' if stats.get('shared') and cache.client is not None else 'no'}, "
            f"L1 {stats.get('l1_hits', 0)}, L2 {stats.get('l2_hits', 0)}, "
            f"miss {stats.get('misses', 0)}, unencodable {stats.get('unencodable_values', 0)}, "
            f"writes {stats.get('writes_queued', 0)}, "
            f"redis p50 {stats.get('redis_latency_p50_us', 0)}us"
        )
        methods = stats.get("methods") or {}
        for method_name, figures in sorted(methods.items()):
            lookups = figures["l1_hits"] + figures["l2_hits"] + figures["misses"]
            lines.append(
                f"{'':>27}{figures['hit_ratio'] * 100:5.1f}% hit, "
                f"L1 {figures['l1_hits']:6d}, L2 {figures['l2_hits']:6d}, "
                f"miss {figures['misses']:6d}, lookups {lookups:7d}  {method_name}"
            )
    return lines


def log_shared_stats() -> None:
    try:
        _logger.info("%s", l1_memory_text())
        for _db_name, registry in runtime.loaded_registries():
            lines = stats_lines(registry)
            if lines:
                _logger.info("\n".join(lines))
    except Exception:
        _logger.exception("cannot log shared-tier stats")
