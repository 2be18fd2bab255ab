"""Single flight: an expensive value is computed once for every process.

Each test runs real concurrent callers (threads with their own cache, as
separate worker processes would have, and OS processes) against a real
redis-server, and counts the computations in Redis itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from test_two_tier import entry_names, key, make_cache, settle

from ormcache_redis import TwoTierCache
from ormcache_redis._native import set_single_flight


def dashboard(company: int) -> tuple[int, ...]:
    """Stands for an expensive method (the key names it)."""
    return (company,)


def cheap_lookup(uid: int) -> int:
    return uid


@pytest.fixture
def flying():
    set_single_flight(dashboard, True)
    yield
    set_single_flight(dashboard, None)


def compute_through(cache: TwoTierCache, redis_server, seconds: float) -> object:
    """What an ``@ormcache`` wrapper does: lookup, on a miss compute (slowly,
    counted in Redis) and store."""
    k = key(1, method=dashboard)
    try:
        return cache[k]
    except KeyError:
        redis_server.command("INCR", "computations")
        time.sleep(seconds)
        value = ("dashboard", 1)
        cache[k] = value
        return value


def computations(redis_server) -> int:
    return int(redis_server.command("GET", "computations") or 0)


def test_waiters_get_the_leaders_value(redis_url: str, redis_server, flying) -> None:
    caches = [make_cache(redis_url, single_flight_wait=5.0) for _ in range(6)]
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(compute_through(c, redis_server, 0.3)))
        for c in caches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [("dashboard", 1)] * 6
    assert computations(redis_server) == 1
    stats = [c.stats() for c in caches]
    assert sum(s["flights_led"] for s in stats) == 1
    assert sum(s["flights_waited"] for s in stats) == 5
    assert sum(s["l2_hits"] for s in stats) == 5
    assert sum(s["flights_timed_out"] for s in stats) == 0
    assert not [n for n in redis_server.command("KEYS", "*") if b":l:" in n]  # released


def test_os_processes_compute_once(redis_url: str, redis_server) -> None:
    """16 callers in 4 OS processes, the method switched on by its decorator."""
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import redis
        from test_two_tier import make_cache
        from ormcache_redis import ormcache

        counter = redis.Redis.from_url({redis_url!r})

        class Pool:
            _Registry__caches = {{"default": make_cache({redis_url!r})}}

        class Dashboard:
            _name = "sale.report"
            pool = Pool()

            @ormcache("company", single_flight=True)
            def data(self, company):
                counter.incr("computations")
                time.sleep(0.4)
                return {{"company": company, "total": 1234.5}}

        start = float(sys.argv[1])
        time.sleep(max(0.0, start - time.time()))
        results = []
        threads = [threading.Thread(target=lambda: results.append(Dashboard().data(1)))
                   for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == [{{"company": 1, "total": 1234.5}}] * 4, results
        """
    )
    start = time.time() + 1.5
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(start)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
    assert computations(redis_server) == 1


def test_a_leader_that_never_stores_costs_waiters_their_wait_only(
    redis_url: str, redis_server, flying
) -> None:
    leader, waiter = make_cache(redis_url), make_cache(redis_url, single_flight_wait=0.3)
    with pytest.raises(KeyError):
        leader[key(1, method=dashboard)]  # took the lock, then died
    assert compute_through(waiter, redis_server, 0) == ("dashboard", 1)
    assert waiter.stats()["flights_timed_out"] == 1
    assert computations(redis_server) == 1


def test_an_unshareable_value_releases_the_lock_at_once(
    redis_url: str, redis_server, flying
) -> None:
    leader = make_cache(redis_url)
    with pytest.raises(KeyError):
        leader[key(1, method=dashboard)]
    leader[key(1, method=dashboard)] = object()  # cannot be encoded: stays local
    settle(leader)
    waiter = make_cache(redis_url, single_flight_wait=30.0)
    started = time.monotonic()
    assert compute_through(waiter, redis_server, 0) == ("dashboard", 1)
    assert time.monotonic() - started < 30
    assert waiter.stats()["flights_led"] == 1  # took the released lock


def test_cheap_methods_never_take_a_lock(redis_url: str, redis_server) -> None:
    redis_server.command("CONFIG", "RESETSTAT")
    cache = make_cache(redis_url)
    for uid in range(50):
        k = key(uid, method=cheap_lookup)
        with pytest.raises(KeyError):
            cache[k]
        cache[k] = uid
    settle(cache)
    assert cache.stats()["flights_led"] == 0
    stats = redis_server.command("INFO", "commandstats").decode()
    assert "cmdstat_eval" not in stats and "cmdstat_setnx" not in stats
    assert not [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    assert len(entry_names(redis_server)) == 50


def test_a_slow_method_flies_in_processes_that_never_computed_it(
    redis_url: str, redis_server
) -> None:
    measured = make_cache(redis_url, single_flight_after=0.05)
    compute_through(measured, redis_server, 0.1)  # measured slow: cost recorded
    settle(measured)
    measured.clear_method(dashboard)
    # Another process, which only ever had hits, meets the cleared method.
    other = make_cache(redis_url, single_flight_after=0.05)
    assert compute_through(other, redis_server, 0) == ("dashboard", 1)
    assert other.stats()["flights_led"] == 1


def test_switched_off_never_flies(redis_url: str, redis_server) -> None:
    set_single_flight(dashboard, False)
    try:
        cache = make_cache(redis_url, single_flight_after=0.0)
        compute_through(cache, redis_server, 0.01)
        cache.clear_method(dashboard)
        compute_through(cache, redis_server, 0.01)
        assert cache.stats()["flights_led"] == 0
    finally:
        set_single_flight(dashboard, None)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"single_flight_wait": 0}, "single_flight_wait"), ({"single_flight_after": -1}, "after")],
)
def test_bad_flight_settings_name_themselves(redis_url: str, arguments: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        make_cache(redis_url, **arguments)
