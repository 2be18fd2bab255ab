"""A clear made by one process reaches the L1 of every other process that
follows clears (the default outside Odoo), while Redis is up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from test_two_tier import key, make_cache, settle, users_group_ids

FOLLOW = 0.025


def first_lookup_showing(cache, expected: object, timeout: float = 5.0) -> float:
    """Seconds until a lookup of key(1) answers ``expected`` (or misses)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if cache.get(key(1)) in (expected, None):
            return time.monotonic() - started
        time.sleep(0.002)
    raise AssertionError(f"still {cache.get(key(1))!r} after {timeout} s")


def test_a_clear_elsewhere_reaches_this_l1(redis_url: str) -> None:
    reader = make_cache(redis_url, follow_clears=FOLLOW)
    writer = make_cache(redis_url)
    writer[key(1)] = "old"
    settle(writer)
    assert reader[key(1)] == "old"
    assert reader[key(1)] == "old" and reader.stats()["l1_hits"] >= 1
    time.sleep(FOLLOW * 4)  # the poller has read the key once
    writer.clear_method(users_group_ids)
    writer[key(1)] = "new"
    settle(writer)
    first_lookup_showing(reader, "new")
    assert reader[key(1)] == "new"


def test_without_following_the_l1_copy_stays(redis_url: str) -> None:
    """What following buys: the same sequence without it keeps serving the
    L1 copy (until its TTL), which is why the option exists."""
    reader = make_cache(redis_url)
    writer = make_cache(redis_url)
    writer[key(1)] = "old"
    settle(writer)
    assert reader[key(1)] == "old"
    writer.clear_method(users_group_ids)
    time.sleep(FOLLOW * 8)
    assert reader[key(1)] == "old"


def test_redis_down_keeps_serving_l1(redis_url: str, redis_server) -> None:
    reader = make_cache(redis_url, follow_clears=FOLLOW)
    reader[key(1)] = "local copy"
    settle(reader)
    redis_server.stop()
    try:
        for _ in range(20):
            assert reader[key(1)] == "local copy"
            time.sleep(FOLLOW)
    finally:
        redis_server.start()


def test_another_os_process_follows(redis_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_two_tier import make_cache, key
        cache = make_cache({redis_url!r}, follow_clears={FOLLOW})
        assert cache[key(1)] == "old"
        print("ready", flush=True)
        sys.stdin.readline()  # the parent cleared
        started = time.monotonic()
        while cache.get(key(1)) == "old" and time.monotonic() - started < 5:
            time.sleep(0.002)
        print(repr(cache.get(key(1))), flush=True)
        """
    )
    writer = make_cache(redis_url)
    writer[key(1)] = "old"
    settle(writer)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(FOLLOW * 4)
    writer.clear_method(users_group_ids)
    writer[key(1)] = "new"
    settle(writer)
    child.stdin.write("go\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() in ("'new'", "None")
