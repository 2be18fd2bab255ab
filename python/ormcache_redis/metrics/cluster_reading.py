"""Reading every live process's record from Redis, bounded, and their
sums (:func:`cluster_totals`, what ``ormcache-redis stats`` and the
Prometheus text show).

What is read back is untrusted (anyone who can write to Redis can write
there). Redis measures each key before sending it (a Lua script per key,
so it works on a cluster too): a key that is too big or of another type
costs this process nothing and never fails the reading of another one.
Each record is checked whole by :func:`.record_check.check_process`; one
that cannot be used is skipped and counted by reason. Readings are bounded
in records, bytes, series and time (the constants below).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ormcache_redis._native import RedisClient, RedisReplyError, RedisUnavailable
from ormcache_redis.config import CACHE_PREFIX
from ormcache_redis.metrics.cluster_sums import ClusterSums
from ormcache_redis.metrics.record_check import check_process
from ormcache_redis.metrics.record_format import (
    MAX_PROCESS_BYTES,
    MAX_TTL,
    index_key,
    process_key,
)

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
    sums: ClusterSums = field(default_factory=ClusterSums)

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
    open), ``sessions``, ``l1`` (the processes' L1 together: bytes, the
    sum of their bounds, byte evictions, values too large), ``processes``,
    what was skipped and why, and the series left out of the sums. Hit
    ratios are computed on the sums."""
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
        "l1": dict(sums.l1),
    }


def _ratio(hits: int, lookups: int) -> float:
    return hits / lookups if lookups else 0.0
