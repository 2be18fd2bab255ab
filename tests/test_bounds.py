"""Nothing planted in Redis, and no sick Redis, costs a caller more than its
budgets: one ``socket_timeout`` per lookup and per unit of work, and bytes
checked on their announced length before they are read.

Faults are real (the suite's TCP proxy, a paused redis-server of this
module's own) and planted data is written from another client, as someone
with write access to Redis would. Bounds are the product's promises with
the margin test_faults explains (waking from poll, the error path, the GIL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_two_tier import SECRET, entry_names, generations_key_in, key, make_cache, settle

from ormcache_redis import Codec, RedisClient, RedisReplyError, RedisUnavailable, TwoTierCache
from ormcache_redis.testing import (
    FAULT_SCENARIOS,
    FaultProxy,
    FaultScenario,
    RedisServer,
    paused_gc,
)

MARGIN = 0.030
SOCKET_TIMEOUT = 0.25


def expensive_report(company: int) -> tuple[int, ...]:
    """Stands for a method whose misses fly (the key names it)."""
    return (company,)


def cache_on(client: RedisClient, count: int = 100) -> TwoTierCache:
    """A cache over a client built with the test's own options."""
    return TwoTierCache(
        "default",
        count,
        client=client,
        codec=Codec(),
        namespace=b"db1:1:default:0",
        secret=SECRET,
        follow_clears=None,
    )


# ------------------------------------------------------------------ sizes


def plant_hash(url: str, name: str | bytes, fields: int, value: str) -> None:
    """Adds ``fields`` fields to a hash, built in Redis by a script."""
    planter = RedisClient(url, socket_timeout=30.0)
    script = "for i = ARGV[1], ARGV[2] do redis.call('HSET', KEYS[1], 'm' .. i, ARGV[3]) end"
    for start in range(0, fields, 100_000):
        end = min(start + 100_000, fields) - 1
        planter.execute("EVAL", script, 1, name, start, end, value)


def test_a_reply_above_max_value_bytes_is_refused_unread(redis_url: str, redis_server) -> None:
    client = RedisClient(redis_url, max_value_bytes=1 << 20)
    redis_server.command("SET", "big", b"x" * (2 << 20))
    redis_server.command("SET", "small", b"x" * 1000)
    with pytest.raises(RedisReplyError, match="max_value_bytes"):
        client.execute("GET", "big")
    # Redis is fine: the circuit did not move and the next call works.
    assert client.execute("GET", "small") == b"x" * 1000
    stats = client.stats()
    assert stats["oversized_replies"] == 1 and stats["outages"] == 0
    assert stats["state"] == "closed" and stats["errors"] == 0


def test_a_huge_aggregate_is_refused_on_its_header(redis_url: str, redis_server) -> None:
    client = RedisClient(redis_url, max_value_bytes=1 << 20)
    # 70,000 fields: more elements (140,000) than one call takes, each tiny.
    plant_hash(redis_url, "wide", 70_000, "1")
    with pytest.raises(RedisReplyError, match="elements"):
        client.execute("HGETALL", "wide")
    assert client.execute("PING") == "PONG"


@pytest.mark.parametrize("planted_mb", [100, 400])
def test_a_planted_huge_entry_is_a_miss_refused_on_its_length(
    redis_url: str, redis_server, planted_mb: int
) -> None:
    """The issue's rows: 100 MB cost 0.30 s and +200 MB before the MAC
    refused it; 400 MB timed out and counted toward the circuit."""
    writer = make_cache(redis_url)
    writer[key(7)] = (1, 2, 3)
    settle(writer)
    (name,) = entry_names(redis_server)
    # setrange grows the string in Redis without sending it from here (it
    # takes Redis a while to allocate: a patient client of its own).
    RedisClient(redis_url, socket_timeout=30.0).execute("SETRANGE", name, planted_mb << 20, b"!")
    script = textwrap.dedent(
        f"""
        import json, resource, sys, time
        sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
        from test_two_tier import key, make_cache
        reader = make_cache({redis_url!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            reader[key(7)]
            outcome = "hit"
        except KeyError:
            outcome = "miss"
        elapsed = time.perf_counter() - started
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        stats = reader.stats()
        client = reader.client.stats()
        print(json.dumps(dict(outcome=outcome, elapsed=elapsed, grown_kb=grown,
            oversized=stats["oversized_entries"], outages=client["outages"],
            state=client["state"])))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(planted_mb, "MB planted:", figures)
    assert figures["outcome"] == "miss"
    assert figures["oversized"] == 1
    assert figures["outages"] == 0 and figures["state"] == "closed"
    assert figures["elapsed"] <= 0.100
    assert figures["grown_kb"] <= 20 * 1024


def test_a_value_above_max_value_bytes_is_not_written(redis_url: str, redis_server) -> None:
    client = RedisClient(redis_url, max_value_bytes=64 << 10)
    cache = cache_on(client)
    big = os.urandom(100 << 10)  # no codec makes it smaller
    cache[key(1)] = big
    cache[key(2)] = "small"
    settle(cache)
    assert len(entry_names(redis_server)) == 1
    assert cache.stats()["oversized_values"] == 1
    assert cache[key(1)] == big  # still in L1


def test_a_planted_generations_hash_leaves_l1_hits_alone(redis_url: str, redis_server) -> None:
    """The issue's row: 300,000 fields planted in a generations hash and its
    clears key bumped every 10 ms took L1 hits from ~1.5 M/s to ~9 k/s."""
    # A second of socket timeout: a loaded machine's slow answer is not the
    # outage this test looks for.
    cache = make_cache(redis_url, follow_clears=0.025, socket_timeout=1.0)
    cache[key(1)] = "value"
    settle(cache)
    assert cache[key(1)] == "value"
    hash_key = generations_key_in(redis_server)
    plant_hash(redis_url, hash_key, 300_000, "12345678901")
    # Planting keeps Redis busy; a poll timed out meanwhile is an outage of
    # the planting, not of the hash: count from here.
    outages = cache.client.stats()["outages"]
    clears = hash_key + b":clears"
    stop = threading.Event()

    def bump() -> None:
        bumper = RedisClient(redis_url)
        n = 0
        while not stop.is_set():
            n += 1
            bumper.execute("SET", clears, n)
            time.sleep(0.010)

    bumper = threading.Thread(target=bump)
    bumper.start()
    worst = 0.0
    hits = 0
    try:
        with paused_gc():
            finish = time.perf_counter() + 2.0
            while time.perf_counter() < finish:
                started = time.perf_counter()
                for _ in range(100):
                    cache[key(1)]
                worst = max(worst, time.perf_counter() - started)
                hits += 100
    finally:
        stop.set()
        bumper.join()
    stats = cache.stats()
    print(f"{hits / 2.0:,.0f} L1 hits/s, worst batch of 100: {worst * 1000:.1f} ms", stats)
    assert stats["oversized_generations"] >= 1
    # The regression took single hits to 276 ms (a batch: ~27 s); 0.25 s a
    # batch leaves room for a loaded machine and still fails on it.
    assert worst <= 0.25
    assert cache.client.stats()["outages"] == outages, str(cache.client.stats())


# ------------------------------------------------------------------ time budgets


def test_a_lookup_spends_one_socket_timeout_on_a_black_hole(
    proxy: FaultProxy, expensive: None
) -> None:
    """The issue's row: a miss spent 501 ms (read, then the flight lock)."""
    cache = make_cache(proxy.url, single_flight_after=None)
    cache.client.execute("PING")
    proxy.black_hole()
    with paused_gc():
        started = time.perf_counter()
        with pytest.raises(KeyError):
            cache[key(1, method=expensive_report)]
        elapsed = time.perf_counter() - started
    print(f"one miss, black hole: {elapsed * 1000:.0f} ms", cache.client.stats())
    assert elapsed <= SOCKET_TIMEOUT + MARGIN


@pytest.fixture
def expensive() -> Iterator[None]:
    from ormcache_redis._native import set_single_flight

    set_single_flight(expensive_report, True)
    yield
    set_single_flight(expensive_report, None)


def test_a_unit_of_work_spends_one_socket_timeout_then_stays_local(proxy: FaultProxy) -> None:
    client = RedisClient(proxy.url, failure_threshold=1000)
    cache = cache_on(client)
    client.execute("PING")
    proxy.black_hole()
    with paused_gc():
        started = time.perf_counter()
        client.begin_unit_budget()
        for n in range(8):
            with pytest.raises(KeyError):
                cache[key(n)]
            cache[key(n)] = n
        with pytest.raises(RedisUnavailable):
            client.execute("GET", "anything")
        spent, skipped = client.end_unit_budget()
        elapsed = time.perf_counter() - started
    print(f"unit of 8 misses + stores: {elapsed * 1000:.0f} ms, {spent=:.3f}, {skipped=}")
    assert elapsed <= SOCKET_TIMEOUT + MARGIN
    assert skipped >= 8
    assert client.stats()["budget_skips"] >= 8
    # The budget is no verdict on Redis; the next unit tries again.
    assert client.state == "closed"
    proxy.pass_through()
    client.begin_unit_budget()
    assert client.execute("PING") == "PONG"
    assert client.end_unit_budget()[1] == 0


def test_requests_of_a_threaded_server_each_spend_one_budget_under_sigstop(
    own_server: RedisServer,
) -> None:
    """The issue's row: with Redis SIGSTOPped, the slowest request pair took
    1.96 s with socket_timeout 0.25 s (4 concurrent clients)."""
    client = RedisClient(own_server.url, failure_threshold=1000)
    cache = cache_on(client, count=1000)
    client.execute("PING")
    durations: list[float] = []
    lock = threading.Lock()

    def request(worker: int, n: int) -> None:
        started = time.perf_counter()
        client.begin_unit_budget()
        try:
            for k in range(5):
                try:
                    cache[key(worker, n, k)]
                except KeyError:
                    cache[key(worker, n, k)] = k
        finally:
            client.end_unit_budget()
        with lock:
            durations.append(time.perf_counter() - started)

    def worker(w: int) -> None:
        for n in range(6):
            request(w, n)

    own_server.pause()
    try:
        with paused_gc():
            threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        own_server.resume()
    print(f"{len(durations)} requests, slowest {max(durations) * 1000:.0f} ms")
    assert len(durations) == 24
    assert max(durations) <= SOCKET_TIMEOUT + MARGIN


# ------------------------------------------------------------------ the documented ACL


def documented_acl_rules() -> list[str]:
    """The rules of SECURITY.md's recommended ACL user, as written there."""
    security = (Path(__file__).parent.parent / "SECURITY.md").read_text()
    (line,) = [ln.strip() for ln in security.splitlines() if ln.strip().startswith("user odoo on")]
    return [rule for rule in line.split()[3:] if not rule.startswith(">")]


def test_the_documented_acl_lets_the_cache_do_everything_it_does(
    redis_url: str, redis_server, expensive: None
) -> None:
    """Reads, writes, generation syncs (script), clears, flights and their
    leases (scripts): nothing the engine sends may be refused."""
    rules = documented_acl_rules()
    redis_server.command("ACL", "SETUSER", "doc-odoo", "reset", "on", ">pw-doc", *rules)
    try:
        url = redis_url.replace("redis://", "redis://doc-odoo:pw-doc@")
        first, second = make_cache(url), make_cache(url)
        k = key(3, method=expensive_report)
        with pytest.raises(KeyError):
            first[k]  # leads the flight: lock, lease
        time.sleep(0.6)  # one renewal of the lease at least
        first[k] = "computed"
        first.sync_generations()
        settle(first)
        assert second[k] == "computed"
        first.clear_method(expensive_report)
        second.sync_generations()
        with pytest.raises(KeyError):
            second[k]
        stats = [cache.stats() for cache in (first, second)]
        clients = [cache.client.stats() for cache in (first, second)]
        print(stats, clients)
        assert all(s["l2_errors"] == 0 and s["flights_planted_locks"] == 0 for s in stats)
        assert all(c["errors"] == 0 and c["writes_failed"] == 0 for c in clients)
    finally:
        redis_server.command("ACL", "DELUSER", "doc-odoo")


@pytest.mark.parametrize("scenario", FAULT_SCENARIOS, ids=lambda scenario: scenario.name)
def test_no_unit_of_work_spends_more_than_one_budget_through_any_fault(
    scenario: FaultScenario, proxy: FaultProxy, own_server: RedisServer
) -> None:
    """Threads run units of work (five lookups and stores each, as a
    request does) before, during and after each fault of the suite: a unit
    waits on Redis one ``socket_timeout`` at most, whatever the fault."""
    url = proxy.url if scenario.through_proxy else own_server.url
    client = RedisClient(url, socket_timeout=scenario.socket_timeout)
    cache = cache_on(client, count=8)
    durations: list[float] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    stop = threading.Event()

    def units(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            client.begin_unit_budget()
            try:
                for k in range(5):
                    try:
                        cache[key(worker, n % 16, k)]
                    except KeyError:
                        cache[key(worker, n % 16, k)] = k
            except Exception as exc:  # what the test counts
                errors.append(exc)
            finally:
                client.end_unit_budget()
            with lock:
                durations.append(time.perf_counter() - started)
            time.sleep(0.002)

    threads = [threading.Thread(target=units, args=(w,)) for w in range(4)]
    with paused_gc():
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.2)
            scenario.start(proxy, own_server)
            time.sleep(scenario.fault_seconds)
            scenario.end(proxy, own_server)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    print(f"{scenario.name}: {len(durations)} units, slowest {max(durations) * 1000:.0f} ms")
    assert errors == []
    assert len(durations) > 50
    assert max(durations) <= scenario.socket_timeout + MARGIN
