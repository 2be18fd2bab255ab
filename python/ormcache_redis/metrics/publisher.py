"""The thread that publishes one process's record to Redis, every
interval, through the engine's write-behind queue (never a request).

Per publication: ``SET`` the record with a TTL of three intervals, ``HSET``
the process's expiry in the index and ``EXPIRE`` the index; a dead process
stops refreshing its key, which expires, and the next reader drops it from
the index.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ormcache_redis._native import RedisClient
from ormcache_redis.config import CACHE_PREFIX
from ormcache_redis.metrics.process_record import encode_figures
from ormcache_redis.metrics.record_format import PUBLISH_INTERVAL, index_key, process_key

_logger = logging.getLogger(__name__)


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
        interval: float = PUBLISH_INTERVAL.default,
    ) -> None:
        if not isinstance(interval, int | float):
            raise ValueError(f"interval must be a number of seconds, got {interval!r}")
        self.client = client
        self.collect = collect
        self.prefix = prefix
        # The option's rule: (0, 3600] (ConfigError is a ValueError).
        self.interval = PUBLISH_INTERVAL.parse(repr(float(interval)), "interval")
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
