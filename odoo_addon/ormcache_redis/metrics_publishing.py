"""Cluster metrics in Odoo (17.0, 18.0, 19.0): every process publishes its
figures to Redis from a daemon thread (started by the first unit of work of
each process, so each prefork worker has its own), and
``/ormcache_redis/metrics`` serves the sums of every live process (see
controllers/metrics_route.py). The options are in
``ormcache_redis.odoo_support.metrics_access``."""

from __future__ import annotations

import logging
from typing import Any

from ormcache_redis.config import CACHE_PREFIX
from ormcache_redis.metrics.cluster_reading import ClusterFigures
from ormcache_redis.metrics.process_record import process_figures
from ormcache_redis.metrics.publisher import MetricsPublisher
from ormcache_redis.odoo_support.metrics_access import MetricsAccess

from . import runtime

_logger = logging.getLogger("odoo.addons.ormcache_redis")

# access, client, prefix, publisher, session_store
_state: dict[str, Any] = {}


def install(access: MetricsAccess, session_store: Any) -> None:
    """From post_load, after the caches and the session store. Figures go to
    the cache's Redis, or the sessions' when only sessions use Redis."""
    options = runtime.installed_settings()
    client = runtime.client()
    prefix = options.prefix if options is not None else CACHE_PREFIX
    if client is None and session_store is not None:
        client, prefix = session_store.client, session_store.prefix
    _state.update(access=access, client=client, prefix=prefix, session_store=session_store)
    if client is not None:
        publisher = MetricsPublisher(client, collect, prefix=prefix, interval=access.interval)
        _state["publisher"] = publisher
        runtime.set_metrics_publisher(publisher)
    if access.open:
        readers = [", ".join(map(str, access.allow))] if access.allow else []
        if access.token:
            readers.append("holders of the bearer token")
        _logger.info(
            "metrics at /ormcache_redis/metrics for %s (figures published every %ss)",
            " or ".join(readers),
            access.interval,
        )


def access() -> MetricsAccess | None:
    return _state.get("access")


def collect() -> dict[str, Any]:
    """This process's figures: every loaded registry's caches, the Redis
    clients and the session store's counts."""
    databases, dropped = {}, {}
    for db_name, registry in runtime.loaded_registries():
        tier = runtime.tier_of(registry)
        if tier is None:
            continue
        databases[db_name] = registry._Registry__caches
        dropped[db_name] = {
            name.removeprefix("pending_dropped_"): count
            for name, count in tier.counters.items()
            if name.startswith("pending_dropped_")
        }
    store = _state.get("session_store")
    session_counts = {"saved": store.saved, **store.refused.total} if store is not None else {}
    return process_figures(
        databases,
        clients={
            "cache": runtime.client(),
            "sessions": store.client if store is not None else None,
        },
        session_counts=session_counts,
        dropped=dropped,
    )


def exposition_text() -> str:
    from ormcache_redis.metrics.cluster_reading import cluster_totals
    from ormcache_redis.metrics.prometheus_text import exposition, render

    client = _state.get("client")
    if client is None:
        return render(cluster_totals(ClusterFigures(reachable=False)))
    return exposition(client, _state["prefix"])
