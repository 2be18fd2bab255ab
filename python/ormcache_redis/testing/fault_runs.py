"""Hammering a :class:`~ormcache_redis.TwoTierCache` through a fault and
measuring what its callers saw; :data:`FAULT_SCENARIOS` are the faults the
test suite and ``bench/faults.py`` run."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .fault_proxy import FaultProxy
from .redis_server import RedisServer


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while timing calls: a full
    collection of a big process (a test session) takes tens of milliseconds
    and would be charged to whichever call happened to trigger it, which
    says nothing about how long that call waited for Redis."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class FaultReport:
    """What the callers of a cache saw while a fault came and went."""

    fault: str
    calls: int
    exceptions: list[BaseException] = field(default_factory=list)
    max_latency: float = 0.0
    """Longest lookup or store, in seconds, over every call of every thread."""
    recovery: float | None = None
    """Seconds from the end of the fault to the first lookup answered by
    Redis again; None when Redis was not used again in time."""
    client_stats: dict[str, object] = field(default_factory=dict)

    def row(self) -> str:
        recovery = "never" if self.recovery is None else f"{self.recovery * 1000:.0f} ms"
        return (
            f"| {self.fault} | {self.max_latency * 1000:.1f} ms | {len(self.exceptions)} "
            f"| {recovery} |"
        )


def run_through_fault(
    fault: str,
    url: str,
    start_fault: Callable[[], object],
    end_fault: Callable[[], object],
    *,
    fault_seconds: float = 1.1,
    threads: int = 4,
    keys: int = 64,
    recovery_timeout: float = 5.0,
    **client_options: Any,
) -> FaultReport:
    """Hammers a TwoTierCache (lookups and stores from ``threads`` threads)
    on a new ``RedisClient(url, **client_options)`` before, during and after
    a fault, and reports every exception, the longest call and the time
    Redis took to be used again once ``end_fault()`` returned.

    L1 holds 8 entries for ``keys`` keys, so most lookups go to Redis.
    The default fault lasts 1.1 s: with the default probe schedule (every
    0.25 s, each waiting up to 0.25 s) the fault then ends while a probe is
    stuck in it, which is the slow case for recovery (a fault of exactly
    1 s ends just as a fresh probe starts).
    """
    from ormcache_redis import Codec, RedisClient, TwoTierCache

    client = RedisClient(url, **client_options)
    namespace = f"faults:{fault}:{time.monotonic_ns()}".encode()

    def make_cache(size: int) -> TwoTierCache:
        return TwoTierCache("faults", size, client=client, codec=Codec(), namespace=namespace)

    cache = make_cache(8)
    for key in range(keys):
        cache[key] = ("value", key, "x" * 64)
    client.flush(5.0)
    report = FaultReport(fault, calls=0)
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(seed: int) -> None:
        calls, longest, errors = 0, 0.0, []
        key = seed
        while not stop.is_set():
            key = (key * 7 + 3) % keys
            started = time.perf_counter()
            try:
                try:
                    cache[key]
                except KeyError:
                    cache[key] = ("value", key, "x" * 64)
            except Exception as exc:  # every exception is what the test counts
                errors.append(exc)
            longest = max(longest, time.perf_counter() - started)
            calls += 1
            time.sleep(0.001)
        with lock:
            report.calls += calls
            report.max_latency = max(report.max_latency, longest)
            report.exceptions.extend(errors)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    with paused_gc():
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.3)
            start_fault()
            time.sleep(fault_seconds)
            end_fault()
            ended = time.perf_counter()
            # A cache of its own, emptied before each lookup, so that every
            # lookup falls through L1: l2_hits and l2_misses count only the
            # lookups Redis answered.
            probe = make_cache(1)
            while time.perf_counter() - ended < recovery_timeout:
                probe.clear()
                probe.get(0)
                stats = probe.stats()
                if stats["l2_hits"] + stats["l2_misses"] > 0:
                    report.recovery = time.perf_counter() - ended
                    break
                time.sleep(0.005)
            time.sleep(0.3)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    report.client_stats = client.stats()
    return report


def _server_down(proxy: FaultProxy) -> None:
    proxy.refuse_new()
    proxy.close_existing()


def _unanswered_connections(proxy: FaultProxy) -> None:
    proxy.hang_new()
    proxy.close_existing()


@dataclass(frozen=True)
class FaultScenario:
    """One fault, started and ended on a proxy or on the server itself."""

    name: str
    start: Callable[[FaultProxy, RedisServer], object]
    end: Callable[[FaultProxy, RedisServer], object] = lambda proxy, _server: proxy.pass_through()
    through_proxy: bool = True
    socket_timeout: float = 0.25
    fault_seconds: float = 1.1
    threads: int = 4

    def run(self, proxy: FaultProxy, server: RedisServer) -> FaultReport:
        """Runs :func:`run_through_fault`; ``proxy`` and ``server`` may be
        unrelated when the scenario uses only one of them."""
        return run_through_fault(
            self.name,
            proxy.url if self.through_proxy else server.url,
            lambda: self.start(proxy, server),
            lambda: self.end(proxy, server),
            fault_seconds=self.fault_seconds,
            threads=self.threads,
            socket_timeout=self.socket_timeout,
        )


FAULT_SCENARIOS: tuple[FaultScenario, ...] = (
    FaultScenario(
        "delay 200 ms (socket_timeout 0.1 s)", lambda p, _s: p.delay(200), socket_timeout=0.1
    ),
    FaultScenario("black hole", lambda p, _s: p.black_hole()),
    FaultScenario("cut mid-reply (after 3 bytes)", lambda p, _s: p.cut_replies(3)),
    FaultScenario("drip (1 byte / 50 ms)", lambda p, _s: p.drip(50)),
    FaultScenario(
        "server down (connections closed, new ones refused)", lambda p, _s: _server_down(p)
    ),
    FaultScenario(
        "new connections never answered (existing closed)",
        lambda p, _s: _unanswered_connections(p),
    ),
    FaultScenario(
        "SIGSTOP",
        lambda _p, s: s.pause(),
        lambda _p, s: s.resume(),
        through_proxy=False,
    ),
    FaultScenario(
        "restart (8 threads, 8 pooled connections)",
        lambda _p, s: s.stop(),
        lambda _p, s: s.start(),
        through_proxy=False,
        fault_seconds=0.1,
        threads=8,
    ),
)
"""The faults of the test suite and of ``bench/faults.py``."""
