"""Checking one process's record as read from Redis, untrusted.

:func:`check_process` is the one routine: readers run it on every record
they read, publishers on what they are about to publish. A record with
anything out of type or range is refused with a reason, never an
exception; fields this version does not know are ignored.
"""

from __future__ import annotations

import json
import operator
from typing import Any

from ormcache_redis.metrics.record_format import (
    BUCKETS,
    CACHE_FIELDS,
    CLIENT_FIELDS,
    CLIENT_ROLES,
    FORMAT,
    L1_FIGURES,
    MAX_CACHE_NAME,
    MAX_COUNT,
    MAX_DB_NAME,
    MAX_NAME,
    MAX_PROCESS_BYTES,
    MAX_REASON,
    MAX_RECORD_SERIES,
    METHOD_FIELDS,
    SESSION_COUNTERS,
    name_ok,
)


class _Invalid(Exception):
    """A record out of type or range; ``args[0]`` says what (never its content)."""


def _object(value: object, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid(f"{what} is not an object")
    return value


def _name(name: str, limit: int, what: str) -> str:
    if not name_ok(name, limit):
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


_METHOD_DEFAULTS: dict[str, Any] = {**dict.fromkeys(METHOD_FIELDS, 0), "latency": None}
_METHOD_VALUES = operator.itemgetter(*METHOD_FIELDS, "latency")


def _method(raw: object) -> dict[str, Any]:
    *values, latency = _METHOD_VALUES({**_METHOD_DEFAULTS, **_object(raw, "a method")})
    if type(latency) is not list or len(latency) != BUCKETS or not _all_counts(values + latency):
        raise _Invalid(f"a method's figures are not all counts, with {BUCKETS} latency buckets")
    method: dict[str, Any] = dict(zip(METHOD_FIELDS, values, strict=True))
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
            cache: dict[str, Any] = _counts(raw_cache, CACHE_FIELDS, "a cache's")
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
            client = _counts(clients[role], CLIENT_FIELDS, "a client's")
            if client["healthy"] > 1:
                raise _Invalid("a client's healthy is neither 0 nor 1")
            result["clients"][role] = client
    result["sessions"] = _counts(raw.get("sessions", {}), SESSION_COUNTERS, "sessions")
    result["l1"] = _counts(raw.get("l1", {}), L1_FIGURES, "L1")
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
