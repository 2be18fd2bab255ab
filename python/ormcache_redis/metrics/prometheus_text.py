"""The cluster's sums in Prometheus's text exposition format, written as
prometheus_client's ``generate_latest`` writes it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from ormcache_redis._native import RedisClient
from ormcache_redis.config import CACHE_PREFIX
from ormcache_redis.metrics.cluster_reading import cluster_totals, read_cluster
from ormcache_redis.metrics.cluster_sums import MAX_SERIES
from ormcache_redis.metrics.record_format import LATENCY_BUCKETS, SESSION_REFUSALS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`render` writes: Prometheus's text exposition format 0.0.4."""


def _value(number: float) -> str:
    """A sample value as prometheus_client writes it (Go's float syntax)."""
    number = float(number)
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if math.isnan(number):
        return "NaN"
    text = repr(number)
    dot = text.find(".")
    if number > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(**labels: str) -> str:
    """``{name="value",...}`` in name order, as prometheus_client sorts them."""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items())) + "}"


class _Family:
    """One metric family's lines of text."""

    def __init__(self, name: str, kind: str, doc: str) -> None:
        self.name = name + "_total" if kind == "counter" else name
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        self.lines = [f"# HELP {self.name} {doc}\n# TYPE {self.name} {kind}\n"]

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{labels} {_value(value)}\n")


_METHOD_FAMILIES = (
    ("l1_hits", "Lookups answered by the process's own cache (L1)."),
    ("l2_hits", "Lookups answered by Redis (L2)."),
    ("misses", "Lookups neither tier answered (the method computed)."),
    ("errors", "Lookups whose key could not be hashed."),
    ("redis_errors", "Lookups whose Redis read failed (a miss)."),
    ("rejected_entries", "Redis entries refused as corrupt, stale or undecodable."),
    ("forged_entries", "Redis entries whose authentication tag did not verify."),
    ("computations", "Values computed after a Redis miss (timed)."),
)
_CACHE_FAMILIES = (
    ("hits", "Lookups that found a value in either tier."),
    ("misses", "Lookups that found nothing."),
    ("writes_queued", "Writes queued for Redis."),
    ("writes_dropped", "Writes dropped (queue full or Redis unavailable)."),
    ("unencodable_values", "Values kept in the process: the codec cannot encode them."),
    ("oversized_entries", "Redis entries announced above max_value_bytes: refused unread."),
    ("flights_planted_locks", "Single-flight locks in Redis that no leader set: ignored."),
    ("flights_planted_costs", "Compute times in Redis whose tag did not verify: ignored."),
)


def _families(totals: Mapping[str, Any]) -> Iterator[_Family]:
    up = _Family(
        "ormcache_redis_redis_up",
        "gauge",
        "Whether Redis answered this reader's PING (1) or not (0).",
    )
    up.add("", 1 if totals["redis_reachable"] else 0)
    yield up
    if totals["redis_ping_seconds"] is not None:
        ping = _Family(
            "ormcache_redis_redis_ping_seconds", "gauge", "Round trip of this reader's PING."
        )
        ping.add("", totals["redis_ping_seconds"])
        yield ping
    processes = _Family(
        "ormcache_redis_processes", "gauge", "Processes whose published figures are live."
    )
    processes.add("", totals["processes"])
    yield processes
    skipped = _Family(
        "ormcache_redis_processes_skipped",
        "gauge",
        "Published figures skipped: unreadable, out of type or range, too big, "
        "or over a cap of the reader.",
    )
    skipped.add("", totals["skipped_processes"])
    yield skipped
    left_out = _Family(
        "ormcache_redis_series_dropped",
        "gauge",
        f"Names (database, cache, method, reason) of processes' figures left out of "
        f"the sums, which hold at most {MAX_SERIES}.",
    )
    left_out.add("", totals.get("dropped_series", 0))
    yield left_out
    method_counters = [
        (name, _Family(f"ormcache_redis_{name}", "counter", doc)) for name, doc in _METHOD_FAMILIES
    ]
    compute = _Family(
        "ormcache_redis_compute_seconds",
        "counter",
        "Time spent computing values after a Redis miss.",
    )
    ratio = _Family(
        "ormcache_redis_hit_ratio",
        "gauge",
        "Hits (L1 + L2) over lookups, since the processes started.",
    )
    latency = _Family(
        "ormcache_redis_redis_latency_seconds",
        "histogram",
        "Redis round trips of lookups (L2 reads).",
    )
    cache_counters = [
        (name, _Family(f"ormcache_redis_cache_{name}", "counter", doc))
        for name, doc in _CACHE_FAMILIES
    ]
    entries = _Family("ormcache_redis_cache_entries", "gauge", "Entries in the processes' L1.")
    held = _Family("ormcache_redis_cache_bytes", "gauge", "Bytes the processes' L1 hold.")
    dropped = _Family(
        "ormcache_redis_pending_writes_dropped",
        "counter",
        "Writes of a transaction never sent (rollback, invalidation, race, overflow).",
    )
    bounds = [f'le="{bound}"' for bound in (*map(str, LATENCY_BUCKETS), "+Inf")]
    for db_name, database in sorted(totals["databases"].items()):
        for reason, count in sorted(database["dropped"].items()):
            dropped.add(_labels(db=db_name, reason=reason), count)
        for cache_name, cache in sorted(database["caches"].items()):
            labels = _labels(cache=cache_name, db=db_name)
            for name, family in cache_counters:
                family.add(labels, cache[name])
            entries.add(labels, cache["entries"])
            held.add(labels, cache["bytes"])
            cache_part = f'cache="{_label(cache_name)}",db="{_label(db_name)}"'
            for method_name, method in sorted(cache["methods"].items()):
                method_part = f'method="{_label(method_name)}"'
                labels = f"{{{cache_part},{method_part}}}"
                for name, family in method_counters:
                    family.add(labels, method[name])
                compute.add(labels, method["compute_us"] / 1e6)
                ratio.add(labels, method["hit_ratio"])
                # The histogram's labels in name order: cache, db, le, method.
                cumulative = 0
                for bound, count in zip(bounds, method["latency"], strict=True):
                    cumulative += count
                    latency.lines.append(
                        f"{latency.name}_bucket{{{cache_part},{bound},{method_part}}} "
                        f"{_value(cumulative)}\n"
                    )
                latency.lines.append(f"{latency.name}_count{labels} {_value(cumulative)}\n")
                latency.lines.append(
                    f"{latency.name}_sum{labels} {_value(method['latency_sum_us'] / 1e6)}\n"
                )
    for _, family in method_counters:
        yield family
    yield compute
    yield ratio
    yield latency
    for _, family in cache_counters:
        yield family
    yield entries
    yield held
    yield from _l1_families(totals["l1"])
    yield dropped
    unhealthy = _Family(
        "ormcache_redis_processes_redis_unhealthy",
        "gauge",
        "Processes whose circuit to Redis is open (Redis unreachable from them).",
    )
    client_errors = _Family("ormcache_redis_client_errors", "counter", "Failed Redis calls.")
    client_failovers = _Family(
        "ormcache_redis_client_failovers",
        "counter",
        "New masters followed: named by the sentinels, or a cluster's MOVED/ASK redirects.",
    )
    client_dropped = _Family(
        "ormcache_redis_client_writes_dropped", "counter", "Write-behind commands dropped."
    )
    client_budget = _Family(
        "ormcache_redis_client_budget_skips",
        "counter",
        "Redis calls not made, or cut short, because a lookup or a request had "
        "spent its socket_timeout on Redis.",
    )
    client_oversized = _Family(
        "ormcache_redis_client_oversized_replies",
        "counter",
        "Replies refused unread: announced above max_value_bytes or an element cap.",
    )
    for role, client in sorted(totals["clients"].items()):
        labels = _labels(role=role)
        unhealthy.add(labels, client["unhealthy"])
        client_errors.add(labels, client["errors"])
        client_failovers.add(labels, client["failovers"])
        client_budget.add(labels, client["budget_skips"])
        client_oversized.add(labels, client["oversized_replies"])
        for reason, name in (
            ("queue_full", "writes_dropped_full"),
            ("unavailable", "writes_dropped_unavailable"),
            ("failed", "writes_failed"),
        ):
            client_dropped.add(_labels(role=role, reason=reason), client[name])
    yield unhealthy
    yield client_errors
    yield client_failovers
    yield client_dropped
    yield client_budget
    yield client_oversized
    sessions = totals["sessions"]
    saved = _Family("ormcache_redis_sessions_saved", "counter", "HTTP sessions written to Redis.")
    saved.add("", sessions["saved"])
    yield saved
    refused = _Family(
        "ormcache_redis_sessions_refused",
        "counter",
        "Session records refused (each request got a new session).",
    )
    for reason in SESSION_REFUSALS:
        refused.add(_labels(reason=reason), sessions[reason])
    yield refused


def render(totals: Mapping[str, Any]) -> str:
    """``cluster_totals`` in Prometheus's text exposition format
    (:data:`CONTENT_TYPE`), as prometheus_client's ``generate_latest``
    writes it: each series' labels are escaped once, so the time is linear
    in the (bounded) number of series."""
    return "".join(line for family in _families(totals) for line in family.lines)


def exposition(client: RedisClient, prefix: str = CACHE_PREFIX) -> str:
    """The cluster's figures, read from Redis now, as Prometheus text."""
    return render(cluster_totals(read_cluster(client, prefix)))


def _l1_families(l1: Mapping[str, int]) -> Iterator[_Family]:
    """The processes' L1 together, each bounded in bytes."""
    for name, kind, doc in (
        ("bytes", "gauge", "Bytes the processes' L1 hold, all caches together."),
        ("max_bytes", "gauge", "The processes' L1 bounds, summed (ormcache_redis_l1_max_mb)."),
        ("byte_evictions", "counter", "Least recently used L1 entries evicted for the bound."),
        ("too_large", "counter", "Values larger than the L1 bound, not kept in L1."),
    ):
        family = _Family(f"ormcache_redis_l1_{name}", kind, doc)
        family.add("", l1[name])
        yield family
