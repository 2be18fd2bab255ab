"""What one process's metrics record holds, and where it lives in Redis.

The format version, the counters of each level (method, cache, client,
sessions), the latency buckets, the caps on a record's names and size
that publishers keep to and readers check (:mod:`.record_check`), and the
two keys. A "series" is one name of a record's tree: a database, a cache
of a database, a method of a cache, or a reason writes of a database were
dropped.
"""

from __future__ import annotations

import math

from ormcache_redis.config import OPTIONS
from ormcache_redis.sessions.refusals import RefusedRecords

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
    "oversized_entries",
    "flights_planted_locks",
    "flights_planted_costs",
)
CACHE_GAUGES = ("entries", "max_entries", "bytes")
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
    "budget_skips",
    "oversized_replies",
)
L1_FIGURES = ("bytes", "max_bytes", "byte_evictions", "too_large")
"""The process's L1 together (``l1_memory()``): bytes held, its bound, entries
evicted for it, values too large to keep."""
SESSION_REFUSALS = RefusedRecords.KINDS
SESSION_COUNTERS = ("saved", *SESSION_REFUSALS)
CLIENT_ROLES = ("cache", "sessions")

# Bounds on a record (README, "Cluster-wide figures").
MAX_PROCESS_BYTES = 1 << 20
"""One process's record; Redis measures it, a bigger one is never sent."""
MAX_RECORD_SERIES = 2048
"""Series in one record (publishers keep their busiest methods within it)."""
MAX_DB_NAME = 63  # PostgreSQL's own limit (bytes)
MAX_CACHE_NAME = 64
MAX_NAME = 256
"""Longest method name."""
MAX_REASON = 64
MAX_COUNT = 2**63 - 1
PUBLISH_INTERVAL = OPTIONS["ormcache_redis_metrics_interval"]
"""The publishing interval's option: its default and its (0, 3600] rule."""
MAX_TTL = 3 * math.ceil(PUBLISH_INTERVAL.bounds[1])
"""Longest TTL a publisher sets (three intervals of at most an hour)."""

# The fields of a checked record, as readers sum them.
METHOD_FIELDS = (*METHOD_COUNTERS, "latency_sum_us")
CACHE_FIELDS = (*CACHE_COUNTERS, *CACHE_GAUGES)
CLIENT_FIELDS = (*CLIENT_COUNTERS, "healthy")
BUCKETS = len(LATENCY_BUCKETS) + 1
"""Latency buckets of a method, +Inf included."""


def index_key(prefix: str) -> str:
    return f"{prefix}metrics:processes"


def process_key(prefix: str, process: str) -> str:
    return f"{prefix}metrics:p:{process}"


def name_ok(name: object, limit: int) -> bool:
    """Printable text (no control character, no lone surrogate) of 1..limit characters."""
    return type(name) is str and 0 < len(name) <= limit and name.isprintable()
