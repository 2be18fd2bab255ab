"""Cluster-wide figures: every process publishes its own to Redis, any
process (or the ``ormcache-redis`` command) reads them all back and sums
them, and :func:`exposition` renders the sums in Prometheus's text format.

Layout, under the cache prefix (``ormcache:`` by default)::

    {prefix}metrics:p:{process}   one process's figures (JSON), with a TTL
    {prefix}metrics:processes     hash: process -> unix time its figures expire

A process that dies stops refreshing its key, which expires, and the next
reader drops it from the hash. Publishing uses the engine's write-behind
queue from a daemon thread of each process, never a request. Every command
is in SECURITY.md's ACL list: SET, HSET, EXPIRE; readers EVAL scripts that
run STRLEN (optional), GET, HGETALL, HDEL and DEL.

What is read back is untrusted (anyone who can write to Redis can write
there). Redis measures each key before sending it (a Lua script per key,
so it works on a cluster too): a key that is too big or of another type
costs this process nothing and never fails the reading of another one.
Each record is then checked whole by :func:`check_process` (the one
routine, which publishers also run on what they are about to publish): a
record with anything out of type or range is skipped and counted, never
an exception. Readings are bounded (records, bytes, names; the ``MAX_``
constants below), and so is the text they render.
Figures hold counters and names of databases, caches and methods only: no
key, value, address or secret.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import operator
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
from ormcache_redis.config import CACHE_PREFIX, OPTIONS
from ormcache_redis.sessions.refusals import RefusedRecords

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "ClusterFigures",
    "MetricsPublisher",
    "check_process",
    "encode_figures",
    "exposition",
    "process_figures",
    "read_cluster",
]

_logger = logging.getLogger(__name__)

FORMAT = 1
"""Version of the published JSON; figures of another version are skipped."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`render` writes: Prometheus's text exposition format 0.0.4."""

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
    "budget_skips",
    "oversized_replies",
)
SESSION_REFUSALS = RefusedRecords.KINDS
SESSION_COUNTERS = ("saved", *SESSION_REFUSALS)
CLIENT_ROLES = ("cache", "sessions")

# Bounds on what a reader accepts from Redis (README, "Cluster-wide figures").
# A "series" is one name of a record's tree: a database, a cache of a
# database, a method of a cache, or a reason writes of a database were dropped.
MAX_PROCESS_BYTES = 1 << 20
"""One process's record; Redis measures it, a bigger one is never sent."""
MAX_PROCESSES = 1024
"""Records read per reading (live processes, in the order of their names)."""
MAX_INDEX_ENTRIES = 4096
"""Entries of the index; a bigger index (or one that is not a hash) is
deleted by the reader, and live processes list themselves again within
one interval."""
MAX_READ_BYTES = 64 << 20
"""Bytes of records read per reading; later records are skipped."""
MAX_READ_SERIES = 1 << 18
"""Series checked per reading; later records are skipped."""
READ_SECONDS = 2.0
"""A reading starts no round trip for records after this time; later
records are skipped (the time to check them depends on the machine)."""
MAX_RECORD_SERIES = 2048
"""Series in one record (publishers keep their busiest methods within it)."""
MAX_SERIES = 4096
"""Series in the sums: those most processes report (of the first
4 * MAX_SERIES met); the others are left out and counted, a record's other
figures are summed."""
MAX_DB_NAME = 63  # PostgreSQL's own limit (bytes)
MAX_CACHE_NAME = 64
MAX_NAME = 256
"""Longest method name."""
MAX_REASON = 64
MAX_COUNT = 2**63 - 1
_INTERVAL = OPTIONS["ormcache_redis_metrics_interval"]
MAX_TTL = 3 * math.ceil(_INTERVAL.bounds[1])
"""Longest TTL a publisher sets (three intervals of at most an hour)."""
_GATHERED_SERIES = 4 * MAX_SERIES
_CLOCK_SKEW = 3600
_PROCESS_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_PROCESS_ID = 128
_MAX_EXPIRY_DIGITS = 20
_READ_BATCH = 16
"""Records per round trip: at most 16 MiB in one reply."""

# One process's record if it is a string of at most ARGV[1] bytes; else its
# size, or -1 when the key holds another type. Redis measures it (STRLEN; an
# ACL without +strlen makes the script read the value to measure it), and
# WRONGTYPE is an answer (pcall): one bad key never fails a batch. One key
# per script, so a cluster runs each where its key lives.
_READ_RECORD = """
local limit = tonumber(ARGV[1])
local size = redis.pcall('STRLEN', KEYS[1])
if type(size) == 'table' then
  if string.sub(size['err'], 1, 9) == 'WRONGTYPE' then return -1 end
  local value = redis.pcall('GET', KEYS[1])
  if type(value) == 'table' then
    if string.sub(value['err'], 1, 9) == 'WRONGTYPE' then return -1 end
    return value
  end
  if value and #value > limit then return #value end
  return value
end
if size > limit then return size end
return redis.call('GET', KEYS[1])
"""

# The index as {removed, process, expiry, ...}: entries whose name or expiry
# is longer than ARGV[2] or ARGV[3] bytes are removed, never sent. An index
# that is not a hash, or has more than ARGV[1] entries, is deleted
# (publishers list themselves again): the answer is then -1, or its size.
_READ_INDEX = """
local entries = redis.pcall('HGETALL', KEYS[1])
if entries['err'] then
  if string.sub(entries['err'], 1, 9) ~= 'WRONGTYPE' then return entries end
  redis.call('DEL', KEYS[1])
  return -1
end
if #entries > 2 * tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return #entries / 2
end
local kept, bad = {0}, {}
for i = 1, #entries, 2 do
  if #entries[i] <= tonumber(ARGV[2]) and #entries[i + 1] <= tonumber(ARGV[3]) then
    kept[#kept + 1] = entries[i]
    kept[#kept + 1] = entries[i + 1]
  else
    bad[#bad + 1] = entries[i]
  end
end
if #bad > 0 then redis.call('HDEL', KEYS[1], unpack(bad)) end
kept[1] = #bad
return kept
"""


def index_key(prefix: str) -> str:
    return f"{prefix}metrics:processes"


def process_key(prefix: str, process: str) -> str:
    return f"{prefix}metrics:p:{process}"


def _name_ok(name: object, limit: int) -> bool:
    """Printable text (no control character, no lone surrogate) of 1..limit characters."""
    return type(name) is str and 0 < len(name) <= limit and name.isprintable()


# --------------------------------------------------------------------------- one process


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
        if not _name_ok(method_name, MAX_NAME):
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
        if not _name_ok(db_name, MAX_DB_NAME):
            continue
        database: dict[str, Any] = {"caches": {}, "dropped": {}}
        for cache_name, cache in caches.items():
            if not _name_ok(cache_name, MAX_CACHE_NAME):
                continue
            try:
                stats = cache.stats()
            except Exception:
                continue
            database["caches"][cache_name] = _cache_figures(stats)
        for reason, count in ((dropped or {}).get(db_name) or {}).items():
            if _name_ok(reason, MAX_REASON):
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
        prefix: str = CACHE_PREFIX,
        interval: float = _INTERVAL.default,
    ) -> None:
        if not isinstance(interval, int | float):
            raise ValueError(f"interval must be a number of seconds, got {interval!r}")
        self.client = client
        self.collect = collect
        self.prefix = prefix
        # The option's rule: (0, 3600] (ConfigError is a ValueError).
        self.interval = _INTERVAL.parse(repr(float(interval)), "interval")
        # A dead process's figures outlive it by at most three intervals.
        self.ttl = max(math.ceil(self.interval * 3), 5)
        self._pid: int | None = None
        self._process = ""
        self._lock = threading.Lock()
        self._thread_pid: int | None = None
        self._stopped = threading.Event()
        self._warned = ""
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
        """Queues this process's figures now; False when the queue refused
        them, or readers would (logged once per cause)."""
        data, reason = encode_figures(self.collect())
        if reason and reason != self._warned:
            self._warned = reason
            _logger.warning(
                "this process's figures are %s: readers would skip them (%s)",
                "published without some methods" if data is not None else "not published",
                reason,
            )
        if data is None:
            return False
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


# --------------------------------------------------------------------------- checking


class _Invalid(Exception):
    """A record out of type or range; ``args[0]`` says what (never its content)."""


def _object(value: object, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid(f"{what} is not an object")
    return value


def _name(name: str, limit: int, what: str) -> str:
    if not _name_ok(name, limit):
        raise _Invalid(f"a {what} name is not printable text of 1 to {limit} characters")
    return name


_INT = {int}


def _all_counts(values: list[Any]) -> bool:
    """Whether every value is an int (not a bool) in 0..MAX_COUNT; C loops only."""
    return not values or (
        set(map(type, values)) == _INT and min(values) >= 0 and max(values) <= MAX_COUNT
    )


def _counts(raw: object, names: tuple[str, ...], what: str) -> dict[str, int]:
    """The named counts of ``raw`` (absent: 0); unknown fields are ignored."""
    raw = _object(raw, what)
    values = [raw.get(name, 0) for name in names]
    if not _all_counts(values):
        raise _Invalid(f"{what} figures are not all counts")
    return dict(zip(names, values, strict=True))


_METHOD_FIELDS = (*METHOD_COUNTERS, "latency_sum_us")
_CACHE_FIELDS = (*CACHE_COUNTERS, *CACHE_GAUGES)
_CLIENT_FIELDS = (*CLIENT_COUNTERS, "healthy")
_BUCKETS = len(LATENCY_BUCKETS) + 1


_METHOD_DEFAULTS: dict[str, Any] = {**dict.fromkeys(_METHOD_FIELDS, 0), "latency": None}
_METHOD_VALUES = operator.itemgetter(*_METHOD_FIELDS, "latency")


def _method(raw: object) -> dict[str, Any]:
    *values, latency = _METHOD_VALUES({**_METHOD_DEFAULTS, **_object(raw, "a method")})
    if type(latency) is not list or len(latency) != _BUCKETS or not _all_counts(values + latency):
        raise _Invalid(f"a method's figures are not all counts, with {_BUCKETS} latency buckets")
    method: dict[str, Any] = dict(zip(_METHOD_FIELDS, values, strict=True))
    method["latency"] = latency
    return method


def _checked(raw: dict[str, Any], budget: list[int]) -> dict[str, Any]:
    """The figures of a parsed record, all checked; ``budget[0]`` counts its series."""
    series = 0

    def grow(count: int) -> None:
        nonlocal series
        series += count
        budget[0] += count
        if series > MAX_RECORD_SERIES:
            raise _Invalid(f"more than {MAX_RECORD_SERIES} series")

    result: dict[str, Any] = {"databases": {}, "clients": {}}
    databases = _object(raw.get("databases", {}), "databases")
    grow(len(databases))
    for db_name, raw_database in databases.items():
        database = _object(raw_database, "a database")
        caches = _object(database.get("caches", {}), "a database's caches")
        dropped = _object(database.get("dropped", {}), "a database's dropped writes")
        grow(len(caches) + len(dropped))
        checked_caches = {}
        for cache_name, raw_cache in caches.items():
            cache: dict[str, Any] = _counts(raw_cache, _CACHE_FIELDS, "a cache's")
            methods = _object(raw_cache.get("methods", {}), "a cache's methods")
            grow(len(methods))
            cache["methods"] = {
                _name(method_name, MAX_NAME, "method"): _method(method)
                for method_name, method in methods.items()
            }
            checked_caches[_name(cache_name, MAX_CACHE_NAME, "cache")] = cache
        checked_dropped = {}
        for reason, count in dropped.items():
            if type(count) is not int or not 0 <= count <= MAX_COUNT:
                raise _Invalid("a count of dropped writes is not a count")
            checked_dropped[_name(reason, MAX_REASON, "reason")] = count
        result["databases"][_name(db_name, MAX_DB_NAME, "database")] = {
            "caches": checked_caches,
            "dropped": checked_dropped,
        }
    clients = _object(raw.get("clients", {}), "clients")
    for role in CLIENT_ROLES:  # other roles (a newer format's) are ignored
        if role in clients:
            client = _counts(clients[role], _CLIENT_FIELDS, "a client's")
            if client["healthy"] > 1:
                raise _Invalid("a client's healthy is neither 0 nor 1")
            result["clients"][role] = client
    result["sessions"] = _counts(raw.get("sessions", {}), SESSION_COUNTERS, "sessions")
    return result


def check_process(
    data: object, budget: list[int] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """A process's published record (UTF-8 JSON, bytes or text) checked
    whole: ``(figures, "")``, or ``(None, why)`` when anything in it is out
    of type or range (a count that is not an integer in 0..2**63-1, a name
    too long or not printable, another nesting, too many series, another
    format). Fields this version does not know are ignored (publishers of
    a newer version may add some); absent counts are 0. ``budget[0]``, when
    given, grows by the series looked at."""
    if isinstance(data, bytes):
        if len(data) > MAX_PROCESS_BYTES:
            return None, "too big"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not UTF-8"
    elif isinstance(data, str):
        if len(data) > MAX_PROCESS_BYTES:
            return None, "too big"
        text = data
    else:
        return None, "not a string"
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if type(raw) is not dict or type(raw.get("format")) is not int or raw["format"] != FORMAT:
        return None, "another format"
    try:
        return _checked(raw, budget if budget is not None else [0]), ""
    except _Invalid as invalid:
        return None, str(invalid)


def checked_process(data: object) -> dict[str, Any] | None:
    """:func:`check_process`'s figures, or None."""
    return check_process(data)[0]


# --------------------------------------------------------------------------- sums


class _Sums:
    """Running sums over processes: a reading holds one record at a time,
    whatever the number of processes. Series are gathered up to
    _GATHERED_SERIES, counting the processes that report each;
    :meth:`select` then keeps the MAX_SERIES most reported ones (a record
    full of names no other process has loses to the names every process
    shares)."""

    def __init__(self) -> None:
        self.processes = 0
        self.databases: dict[str, Any] = {}
        self.clients: dict[str, dict[str, int]] = {}
        self.sessions = dict.fromkeys(SESSION_COUNTERS, 0)
        self.reports: dict[tuple[str, ...], int] = {}
        self.dropped_series = 0

    def _admit(
        self, table: dict[str, Any], name: str, key: tuple[str, ...], make: Callable[[], Any]
    ) -> Any:
        """``table[name]``, created while there is room; None otherwise."""
        found = table.get(name)
        if found is None:
            if len(self.reports) >= _GATHERED_SERIES:
                self.dropped_series += 1
                return None
            found = table[name] = make()
            self.reports[key] = 0
        self.reports[key] += 1
        return found

    def add(self, process: Mapping[str, Any]) -> None:
        """Adds a record checked by :func:`check_process`."""
        self.processes += 1
        for db_name, database in process["databases"].items():
            total_db = self._admit(self.databases, db_name, ("d", db_name), _empty_database)
            if total_db is None:
                self.dropped_series += len(database["caches"]) + len(database["dropped"])
                self.dropped_series += sum(len(c["methods"]) for c in database["caches"].values())
                continue
            for reason, count in database["dropped"].items():
                key: tuple[str, ...] = ("r", db_name, reason)
                if self._admit(total_db["dropped"], reason, key, int) is not None:
                    total_db["dropped"][reason] += count
            for cache_name, cache in database["caches"].items():
                key = ("c", db_name, cache_name)
                total = self._admit(total_db["caches"], cache_name, key, _empty_cache)
                if total is None:
                    self.dropped_series += len(cache["methods"])
                    continue
                for name in _CACHE_FIELDS:
                    total[name] += cache[name]
                methods = total["methods"]
                for method_name, method in cache["methods"].items():
                    key = ("m", db_name, cache_name, method_name)
                    method_total = self._admit(methods, method_name, key, _empty_method)
                    if method_total is None:
                        continue
                    for name in _METHOD_FIELDS:
                        method_total[name] += method[name]
                    method_total["latency"] = list(
                        map(operator.add, method_total["latency"], method["latency"])
                    )
        for role, client in process["clients"].items():
            total_client = self.clients.setdefault(
                role, {**dict.fromkeys(CLIENT_COUNTERS, 0), "unhealthy": 0}
            )
            for name in CLIENT_COUNTERS:
                total_client[name] += client[name]
            total_client["unhealthy"] += 1 - client["healthy"]
        for name in SESSION_COUNTERS:
            self.sessions[name] += process["sessions"][name]

    def select(self) -> None:
        """Keeps the MAX_SERIES series most processes report; a name ranks
        before the names under it, which no more processes can report."""
        if len(self.reports) <= MAX_SERIES:
            return
        depth = {"d": 0, "c": 1, "r": 1, "m": 2}
        reports = self.reports
        ranked = sorted(reports, key=lambda key: (-reports[key], depth[key[0]], key))
        for key in ranked[MAX_SERIES:]:
            self.dropped_series += reports.pop(key)
            kind, db_name, *rest = key
            database = self.databases.get(db_name)
            if database is None:
                continue
            if kind == "d":
                del self.databases[db_name]
            elif kind == "r":
                database["dropped"].pop(rest[0], None)
            elif kind == "c":
                database["caches"].pop(rest[0], None)
            elif rest[0] in database["caches"]:
                database["caches"][rest[0]]["methods"].pop(rest[1], None)


def _empty_database() -> dict[str, Any]:
    return {"caches": {}, "dropped": {}}


def _empty_cache() -> dict[str, Any]:
    return {**dict.fromkeys(_CACHE_FIELDS, 0), "methods": {}}


def _empty_method() -> dict[str, Any]:
    return {**dict.fromkeys(_METHOD_FIELDS, 0), "latency": [0] * _BUCKETS}


# --------------------------------------------------------------------------- reading


@dataclass
class ClusterFigures:
    """What a reader found: the sums of the live processes' figures, checked.

    ``skipped``: records (or index entries) left out, by reason in
    ``skipped_reasons``; ``processes``: records checked by
    :func:`check_process` to sum besides (a reading leaves it empty)."""

    reachable: bool
    ping_seconds: float | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    sums: _Sums = field(default_factory=_Sums)

    def skip(self, reason: str, count: int = 1) -> None:
        if count > 0:
            self.skipped += count
            self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + count

    @property
    def process_count(self) -> int:
        return self.sums.processes + len(self.processes)


def _index_entries(reply: object, figures: ClusterFigures) -> list[tuple[bytes, bytes]]:
    """The index script's answer as ``(process, expiry)`` pairs."""
    if isinstance(reply, int):
        figures.skip("bad index")
        figures.error = (
            f"the metrics index was not a hash of at most {MAX_INDEX_ENTRIES} entries: deleted "
            "(live processes list themselves again within one interval)"
        )
        return []
    if not (isinstance(reply, list) and reply and isinstance(reply[0], int) and len(reply) % 2):
        figures.skip("bad index")
        return []
    figures.skip("bad index entry", reply[0])
    pairs = zip(reply[1::2], reply[2::2], strict=True)
    return [(k, v) for k, v in pairs if isinstance(k, bytes) and isinstance(v, bytes)]


def _read_records(client: RedisClient, prefix: str, chunk: list[str]) -> list[object]:
    """One round trip for ``chunk``'s records (see _READ_RECORD); when Redis
    refuses the batch, key by key (a refused key's answer is the error)."""
    commands = [
        ("EVAL", _READ_RECORD, 1, process_key(prefix, process), MAX_PROCESS_BYTES)
        for process in chunk
    ]
    try:
        return client.pipeline(commands)
    except RedisReplyError:
        answers: list[object] = []
        for command in commands:
            try:
                answers.append(client.execute(*command))
            except RedisReplyError as error:
                answers.append(error)
        return answers


def read_cluster(client: RedisClient, prefix: str = CACHE_PREFIX) -> ClusterFigures:
    """Every live process's figures, summed. Redis unreachable is
    ``reachable=False``; never an exception. Entries of dead processes (and
    garbage) are removed from the index on the way; a record that cannot be
    used is skipped and counted by reason."""
    try:
        ping = client.ping()
    except (RedisUnavailable, RedisReplyError) as error:
        return ClusterFigures(reachable=False, error=str(error))
    try:
        reply = client.execute(
            "EVAL",
            _READ_INDEX,
            1,
            index_key(prefix),
            MAX_INDEX_ENTRIES,
            _MAX_PROCESS_ID,
            _MAX_EXPIRY_DIGITS,
        )
    except RedisUnavailable as error:
        return ClusterFigures(reachable=False, error=str(error))
    except RedisReplyError as error:  # an ACL refusing EVAL, say
        return ClusterFigures(reachable=True, ping_seconds=ping, error=str(error))
    figures = ClusterFigures(reachable=True, ping_seconds=ping)
    now = time.time()
    live: list[str] = []
    dead: list[bytes] = []
    for raw_process, raw_expiry in _index_entries(reply, figures):
        process = raw_process.decode("ascii", "replace")
        digits = raw_expiry.isdigit() and len(raw_expiry) <= _MAX_EXPIRY_DIGITS
        expiry = int(raw_expiry) if digits else None
        if not _PROCESS_ID.fullmatch(process) or expiry is None:
            figures.skip("bad index entry")
            dead.append(raw_process)
        elif expiry > now + MAX_TTL + _CLOCK_SKEW:
            figures.skip("bad index entry")
            dead.append(raw_process)
        elif expiry < now:
            dead.append(raw_process)
        else:
            live.append(process)
    live.sort()
    figures.skip("over the process cap", len(live) - MAX_PROCESSES)
    live = live[:MAX_PROCESSES]
    read_bytes, budget, deadline = 0, [0], time.monotonic() + READ_SECONDS
    try:
        for start in range(0, len(live), _READ_BATCH):
            if read_bytes > MAX_READ_BYTES or budget[0] > MAX_READ_SERIES:
                figures.skip("over the reading budget", len(live) - start)
                break
            if time.monotonic() > deadline:
                figures.skip("over the reading time", len(live) - start)
                break
            chunk = live[start : start + _READ_BATCH]
            answers = _read_records(client, prefix, chunk)
            figures.skip("refused by Redis", len(chunk) - len(answers))
            for process, value in zip(chunk, answers, strict=False):
                if value is None:
                    dead.append(process.encode())
                elif isinstance(value, bytes):
                    read_bytes += len(value)
                    checked, reason = check_process(value, budget)
                    if checked is None:
                        figures.skip(reason)
                    else:
                        figures.sums.add(checked)
                elif isinstance(value, int) and value > 0:
                    figures.skip("too big")
                elif isinstance(value, int):
                    figures.skip("not a string")
                else:
                    figures.skip("refused by Redis")
        for start in range(0, len(dead), MAX_PROCESSES):
            client.execute("HDEL", index_key(prefix), *dead[start : start + MAX_PROCESSES])
    except (RedisUnavailable, RedisReplyError) as error:
        figures.error = str(error)
    return figures


def cluster_totals(figures: ClusterFigures) -> dict[str, Any]:
    """Sums over processes: ``databases -> caches -> figures and methods``,
    ``clients`` by role (plus ``unhealthy``: processes whose circuit is
    open), ``sessions``, ``processes``, what was skipped and why, and the
    series left out of the sums. Hit ratios are computed on the sums."""
    sums = figures.sums
    if figures.processes:
        sums = copy.deepcopy(sums)
        for process in figures.processes:
            sums.add(process)
    sums.select()
    databases = sums.databases  # the ratios are added in place (the sums never read them)
    for database in databases.values():
        for cache in database["caches"].values():
            cache["hit_ratio"] = _ratio(cache["hits"], cache["hits"] + cache["misses"])
            for method in cache["methods"].values():
                hits = method["l1_hits"] + method["l2_hits"]
                method["hit_ratio"] = _ratio(hits, hits + method["misses"])
    return {
        "redis_reachable": figures.reachable,
        "redis_ping_seconds": figures.ping_seconds,
        "processes": sums.processes,
        "skipped_processes": figures.skipped,
        "skipped_reasons": dict(sorted(figures.skipped_reasons.items())),
        "dropped_series": sums.dropped_series,
        "error": figures.error,
        "databases": databases,
        "clients": sums.clients,
        "sessions": dict(sums.sessions),
    }


def _ratio(hits: int, lookups: int) -> float:
    return hits / lookups if lookups else 0.0


# --------------------------------------------------------------------------- Prometheus


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
