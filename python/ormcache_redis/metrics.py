"""Cluster-wide figures: every process publishes its own to Redis, any
process (or the ``ormcache-redis`` command) reads them all back and sums
them, and :func:`exposition` renders the sums in Prometheus's text format
(with ``prometheus_client``).

Layout, under the cache prefix (``ormcache:`` by default)::

    {prefix}metrics:p:{process}   one process's figures (JSON), with a TTL
    {prefix}metrics:processes     hash: process -> unix time its figures expire

A process that dies stops refreshing its key, which expires, and the next
reader drops it from the hash. Publishing uses the engine's write-behind
queue from a daemon thread of each process, never a request; every command
is in SECURITY.md's ACL list (SET, HSET, EXPIRE, HGETALL, GET, HDEL).

What is read back is untrusted (anyone who can write to Redis can write
there): sizes, names and numbers are checked, and whatever does not fit is
skipped, never a crash. Figures hold counters and names of databases,
caches and methods only: no key, value, address or secret.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ormcache_redis._native import RedisClient, RedisReplyError, RedisUnavailable

__all__ = [
    "LATENCY_BUCKETS",
    "ClusterFigures",
    "MetricsPublisher",
    "exposition",
    "process_figures",
    "read_cluster",
]

_logger = logging.getLogger(__name__)

FORMAT = 1
"""Version of the published JSON; figures of another version are skipped."""

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds (seconds) of the exported Redis latency histogram; +Inf follows.
The engine's own buckets are finer (4 per power of two); each lands in the
first bound at or above its upper edge, so latencies are never understated."""

METHOD_COUNTERS = (
    "l1_hits",
    "l2_hits",
    "misses",
    "errors",
    "redis_errors",
    "rejected_entries",
    "forged_entries",
    "local_only",
    "computations",
    "compute_us",
)
CACHE_COUNTERS = (
    "hits",
    "misses",
    "l1_hits",
    "l2_hits",
    "l2_misses",
    "l2_errors",
    "l2_skipped",
    "rejected_entries",
    "forged_entries",
    "writes_queued",
    "writes_deferred",
    "writes_dropped",
    "unencodable_values",
    "unencodable_keys",
)
CACHE_GAUGES = ("entries", "max_entries")
CLIENT_COUNTERS = (
    "calls",
    "errors",
    "skipped_open",
    "outages",
    "writes_queued",
    "writes_sent",
    "writes_dropped_full",
    "writes_dropped_unavailable",
    "writes_failed",
    "failovers",
)
SESSION_COUNTERS = ("saved", "forged", "no_key", "unreadable")
CLIENT_ROLES = ("cache", "sessions")

# Bounds on what a reader accepts from Redis.
MAX_PROCESS_BYTES = 4 << 20
MAX_PROCESSES = 1024
MAX_DATABASES = 256
MAX_CACHES = 64
MAX_METHODS = 4096
MAX_NAME = 256
MAX_COUNT = 2**63 - 1
_PROCESS_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def index_key(prefix: str) -> str:
    return f"{prefix}metrics:processes"


def process_key(prefix: str, process: str) -> str:
    return f"{prefix}metrics:p:{process}"


# --------------------------------------------------------------------------- one process


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def latency_counts(engine_buckets: Iterable[Any]) -> list[int]:
    """The engine's ``(upper bound in µs, count)`` pairs as counts per
    :data:`LATENCY_BUCKETS` bucket, the last one being +Inf (not cumulative)."""
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for upper_us, count in engine_buckets:
        seconds = upper_us / 1e6
        slot = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS)
        )
        counts[slot] += _count(count)
    return counts


def _cache_figures(stats: Mapping[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {name: _count(stats.get(name)) for name in CACHE_COUNTERS}
    figures.update({name: _count(stats.get(name)) for name in CACHE_GAUGES})
    methods = {}
    for method_name, method_stats in (stats.get("methods") or {}).items():
        method = {name: _count(method_stats.get(name)) for name in METHOD_COUNTERS}
        method["latency"] = latency_counts(method_stats.get("redis_latency_buckets_us") or ())
        method["latency_sum_us"] = _count(method_stats.get("redis_latency_sum_us"))
        methods[str(method_name)] = method
    figures["methods"] = methods
    return figures


def process_figures(
    databases: Mapping[str, Mapping[str, Any]],
    *,
    clients: Mapping[str, RedisClient | None] | None = None,
    session_counts: Mapping[str, int] | None = None,
    dropped: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """This process's figures, as published.

    ``databases``: ``{database: {cache name: cache}}`` (engine caches; a
    registry's ``_Registry__caches``); ``clients``: ``{"cache"|"sessions":
    RedisClient}``; ``session_counts``: ``saved`` and refusals by kind;
    ``dropped``: ``{database: {reason: writes dropped}}`` by the addon's
    transaction rules.
    """
    result: dict[str, Any] = {"format": FORMAT, "databases": {}, "clients": {}, "sessions": {}}
    for db_name, caches in databases.items():
        database: dict[str, Any] = {"caches": {}, "dropped": {}}
        for cache_name, cache in caches.items():
            try:
                stats = cache.stats()
            except Exception:
                continue
            database["caches"][str(cache_name)] = _cache_figures(stats)
        for reason, count in ((dropped or {}).get(db_name) or {}).items():
            database["dropped"][str(reason)] = _count(count)
        result["databases"][str(db_name)] = database
    for role, client in (clients or {}).items():
        if client is None:
            continue
        stats = client.stats()
        figures = {name: _count(stats.get(name)) for name in CLIENT_COUNTERS}
        figures["healthy"] = 1 if client.healthy else 0
        result["clients"][role] = figures
    result["sessions"] = {
        name: _count((session_counts or {}).get(name)) for name in SESSION_COUNTERS
    }
    return result


class MetricsPublisher:
    """Publishes ``collect()`` every ``interval`` seconds from a daemon
    thread of this process, through the client's write-behind queue.

    ``start()`` is cheap and idempotent: call it from any hook that runs in
    every process (a forked child has no thread and starts its own, under a
    new process id)."""

    def __init__(
        self,
        client: RedisClient,
        collect: Callable[[], Mapping[str, Any]],
        *,
        prefix: str = "ormcache:",
        interval: float = 15.0,
    ) -> None:
        if not (isinstance(interval, int | float) and 0 < interval <= 3600):
            raise ValueError(f"interval must be seconds in (0, 3600], got {interval!r}")
        self.client = client
        self.collect = collect
        self.prefix = prefix
        self.interval = float(interval)
        # A dead process's figures outlive it by at most three intervals.
        self.ttl = max(math.ceil(self.interval * 3), 5)
        self._pid: int | None = None
        self._process = ""
        self._lock = threading.Lock()
        self._thread_pid: int | None = None
        self._stopped = threading.Event()
        self.published = 0
        publisher = weakref.ref(self)

        def after_fork_in_child() -> None:
            # The parent's lock may have been held by one of its threads.
            alive = publisher()
            if alive is not None:
                alive._lock = threading.Lock()

        os.register_at_fork(after_in_child=after_fork_in_child)

    @property
    def process(self) -> str:
        """This process's name in Redis: its pid and a random part (pids are
        reused across machines and restarts)."""
        pid = os.getpid()
        if self._pid != pid:
            self._process = f"{pid}-{secrets.token_hex(6)}"
            self._pid = pid
        return self._process

    def publish(self) -> bool:
        """Queues this process's figures now; False when the queue refused them."""
        data = json.dumps(self.collect(), separators=(",", ":")).encode()
        process = self.process
        queued = self.client.enqueue("SET", process_key(self.prefix, process), data, "EX", self.ttl)
        queued = (
            self.client.enqueue(
                "HSET", index_key(self.prefix), process, int(time.time()) + self.ttl
            )
            and queued
        )
        queued = self.client.enqueue("EXPIRE", index_key(self.prefix), self.ttl) and queued
        if queued:
            self.published += 1
        return queued

    def start(self) -> None:
        if self._thread_pid == os.getpid():
            return
        with self._lock:
            pid = os.getpid()
            if self._thread_pid == pid:
                return
            self._thread_pid = pid
            self._stopped = threading.Event()
            threading.Thread(
                target=self._run, args=(pid,), name="ormcache_redis.metrics", daemon=True
            ).start()

    def stop(self) -> None:
        """Ends the thread of this process (after its current round)."""
        self._stopped.set()

    def _run(self, pid: int) -> None:
        while os.getpid() == pid and not self._stopped.is_set():
            try:
                self.publish()
            except Exception:
                _logger.debug("cannot publish metrics", exc_info=True)
            self._stopped.wait(self.interval)


# --------------------------------------------------------------------------- reading


@dataclass
class ClusterFigures:
    """What a reader found: the live processes' figures, checked."""

    reachable: bool
    ping_seconds: float | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None


def _name(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME and not _CONTROL.search(value):
        return value
    return None


def _counts(raw: object, names: Iterable[str]) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    result = {}
    for name in names:
        value = raw.get(name, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT):
            return None
        result[name] = value
    return result


def _items(raw: object, limit: int) -> Iterator[tuple[str, Any]]:
    if isinstance(raw, dict):
        for count, (key, value) in enumerate(raw.items()):
            if count >= limit:
                return
            name = _name(key)
            if name is not None:
                yield name, value


def _checked_method(raw: object) -> dict[str, Any] | None:
    method = _counts(raw, (*METHOD_COUNTERS, "latency_sum_us"))
    if method is None:
        return None
    latency = raw.get("latency")  # type: ignore[union-attr]
    if not (
        isinstance(latency, list)
        and len(latency) == len(LATENCY_BUCKETS) + 1
        and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_COUNT for n in latency
        )
    ):
        return None
    method["latency"] = latency
    return method


def checked_process(data: object) -> dict[str, Any] | None:
    """A process's published figures, keeping only what has the expected
    shape; None when the whole is unusable (garbage, another format)."""
    if not isinstance(data, bytes | str) or len(data) > MAX_PROCESS_BYTES:
        return None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    result: dict[str, Any] = {"databases": {}, "clients": {}, "sessions": {}}
    for db_name, database in _items(raw.get("databases"), MAX_DATABASES):
        if not isinstance(database, dict):
            continue
        caches = {}
        for cache_name, cache in _items(database.get("caches"), MAX_CACHES):
            figures = _counts(cache, (*CACHE_COUNTERS, *CACHE_GAUGES))
            if figures is None:
                continue
            methods = {}
            for method_name, method in _items(cache.get("methods"), MAX_METHODS):
                checked = _checked_method(method)
                if checked is not None:
                    methods[method_name] = checked
            figures["methods"] = methods
            caches[cache_name] = figures
        dropped = {}
        for reason, count in _items(database.get("dropped"), 32):
            if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_COUNT:
                dropped[reason] = count
        result["databases"][db_name] = {"caches": caches, "dropped": dropped}
    for role, client in _items(raw.get("clients"), len(CLIENT_ROLES)):
        figures = _counts(client, (*CLIENT_COUNTERS, "healthy"))
        if role in CLIENT_ROLES and figures is not None and figures["healthy"] in (0, 1):
            result["clients"][role] = figures
    result["sessions"] = _counts(raw.get("sessions"), SESSION_COUNTERS) or dict.fromkeys(
        SESSION_COUNTERS, 0
    )
    return result


def _hash_pairs(reply: object) -> list[tuple[bytes, bytes]]:
    """HGETALL's reply: a flat list (RESP2) or a map (RESP3); other shapes are empty."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    elif isinstance(reply, list) and len(reply) % 2 == 0:
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    else:
        return []
    return [(k, v) for k, v in pairs if isinstance(k, bytes) and isinstance(v, bytes)]


def read_cluster(client: RedisClient, prefix: str = "ormcache:") -> ClusterFigures:
    """Every live process's figures. Redis unreachable is ``reachable=False``
    (never an exception); entries of dead processes are removed from the
    index on the way."""
    try:
        ping = client.ping()
        reply = client.execute("HGETALL", index_key(prefix))
    except (RedisUnavailable, RedisReplyError) as error:
        return ClusterFigures(reachable=False, error=str(error))
    figures = ClusterFigures(reachable=True, ping_seconds=ping)
    now = time.time()
    live: list[str] = []
    dead: list[bytes] = []
    for raw_process, raw_expiry in sorted(_hash_pairs(reply))[:MAX_PROCESSES]:
        process = raw_process.decode("ascii", "replace")
        expiry = raw_expiry.decode("ascii", "replace")
        if not _PROCESS_ID.fullmatch(process) or not expiry.isdigit() or int(expiry) < now:
            dead.append(raw_process)
        else:
            live.append(process)
    try:
        for start in range(0, len(live), 100):
            chunk = live[start : start + 100]
            values = client.pipeline([("GET", process_key(prefix, p)) for p in chunk])
            for process, value in zip(chunk, values, strict=False):
                if value is None:
                    dead.append(process.encode())
                    continue
                checked = checked_process(value)
                if checked is None:
                    figures.skipped += 1
                else:
                    figures.processes.append(checked)
        if dead:
            client.execute("HDEL", index_key(prefix), *dead[:MAX_PROCESSES])
    except (RedisUnavailable, RedisReplyError) as error:
        figures.error = str(error)
    return figures


# --------------------------------------------------------------------------- sums


def cluster_totals(figures: ClusterFigures) -> dict[str, Any]:
    """Sums over processes: ``databases -> caches -> figures and methods``,
    ``clients`` by role (plus ``unhealthy``: processes whose circuit is
    open), ``sessions``, and ``processes``. Hit ratios are computed on the
    sums."""
    databases: dict[str, Any] = {}
    clients: dict[str, dict[str, int]] = {}
    sessions = dict.fromkeys(SESSION_COUNTERS, 0)
    for process in figures.processes:
        for db_name, database in process["databases"].items():
            total_db = databases.setdefault(db_name, {"caches": {}, "dropped": {}})
            for reason, count in database["dropped"].items():
                total_db["dropped"][reason] = total_db["dropped"].get(reason, 0) + count
            for cache_name, cache in database["caches"].items():
                total = total_db["caches"].setdefault(
                    cache_name,
                    {**dict.fromkeys((*CACHE_COUNTERS, *CACHE_GAUGES), 0), "methods": {}},
                )
                for name in (*CACHE_COUNTERS, *CACHE_GAUGES):
                    total[name] += cache[name]
                for method_name, method in cache["methods"].items():
                    method_total = total["methods"].setdefault(
                        method_name,
                        {
                            **dict.fromkeys((*METHOD_COUNTERS, "latency_sum_us"), 0),
                            "latency": [0] * (len(LATENCY_BUCKETS) + 1),
                        },
                    )
                    for name in (*METHOD_COUNTERS, "latency_sum_us"):
                        method_total[name] += method[name]
                    method_total["latency"] = [
                        a + b
                        for a, b in zip(method_total["latency"], method["latency"], strict=True)
                    ]
        for role, client in process["clients"].items():
            total_client = clients.setdefault(
                role, {**dict.fromkeys(CLIENT_COUNTERS, 0), "unhealthy": 0}
            )
            for name in CLIENT_COUNTERS:
                total_client[name] += client[name]
            total_client["unhealthy"] += 1 - client["healthy"]
        for name in SESSION_COUNTERS:
            sessions[name] += process["sessions"][name]
    for database in databases.values():
        for cache in database["caches"].values():
            cache["hit_ratio"] = _ratio(cache["hits"], cache["hits"] + cache["misses"])
            for method in cache["methods"].values():
                hits = method["l1_hits"] + method["l2_hits"]
                method["hit_ratio"] = _ratio(hits, hits + method["misses"])
    return {
        "redis_reachable": figures.reachable,
        "redis_ping_seconds": figures.ping_seconds,
        "processes": len(figures.processes),
        "skipped_processes": figures.skipped,
        "databases": databases,
        "clients": clients,
        "sessions": sessions,
    }


def _ratio(hits: int, lookups: int) -> float:
    return hits / lookups if lookups else 0.0


# --------------------------------------------------------------------------- Prometheus


class _ClusterCollector:
    """A prometheus_client collector over one reading of the cluster."""

    def __init__(self, totals: Mapping[str, Any]) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        totals = self.totals
        yield GaugeMetricFamily(
            "ormcache_redis_redis_up",
            "Whether Redis answered this reader's PING (1) or not (0).",
            value=1 if totals["redis_reachable"] else 0,
        )
        if totals["redis_ping_seconds"] is not None:
            yield GaugeMetricFamily(
                "ormcache_redis_redis_ping_seconds",
                "Round trip of this reader's PING.",
                value=totals["redis_ping_seconds"],
            )
        yield GaugeMetricFamily(
            "ormcache_redis_processes",
            "Processes whose published figures are live.",
            value=totals["processes"],
        )
        yield GaugeMetricFamily(
            "ormcache_redis_processes_skipped",
            "Published figures skipped as unreadable (garbage or another format).",
            value=totals["skipped_processes"],
        )
        method_labels = ["db", "cache", "method"]
        method_counters = {
            name: CounterMetricFamily(f"ormcache_redis_{name}", doc, labels=method_labels)
            for name, doc in (
                ("l1_hits", "Lookups answered by the process's own cache (L1)."),
                ("l2_hits", "Lookups answered by Redis (L2)."),
                ("misses", "Lookups neither tier answered (the method computed)."),
                ("errors", "Lookups whose key could not be hashed."),
                ("redis_errors", "Lookups whose Redis read failed (a miss)."),
                ("rejected_entries", "Redis entries refused as corrupt, stale or undecodable."),
                ("forged_entries", "Redis entries whose authentication tag did not verify."),
                ("computations", "Values computed after a Redis miss (timed)."),
            )
        }
        compute = CounterMetricFamily(
            "ormcache_redis_compute_seconds",
            "Time spent computing values after a Redis miss.",
            labels=method_labels,
        )
        ratio = GaugeMetricFamily(
            "ormcache_redis_hit_ratio",
            "Hits (L1 + L2) over lookups, since the processes started.",
            labels=method_labels,
        )
        latency = HistogramMetricFamily(
            "ormcache_redis_redis_latency_seconds",
            "Redis round trips of lookups (L2 reads).",
            labels=method_labels,
        )
        cache_labels = ["db", "cache"]
        cache_counters = {
            name: CounterMetricFamily(f"ormcache_redis_cache_{name}", doc, labels=cache_labels)
            for name, doc in (
                ("hits", "Lookups that found a value in either tier."),
                ("misses", "Lookups that found nothing."),
                ("writes_queued", "Writes queued for Redis."),
                ("writes_dropped", "Writes dropped (queue full or Redis unavailable)."),
                ("unencodable_values", "Values kept in the process: the codec cannot encode them."),
            )
        }
        entries = GaugeMetricFamily(
            "ormcache_redis_cache_entries", "Entries in the processes' L1.", labels=cache_labels
        )
        dropped = CounterMetricFamily(
            "ormcache_redis_pending_writes_dropped",
            "Writes of a transaction never sent (rollback, invalidation, race, overflow).",
            labels=["db", "reason"],
        )
        for db_name, database in sorted(totals["databases"].items()):
            for reason, count in sorted(database["dropped"].items()):
                dropped.add_metric([db_name, reason], count)
            for cache_name, cache in sorted(database["caches"].items()):
                labels = [db_name, cache_name]
                for name, family in cache_counters.items():
                    family.add_metric(labels, cache[name])
                entries.add_metric(labels, cache["entries"])
                for method_name, method in sorted(cache["methods"].items()):
                    labels = [db_name, cache_name, method_name]
                    for name, family in method_counters.items():
                        family.add_metric(labels, method[name])
                    compute.add_metric(labels, method["compute_us"] / 1e6)
                    ratio.add_metric(labels, method["hit_ratio"])
                    cumulative, buckets = 0, []
                    for bound, count in zip(
                        (*map(str, LATENCY_BUCKETS), "+Inf"), method["latency"], strict=True
                    ):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    latency.add_metric(labels, buckets, method["latency_sum_us"] / 1e6)
        yield from method_counters.values()
        yield compute
        yield ratio
        yield latency
        yield from cache_counters.values()
        yield entries
        yield dropped
        client_labels = ["role"]
        unhealthy = GaugeMetricFamily(
            "ormcache_redis_processes_redis_unhealthy",
            "Processes whose circuit to Redis is open (Redis unreachable from them).",
            labels=client_labels,
        )
        client_errors = CounterMetricFamily(
            "ormcache_redis_client_errors", "Failed Redis calls.", labels=client_labels
        )
        client_dropped = CounterMetricFamily(
            "ormcache_redis_client_writes_dropped",
            "Write-behind commands dropped.",
            labels=["role", "reason"],
        )
        client_failovers = CounterMetricFamily(
            "ormcache_redis_client_failovers",
            "New masters followed: named by the sentinels, or a cluster's MOVED/ASK redirects.",
            labels=client_labels,
        )
        for role, client in sorted(totals["clients"].items()):
            unhealthy.add_metric([role], client["unhealthy"])
            client_errors.add_metric([role], client["errors"])
            client_failovers.add_metric([role], client["failovers"])
            client_dropped.add_metric([role, "queue_full"], client["writes_dropped_full"])
            client_dropped.add_metric([role, "unavailable"], client["writes_dropped_unavailable"])
            client_dropped.add_metric([role, "failed"], client["writes_failed"])
        yield unhealthy
        yield client_errors
        yield client_failovers
        yield client_dropped
        sessions = totals["sessions"]
        yield CounterMetricFamily(
            "ormcache_redis_sessions_saved",
            "HTTP sessions written to Redis.",
            value=sessions["saved"],
        )
        refused = CounterMetricFamily(
            "ormcache_redis_sessions_refused",
            "Session records refused (each request got a new session).",
            labels=["reason"],
        )
        for reason in ("forged", "no_key", "unreadable"):
            refused.add_metric([reason], sessions[reason])
        yield refused


def render(totals: Mapping[str, Any]) -> str:
    """``cluster_totals`` in Prometheus's text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ClusterCollector(totals))
    return generate_latest(registry).decode("utf-8")


def exposition(client: RedisClient, prefix: str = "ormcache:") -> str:
    """The cluster's figures, read from Redis now, as Prometheus text."""
    return render(cluster_totals(read_cluster(client, prefix)))
