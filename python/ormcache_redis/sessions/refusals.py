"""Session records a store refused: counted, and reported in the log with
what they likely mean, at most once a minute per process."""

from __future__ import annotations

import logging
import threading
import time

from ormcache_redis.sessions.redis_layout import MAX_RECORD_BYTES

_logger = logging.getLogger(__name__)

REFUSED_REPORT_INTERVAL = 60.0
"""Seconds between two warnings about refused session records, per process."""


class RefusedRecords:
    """Counts the session records a store refused, and says so in the log at
    most once per ``interval`` seconds (a flood of forged records must not
    flood the log), with what the refusals likely mean."""

    KINDS = ("forged", "no_key", "unreadable", "oversized")

    def __init__(self, interval: float = REFUSED_REPORT_INTERVAL) -> None:
        self.interval = interval
        self.total = dict.fromkeys(self.KINDS, 0)
        self._unreported = dict.fromkeys(self.KINDS, 0)
        self._reported_at: float | None = None
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            self.total[kind] += 1
            self._unreported[kind] += 1
            now = time.monotonic()
            if self._reported_at is not None and now - self._reported_at < self.interval:
                return
            self._reported_at = now
            unreported, self._unreported = self._unreported, dict.fromkeys(self.KINDS, 0)
        _logger.warning("%s", self.describe(unreported))

    @staticmethod
    def describe(counts: dict[str, int]) -> str:
        parts, meanings = [], []
        if counts.get("forged"):
            parts.append(f"{counts['forged']} whose authentication tag does not verify")
            meanings.append(
                "someone wrote to Redis, or the servers sharing it run with different "
                "secrets (a copy of the database with another database.secret, or "
                "ormcache_redis_secret set on some servers only)"
            )
        if counts.get("no_key"):
            parts.append(f"{counts['no_key']} of a database whose secret cannot be read")
            meanings.append("a dropped database, or database.secret cannot be read")
        if counts.get("unreadable"):
            parts.append(f"{counts['unreadable']} unreadable")
            meanings.append(
                "garbage under a session key, or records written before the upgrade to "
                "authenticated records (their users log in once more)"
            )
        if counts.get("oversized"):
            parts.append(
                f"{counts['oversized']} longer than the {MAX_RECORD_BYTES} bytes a session "
                "record may be (refused before being read)"
            )
            meanings.append("someone wrote to Redis (no server writes a record that long)")
        return (
            "Refused session records from Redis (each request got a new session): "
            + ", ".join(parts)
            + ". Likely: "
            + "; ".join(meanings)
            + "."
        )
