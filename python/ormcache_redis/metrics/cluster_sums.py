"""Sums of the checked records of every process, bounded in series."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from ormcache_redis.metrics.record_format import (
    BUCKETS,
    CACHE_FIELDS,
    CLIENT_COUNTERS,
    L1_FIGURES,
    METHOD_FIELDS,
    SESSION_COUNTERS,
)

MAX_SERIES = 4096
"""Series in the sums: those most processes report (of the first
4 * MAX_SERIES met); the others are left out and counted, a record's other
figures are summed."""
_GATHERED_SERIES = 4 * MAX_SERIES


class ClusterSums:
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
        self.l1 = dict.fromkeys(L1_FIGURES, 0)
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
                for name in CACHE_FIELDS:
                    total[name] += cache[name]
                methods = total["methods"]
                for method_name, method in cache["methods"].items():
                    key = ("m", db_name, cache_name, method_name)
                    method_total = self._admit(methods, method_name, key, _empty_method)
                    if method_total is None:
                        continue
                    for name in METHOD_FIELDS:
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
        for name in L1_FIGURES:
            self.l1[name] += process["l1"][name]

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
    return {**dict.fromkeys(CACHE_FIELDS, 0), "methods": {}}


def _empty_method() -> dict[str, Any]:
    return {**dict.fromkeys(METHOD_FIELDS, 0), "latency": [0] * BUCKETS}
