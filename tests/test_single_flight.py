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
from test_two_tier import SECRET, entry_names, key, make_cache, settle

from ormcache_redis import Codec, RedisClient, TwoTierCache
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


@pytest.mark.parametrize("switch", ["single_flight=True", ""], ids=["switched-on", "by-cost"])
def test_os_processes_compute_once(redis_url: str, redis_server, switch: str) -> None:
    """16 callers in 4 OS processes of a cold cluster: the method switched on
    by its decorator, or not (its cost is still unknown: it flies from its
    first miss, where it used to fly only once measured)."""
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

            @ormcache("company", {switch})
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


def test_a_cheap_method_takes_one_lock_in_the_cluster_then_none(
    redis_url: str, redis_server
) -> None:
    """Its cost unknown, a method flies at its first miss (so a cold cluster
    computes it once); measured cheap, it never takes a lock again, in this
    process or in any other that reads the recorded cost."""
    redis_server.command("CONFIG", "RESETSTAT")
    first, second = make_cache(redis_url), make_cache(redis_url)
    for cache, uids in ((first, range(50)), (second, range(50, 100))):
        for uid in uids:
            k = key(uid, method=cheap_lookup)
            with pytest.raises(KeyError):
                cache[k]
            cache[k] = uid
        settle(cache)
    assert first.stats()["flights_led"] == 1
    assert second.stats()["flights_led"] == 0
    stats = redis_server.command("INFO", "commandstats").decode()
    # One lock taken (its SET), one released (the EVAL): two lock commands.
    assert "cmdstat_eval:calls=1," in stats
    assert not [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    assert len(entry_names(redis_server)) == 100


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


# ------------------------------------------------------------------ planted in Redis


def lock_name_of(redis_server, cache: TwoTierCache) -> bytes:
    """The lock key of ``key(1, method=dashboard)``: its entry's, with ``l:``."""
    cache[key(1, method=dashboard)] = ("dashboard", 1)
    settle(cache)
    (entry,) = entry_names(redis_server)
    redis_server.command("DEL", entry)
    return entry.replace(b":c:", b":l:")


@pytest.mark.parametrize(
    "planted",
    [
        ("SET", "123"),  # no tag, no expiry
        ("SET", "123", "PX", "400"),  # no tag
        ("SET", "123.00112233445566778899aabbccddeeff", "PX", "400"),  # a wrong tag
        ("SET", "123.00112233445566778899aabbccddeeff", "PX", "3600000"),
    ],
    ids=["bare", "untagged", "forged-tag", "long-expiry"],
)
def test_a_planted_lock_does_not_make_misses_wait(
    redis_url: str, redis_server, flying, planted: tuple[str, ...]
) -> None:
    """The issue's row: a lock planted without TTL made every miss of the
    method wait single_flight_wait (5,037 ms, ~259 Redis calls)."""
    lock = lock_name_of(redis_server, make_cache(redis_url))
    redis_server.command(planted[0], lock, *planted[1:])
    waiter = make_cache(redis_url, single_flight_wait=5.0)
    redis_server.command("CONFIG", "RESETSTAT")
    started = time.monotonic()
    assert compute_through(waiter, redis_server, 0.05) == ("dashboard", 1)
    elapsed = time.monotonic() - started
    calls = int(
        redis_server.command("INFO", "stats")
        .decode()
        .split("total_commands_processed:")[1]
        .split()[0]
    )
    print(f"planted {planted[1:]}: {elapsed * 1000:.0f} ms, {calls} commands")
    assert elapsed <= 0.05 + 0.300
    assert waiter.stats()["flights_planted_locks"] == 1
    assert waiter.stats()["flights_timed_out"] == 0


def test_a_leader_that_died_costs_its_waiters_about_one_lease(
    redis_url: str, redis_server, flying
) -> None:
    """A worker killed while it computes: today's lease is 0.5 s (it was
    the whole single_flight_wait of 5 s)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_two_tier import key, make_cache
        from test_single_flight import dashboard
        from ormcache_redis._native import set_single_flight
        set_single_flight(dashboard, True)
        leader = make_cache({redis_url!r})
        try:
            leader[key(1, method=dashboard)]
        except KeyError:
            print("leading", flush=True)
        os._exit(9)  # killed mid-computation: no store, no release
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert "leading" in done.stdout, done.stderr
    assert [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    waiter = make_cache(redis_url, single_flight_wait=5.0)
    started = time.monotonic()
    assert compute_through(waiter, redis_server, 0) == ("dashboard", 1)
    elapsed = time.monotonic() - started
    print(f"dead leader cost the waiter {elapsed * 1000:.0f} ms")
    assert elapsed <= 0.5 + 0.3
    assert waiter.stats()["flights_led"] == 1


def test_a_live_leader_keeps_its_lock_past_one_lease(redis_url: str, redis_server, flying) -> None:
    leader, waiter = make_cache(redis_url), make_cache(redis_url, single_flight_wait=5.0)
    results: list[object] = []
    slow = threading.Thread(
        target=lambda: results.append(compute_through(leader, redis_server, 1.5))
    )
    slow.start()
    time.sleep(0.2)
    results.append(compute_through(waiter, redis_server, 0))
    slow.join()
    assert results == [("dashboard", 1)] * 2
    assert computations(redis_server) == 1
    assert waiter.stats()["l2_hits"] == 1


def test_a_planted_cost_changes_nothing(redis_url: str, redis_server) -> None:
    """The issue's row: HSET <prefix>flight-costs:<cache> <cheap method>
    1000000000 made a cheap method fly in every new process (~38 misses)."""
    name = f"{cheap_lookup.__module__}.cheap_lookup"
    for planted in (b"1000000000", b"1000000000.00112233445566778899aabbccddeeff"):
        redis_server.command("FLUSHALL")
        first = make_cache(redis_url)
        for uid in range(5):  # measured cheap, recorded
            with pytest.raises(KeyError):
                first[key(uid, method=cheap_lookup)]
            first[key(uid, method=cheap_lookup)] = uid
        settle(first)
        redis_server.command("HSET", b"ormcache:flight-costs:default", name, planted)
        fresh = make_cache(redis_url)
        for uid in range(5, 45):
            with pytest.raises(KeyError):
                fresh[key(uid, method=cheap_lookup)]
            fresh[key(uid, method=cheap_lookup)] = uid
        stats = fresh.stats()
        assert stats["flights_planted_costs"] == 1
        # Unknown after the planted record was ignored: one flight at most,
        # then its own measure says cheap.
        assert stats["flights_led"] + stats["flights_waited"] <= 1


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_lock_led_in_a_transaction_goes_with_its_unit(
    redis_url: str, redis_server, flying, outcome: str
) -> None:
    """A value computed in a transaction waits for its commit, and so does
    its lock (a waiter that sees the lock gone must find the value); when
    the transaction rolls back, the lock goes at once: waiters compute
    instead of waiting out the lease."""
    from ormcache_redis._native import UnitOfWork

    holder: dict[str, UnitOfWork] = {}
    cache = make_cache(redis_url, gate=lambda: holder["unit"])
    holder["unit"] = UnitOfWork([cache])
    with pytest.raises(KeyError):
        cache[key(1, method=dashboard)]
    cache[key(1, method=dashboard)] = ("dashboard", 1)
    time.sleep(0.7)  # past one lease: held by renewal, not by its first expiry
    assert [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    assert entry_names(redis_server) == []
    unit = holder["unit"]
    if outcome == "commit":
        assert unit.commit(cache) == (1, 0, 0)
    else:
        assert unit.discard_all() == 1
    settle(cache)
    assert not [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    assert len(entry_names(redis_server)) == (1 if outcome == "commit" else 0)


def test_a_cheap_method_in_a_transaction_releases_its_lock_at_once(
    redis_url: str, redis_server
) -> None:
    """A method flies at its first miss while its cost is unknown; measured
    cheap at its store, its lock goes at once instead of waiting for a
    transaction that may run for long: other processes compute it rather
    than wait."""
    from ormcache_redis._native import UnitOfWork

    holder: dict[str, UnitOfWork] = {}
    cache = make_cache(redis_url, gate=lambda: holder["unit"])
    holder["unit"] = UnitOfWork([cache])
    with pytest.raises(KeyError):
        cache[key(1, method=cheap_lookup)]
    cache[key(1, method=cheap_lookup)] = 1
    assert cache.stats()["flights_led"] == 1
    settle(cache)
    assert not [n for n in redis_server.command("KEYS", "*") if b":l:" in n]
    assert entry_names(redis_server) == []  # the value still waits for the commit
    assert holder["unit"].commit(cache) == (1, 0, 0)


def test_a_value_stored_between_the_read_and_the_lock_is_not_computed_again(
    redis_url: str, redis_server, flying, proxy
) -> None:
    """The race the Odoo dashboard runs showed: a process read the entry
    (absent), the leader stored it and released its lock, then the process's
    lock request succeeded and it computed the value again. Replies are
    delayed 200 ms so that the value lands between the read and the lock."""
    leader = make_cache(redis_url)
    k = key(1, method=dashboard)
    with pytest.raises(KeyError):
        leader[k]
    leader[k] = ("dashboard", 1)
    settle(leader)
    (entry,) = entry_names(redis_server)
    payload = redis_server.command("GET", entry)
    redis_server.command("DEL", entry)
    client = RedisClient(proxy.url, socket_timeout=1.0)
    waiter = TwoTierCache(
        "default",
        100,
        client=client,
        codec=Codec(),
        namespace=b"db1:1:default:0",
        secret=SECRET,
        follow_clears=None,
    )
    client.execute("PING")
    proxy.delay(200)
    results: list[object] = []
    lookup = threading.Thread(
        target=lambda: results.append(compute_through(waiter, redis_server, 0))
    )
    lookup.start()
    time.sleep(0.1)  # the read has run in Redis; its reply is on its way
    redis_server.command("SET", entry, payload)
    lookup.join()
    assert results == [("dashboard", 1)]
    assert computations(redis_server) == 0
    assert waiter.stats()["flights_led"] == 0
