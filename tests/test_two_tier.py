"""The two-tier cache against a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from ormcache_redis import Codec, RedisClient, TwoTierCache
from ormcache_redis._native import UnitOfWork, _derive_key, _mac_tag, canonical_key, key_digest

HEADER_LEN = 4 + 8 + 32  # magic, generation token, tag


def users_group_ids(uid: int) -> tuple[int, ...]:
    """Stands for a cached model method (the key holds the function)."""
    return (uid,)


def check_password(uid: int, password: str) -> bool:
    return bool(password)


SECRET = "test-deployment-secret"


def make_cache(
    url: str, *, namespace: bytes = b"db1:1:default:0", **kwargs: object
) -> TwoTierCache:
    socket_timeout = kwargs.pop("socket_timeout", 0.25)
    client = RedisClient(url, retry_initial=0.05, retry_max=0.2, socket_timeout=socket_timeout)
    kwargs.setdefault("secret", SECRET)
    # Polling for other processes' clears is tested on its own
    # (test_follow_clears): the other tests count commands.
    kwargs.setdefault("follow_clears", None)
    return TwoTierCache("default", 100, client=client, codec=Codec(), namespace=namespace, **kwargs)


def entry_names(redis_server) -> list[bytes]:
    """Names of the data entries in Redis (not the generation bookkeeping)."""
    return sorted(n for n in redis_server.command("KEYS", "*") if b":c:" in n)


def generations_key_in(redis_server) -> bytes:
    """The one generations hash in Redis (not its clears key)."""
    (name,) = (
        n for n in redis_server.command("KEYS", "*") if b":g:" in n and not n.endswith(b":clears")
    )
    return name


def key(*args: object, method: Callable[..., object] = users_group_ids) -> tuple:
    return ("res.users", method, *args)


def settle(cache: TwoTierCache) -> None:
    assert cache.client is not None and cache.client.flush(5)


def test_second_process_reads_what_the_first_wrote(redis_url: str) -> None:
    writer = make_cache(redis_url)
    writer[key(7, frozenset({1, 2}))] = (1, 2, 3)
    settle(writer)
    reader = make_cache(redis_url)
    value = reader[key(7.0, frozenset({2, 1}))]
    assert value == (1, 2, 3) and type(value) is tuple
    stats = reader.stats()
    assert stats["l2_hits"] == 1 and stats["l1_hits"] == 0
    # Now in the reader's L1.
    assert reader[key(7, frozenset({1, 2}))] == (1, 2, 3)
    assert reader.stats()["l1_hits"] == 1


def test_another_os_process_reads_the_entry(redis_url: str) -> None:
    writer = make_cache(redis_url)
    writer[key(42)] = {"answer": [42, 42.0, None]}
    settle(writer)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_two_tier import make_cache, key
        cache = make_cache({redis_url!r})
        print(repr(cache[key(42)]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr({"answer": [42, 42.0, None]})


def test_miss_raises_key_error_and_counts(redis_url: str) -> None:
    cache = make_cache(redis_url)
    with pytest.raises(KeyError):
        cache[key(1)]
    assert cache.get(key(1), "default") == "default"
    stats = cache.stats()
    assert stats["misses"] == 2 and stats["l2_hits"] == 0
    assert stats["methods"][f"{__name__}.users_group_ids"]["misses"] == 2


def test_lookup_counts_say_which_tier_answered(redis_url: str) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = "one"
    settle(writer)
    cache = make_cache(redis_url)
    assert cache[key(1)] == "one"  # L1 miss, L2 hit
    assert cache[key(1)] == "one"  # L1 hit
    assert cache.get(key(2)) is None  # L1 miss, L2 miss
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert (stats["l1_hits"], stats["l1_misses"]) == (1, 2)
    assert (stats["l2_hits"], stats["l2_misses"]) == (1, 1)
    cache.reset_stats()
    assert {name: cache.stats()[name] for name in ("hits", "misses", "l1_misses")} == dict.fromkeys(
        ("hits", "misses", "l1_misses"), 0
    )


def test_without_redis_no_lookup_is_an_l2_miss() -> None:
    cache = TwoTierCache("default", 10, client=None, codec=Codec())
    assert cache.get(key(1)) is None
    cache[key(1)] = "one"
    assert cache[key(1)] == "one"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["l1_misses"]) == (1, 1, 1)
    assert stats["l2_misses"] == 0 and stats["l2_hits"] == 0


def test_entries_are_written_with_the_ttl(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url, ttl=120)
    cache[key(1)] = "v"
    cache.set(key(2), "w", ttl=7)
    settle(cache)
    ttls = sorted(redis_server.command("TTL", k) for k in entry_names(redis_server))
    assert len(ttls) == 2 and 0 < ttls[0] <= 7 and 100 < ttls[1] <= 120


def test_keys_hold_no_clear_text(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url, prefix="pfx:")
    cache[key("secret-looking-argument")] = "value"
    settle(cache)
    names = redis_server.command("KEYS", "*")
    assert len(names) == 2  # the entry and its method's generation token
    name = entry_names(redis_server)[0]
    assert name.startswith(b"pfx:c:") and len(name) == len(b"pfx:c:") + 32
    (generations,) = set(names) - {name}
    assert generations.startswith(b"pfx:g:{") and len(generations) == len(b"pfx:g:{}") + 32
    assert b"secret" not in generations
    assert b"secret" not in name and b"res.users" not in name
    payload = redis_server.command("GET", name)
    assert b"secret-looking-argument" not in payload


def test_namespace_separates_databases_and_generations(redis_url: str) -> None:
    db1 = make_cache(redis_url, namespace=b"db1:1:default:0")
    db1[key(1)] = "db1"
    settle(db1)
    db2 = make_cache(redis_url, namespace=b"db2:1:default:0")
    with pytest.raises(KeyError):
        db2[key(1)]
    later = make_cache(redis_url, namespace=b"db1:1:default:1")
    with pytest.raises(KeyError):
        later[key(1)]
    same = make_cache(redis_url, namespace=b"db1:1:default:0")
    assert same[key(1)] == "db1"
    # Changing the namespace in place is the O(1) clear of the shared tier.
    same.clear()
    same.namespace = b"db1:1:default:2"
    with pytest.raises(KeyError):
        same[key(1)]


def test_unencodable_values_and_keys_stay_local(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    local_value = object()
    cache[key(1)] = local_value
    cache[key(object())] = "key not encodable"
    settle(cache)
    assert cache[key(1)] is local_value
    assert redis_server.command("KEYS", "*") == []
    stats = cache.stats()
    assert stats["unencodable_values"] == 1 and stats["unencodable_keys"] == 1
    assert stats["methods"][f"{__name__}.users_group_ids"]["local_only"] == 2


def test_local_methods_never_reach_redis(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url, local_methods={f"{__name__}.check_password"})
    cache[key(1, "hunter2", method=check_password)] = True
    cache[key(1)] = (1,)
    settle(cache)
    assert len(entry_names(redis_server)) == 1
    for name in entry_names(redis_server):
        assert b"hunter2" not in redis_server.command("GET", name)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"garbage",
        b"OCE1" + b"\x00" * 40,
        b"\x80\x04\x95pickle",
        b"OCE1" + os.urandom(200),
        b"OCE2" + os.urandom(8),
    ],
)
def test_garbage_in_redis_is_a_miss(redis_url: str, redis_server, garbage: bytes) -> None:
    writer = make_cache(redis_url)
    writer[key(5)] = "good"
    settle(writer)
    (name,) = entry_names(redis_server)
    redis_server.command("SET", name, garbage)
    reader = make_cache(redis_url)
    with pytest.raises(KeyError):
        reader[key(5)]
    # Entries are read with GETRANGE (bounded in Redis, see test_bounds),
    # which answers an empty string for a missing key: an empty planted
    # value is read as no entry at all.
    assert reader.stats()["rejected_entries"] == (0 if garbage == b"" else 1)


def test_entry_copied_under_another_name_is_a_miss(redis_url: str, redis_server) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = "one"
    writer[key(2)] = "two"
    settle(writer)
    names = entry_names(redis_server)
    payloads = [redis_server.command("GET", n) for n in names]
    # Swap the two payloads: each name now holds the other key's entry.
    redis_server.command("SET", names[0], payloads[1])
    redis_server.command("SET", names[1], payloads[0])
    reader = make_cache(redis_url)
    for k in (key(1), key(2)):
        with pytest.raises(KeyError):
            reader[k]
    # The tag covers the key's digest: an authentic entry of another key
    # does not verify.
    assert reader.stats()["forged_entries"] == 2


def test_other_format_version_is_a_miss(redis_url: str, redis_server) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = "one"
    settle(writer)
    (name,) = entry_names(redis_server)
    payload = bytearray(redis_server.command("GET", name))
    # Byte 44 starts the codec frame: give it another version, and sign it
    # with the key, as a server running another release would.
    payload[HEADER_LEN + 2] ^= 0xFF
    redis_server.command("SET", name, resealed(bytes(payload), key(1)))
    reader = make_cache(redis_url)
    with pytest.raises(KeyError):
        reader[key(1)]
    assert reader.stats()["rejected_entries"] == 1 and reader.stats()["forged_entries"] == 0


def test_clear_method_invalidates_everywhere(redis_url: str) -> None:
    first = make_cache(redis_url)
    first[key(1)] = "old"
    first[key(1, method=check_password)] = "other method"
    settle(first)
    second = make_cache(redis_url)
    assert second[key(1)] == "old"
    assert first.clear_method(users_group_ids) == 1
    assert key(1) not in first and key(1, method=check_password) in first
    third = make_cache(redis_url)
    with pytest.raises(KeyError):
        third[key(1)]
    assert third[key(1, method=check_password)] == "other method"
    # The second process still has it in L1 until it syncs; its generations
    # show that it must.
    generations = second.method_generations()
    assert set(generations) == {f"{__name__}.users_group_ids", f"{__name__}.check_password"}
    assert second.evict_method(f"{__name__}.users_group_ids") == 1
    with pytest.raises(KeyError):
        second[key(1)]
    # A value computed before the clear but written after it is ignored.
    stale_writer = make_cache(redis_url)
    stale_writer.namespace = b"db1:1:default:0"
    with pytest.raises(KeyError):
        stale_writer[key(9)]  # reads generation 1
    first.clear_method(users_group_ids)  # generation 2
    stale_writer[key(9)] = "computed from old data"
    settle(stale_writer)
    with pytest.raises(KeyError):
        make_cache(redis_url)[key(9)]


def test_gate_controls_shared_access(redis_url: str, redis_server) -> None:
    verdict: list[object] = [False]
    cache = make_cache(redis_url, gate=lambda: verdict[0])
    cache[key(1)] = "local only"
    settle(cache)
    assert redis_server.command("KEYS", "*") == []
    assert cache.stats()["gated"] >= 1

    unit = UnitOfWork([cache])
    verdict[0] = unit
    cache[key(2)] = "deferred"
    settle(cache)
    assert entry_names(redis_server) == [] and unit.pending() == {"default": 1}
    assert unit.commit(cache) == (1, 0, 0)
    settle(cache)
    assert make_cache(redis_url)[key(2)] == "deferred"
    # A unit whose cache moved to another namespace while it ran sends nothing.
    raced = UnitOfWork([cache])
    verdict[0] = raced
    cache[key(3)] = "computed from the old state"
    cache.namespace = b"db1:1:default:1"
    assert raced.commit(cache) == (0, 0, 1)
    # Nor does a unit that never began over that cache.
    orphan = UnitOfWork()
    verdict[0] = orphan
    cache[key(4)] = "outside any unit"
    assert orphan.commit(cache) == (0, 0, 1)
    cache.namespace = b"db1:1:default:0"

    verdict[0] = True
    cache[key(5)] = "now"
    settle(cache)
    assert make_cache(redis_url)[key(5)] == "now"


def test_shared_switch(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache.shared = False
    cache[key(1)] = "x"
    settle(cache)
    assert redis_server.command("KEYS", "*") == []
    assert not cache.stats()["shared"]


def test_redis_killed_mid_run_never_raises(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "cached"
    settle(cache)
    redis_server.stop()
    started = time.monotonic()
    for i in range(200):
        assert cache[key(1)] == "cached"  # L1 keeps serving
        with pytest.raises(KeyError):
            cache[key(1000 + i)]  # a miss, not an error
        cache[key(1000 + i)] = i  # stored locally, write dropped
    assert time.monotonic() - started < 3
    assert cache[key(1199)] == 199
    redis_server.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not cache.client.healthy:
        cache.get(key(-1))  # lets the breaker probe
        time.sleep(0.05)
    assert cache.client.healthy
    cache[key(2)] = "after restart"
    settle(cache)
    assert make_cache(redis_url)[key(2)] == "after restart"


def test_fork_child_uses_the_cache(
    redis_url: str, run_in_fork: Callable[[Callable[[], bool]], None]
) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "from parent"
    settle(cache)

    def child() -> bool:
        ok = cache[key(1)] == "from parent"
        cache[key(2)] = "from child"
        return ok and cache.client.flush(5)

    run_in_fork(child)
    assert make_cache(redis_url)[key(2)] == "from child"
    assert cache[key(1)] == "from parent"


def test_threads_hammering_a_shared_cache(
    redis_url: str, run_threads: Callable[[Callable[[int], None], int], None]
) -> None:
    cache = make_cache(redis_url)

    def worker(n: int) -> None:
        for i in range(300):
            k = key(i % 50)
            try:
                assert cache[k] == i % 50
            except KeyError:
                cache[k] = i % 50

    run_threads(worker, 6)
    settle(cache)
    fresh = make_cache(redis_url)
    assert all(fresh[key(i)] == i for i in range(50))


def test_lru_protocol_is_inherited(redis_url: str) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = 1
    assert key(1) in cache and len(cache) == 1 and bool(cache)
    assert list(cache) == [key(1)] and cache.snapshot == {key(1): 1} == cache.d
    assert cache.pop(key(1)) == 1 and not cache
    assert cache.count == 100 and cache.name == "default"


def get_param(key: str) -> str:
    return key


def test_keys_naming_a_secret_stay_local(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url, secret_markers=["Secret", "token"])
    assert cache.secret_markers == ["secret", "token"]
    cache[key("database.secret", method=get_param)] = "s3cr3t-value"
    cache[key("auth.Access_Token", method=get_param)] = "tok"
    cache[key("web.base.url", method=get_param)] = "http://example.org"
    settle(cache)
    names = entry_names(redis_server)
    assert len(names) == 1
    assert b"s3cr3t-value" not in redis_server.command("GET", names[0])
    assert cache.stats()["secret_keys"] == 2
    assert cache[key("database.secret", method=get_param)] == "s3cr3t-value"  # still cached locally


def test_unshareable_keys_are_reported_once_per_method(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def local_method() -> None:
        """A local function: no name that another process could resolve."""

    cache = make_cache(redis_url)
    with caplog.at_level("WARNING", logger="ormcache_redis"):
        for i in range(5):
            cache[key(i, method=local_method)] = i
            cache.get(key(100 + i, method=local_method))
    warnings = [r.getMessage() for r in caplog.records if "stay in this process" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "local_method" in warnings[0] and "no unique name" in warnings[0]
    assert cache.stats()["unencodable_keys"] == 10


def test_per_method_figures(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    name = f"{__name__}.users_group_ids"
    cache[key(1)] = "one"
    settle(cache)
    reader = make_cache(redis_url)
    assert reader[key(1)] == "one"  # L2 hit
    assert reader[key(1)] == "one"  # L1 hit
    with pytest.raises(KeyError):
        reader[key(2)]  # miss
    with pytest.raises(TypeError):
        reader[key([1, 2])]  # unhashable: Odoo's `err`
    (stored,) = entry_names(redis_server)
    redis_server.command("SET", stored, b"garbage")
    reader.evict_method(users_group_ids)
    with pytest.raises(KeyError):
        reader[key(1)]  # rejected entry
    figures = reader.stats()["methods"][name]
    assert figures["l1_hits"] == 1 and figures["l2_hits"] == 1
    assert figures["misses"] == 2 and figures["errors"] == 1
    assert figures["rejected_entries"] == 1 and figures["redis_errors"] == 0
    assert reader.stats()["l2_misses"] == 2  # absent, then rejected
    assert figures["redis_latency_p50_us"] > 0 and figures["bytes_read"] > 0
    assert figures["hit_ratio"] == pytest.approx(2 / 4)
    redis_server.stop()
    with pytest.raises(KeyError):
        reader[key(3)]
    assert reader.stats()["methods"][name]["redis_errors"] == 1


def resealed(payload: bytes, cache_key: tuple, namespace: bytes = b"db1:1:default:0") -> bytes:
    """``payload`` with its tag recomputed under the test secret: what only
    a holder of the secret can write (the entry format's documented tag)."""
    digest = key_digest(namespace, canonical_key(cache_key))
    magic, token, body = payload[:4], payload[4:12], payload[HEADER_LEN:]
    tag = _mac_tag(_derive_key(SECRET, "cache-entry"), magic + digest + token + body)
    return magic + token + tag + body
