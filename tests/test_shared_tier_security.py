"""Whoever can write to Redis must not change what the cache serves.

Each test plays the attacker against a real redis-server: planted bodies,
copied headers, flipped bits, entries of another database or deployment,
and lost or rolled-back generation bookkeeping. None may produce a hit.
"""

from __future__ import annotations

import logging

import pytest
from test_two_tier import (
    HEADER_LEN,
    entry_names,
    generations_key_in,
    key,
    make_cache,
    resealed,
    settle,
    users_group_ids,
)

from ormcache_redis import Codec, TwoTierCache

METHOD = f"{users_group_ids.__module__}.users_group_ids"


def only_entry(redis_server) -> tuple[bytes, bytes]:
    (name,) = entry_names(redis_server)
    return name, redis_server.command("GET", name)


def test_a_copied_header_with_a_planted_body_is_never_a_hit(
    redis_url: str, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = (1, 2, 3)  # e.g. the group ids of user 1
    settle(writer)
    name, payload = only_entry(redis_server)
    planted = payload[:HEADER_LEN] + Codec().dumps((1, 2, 3, 4))  # + the admin group
    redis_server.command("SET", name, planted)
    reader = make_cache(redis_url)
    with caplog.at_level(logging.WARNING, logger="ormcache_redis"):
        for _ in range(3):
            with pytest.raises(KeyError):
                reader[key(1)]
            reader.evict_method(users_group_ids)
    stats = reader.stats()
    assert stats["l2_hits"] == 0 and stats["forged_entries"] == 3
    assert stats["methods"][METHOD]["forged_entries"] == 3
    warnings = [r.getMessage() for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(warnings) == 1, warnings  # rate-limited
    assert "different secrets" in warnings[0]


def test_every_flipped_bit_is_a_miss(redis_url: str, redis_server) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = "a value of some length"
    settle(writer)
    name, payload = only_entry(redis_server)
    reader = make_cache(redis_url)
    hits = 0
    for index in range(len(payload)):
        for bit in (0, 3, 7):
            tampered = bytearray(payload)
            tampered[index] ^= 1 << bit
            redis_server.command("SET", name, bytes(tampered))
            reader.evict_method(users_group_ids)
            if reader.get(key(1)) is not None:
                hits += 1
    assert hits == 0
    stats = reader.stats()
    assert stats["forged_entries"] + stats["rejected_entries"] == 3 * len(payload)


def test_an_entry_of_another_database_is_a_miss(redis_url: str, redis_server) -> None:
    db1 = make_cache(redis_url, namespace=b"db1:1:default:0")
    db1[key(1)] = "db1 value"
    settle(db1)
    db2 = make_cache(redis_url, namespace=b"db2:1:default:0")
    db2[key(1)] = "db2 value"
    settle(db2)
    names = entry_names(redis_server)
    payloads = {n: redis_server.command("GET", n) for n in names}
    # Swap the databases' entries: each name now holds the other's.
    first, second = names
    redis_server.command("SET", first, payloads[second])
    redis_server.command("SET", second, payloads[first])
    for namespace in (b"db1:1:default:0", b"db2:1:default:0"):
        reader = make_cache(redis_url, namespace=namespace)
        assert reader.get(key(1)) is None


def test_another_secret_cannot_write_entries(redis_url: str) -> None:
    other_deployment = make_cache(redis_url, secret="another-deployment-secret")
    other_deployment[key(1)] = "planted"
    settle(other_deployment)
    reader = make_cache(redis_url)
    assert reader.get(key(1)) is None
    assert reader.stats()["forged_entries"] == 1


def test_a_secret_set_later_keys_the_entries(redis_url: str) -> None:
    cache = make_cache(redis_url, secret=None)
    assert not cache.authenticated
    cache.secret = "test-deployment-secret"
    assert cache.authenticated
    cache[key(1)] = "value"
    settle(cache)
    assert make_cache(redis_url)[key(1)] == "value"
    with pytest.raises(ValueError, match="secret"):
        cache.secret = ""


def test_without_a_secret_one_warning_and_corruption_is_still_caught(
    redis_url: str, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ormcache_redis"):
        cache = make_cache(redis_url, secret=None)
        cache[key(1)] = "value"
        cache[key(2)] = "value"
        settle(cache)
    # Once per process: another test may already have said it.
    assert sum("has no secret" in r.getMessage() for r in caplog.records) <= 1
    name = entry_names(redis_server)[0]
    payload = bytearray(redis_server.command("GET", name))
    payload[-1] ^= 1
    redis_server.command("SET", name, bytes(payload))
    reader = make_cache(redis_url, secret=None)
    assert reader.get(key(1)) is None or reader.get(key(2)) is None
    assert reader.stats()["forged_entries"] == 1


def test_lost_bookkeeping_never_revives_old_entries(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "before the clear"
    settle(cache)
    cache.clear_method(users_group_ids)
    # The old entry is still in Redis, stamped with the old token. Lose the
    # bookkeeping as an eviction, a DEL or a failover would.
    generations = generations_key_in(redis_server)
    redis_server.command("DEL", generations)
    assert len(entry_names(redis_server)) == 1
    reader = make_cache(redis_url)
    assert reader.get(key(1)) is None
    assert reader.stats()["rejected_entries"] == 1
    # A process that missed the loss still stamps its writes with the token
    # it knows: nobody else accepts them.
    redis_server.command("FLUSHDB")
    cache[key(2)] = "value"
    settle(cache)
    assert len(entry_names(redis_server)) == 1
    assert make_cache(redis_url).get(key(2)) is None


def test_a_rolled_back_token_is_refused_by_a_process_that_saw_it_replaced(
    redis_url: str, redis_server
) -> None:
    writer = make_cache(redis_url)
    writer[key(1)] = "old value"
    settle(writer)
    generations = generations_key_in(redis_server)
    old_token = redis_server.command("HGET", generations, METHOD)
    reader = make_cache(redis_url)
    assert reader[key(1)] == "old value"
    writer.clear_method(users_group_ids)
    reader.evict_method(users_group_ids)
    assert reader.get(key(1)) is None  # sees the new token
    redis_server.command("HSET", generations, METHOD, old_token)  # roll it back
    reader.evict_method(users_group_ids)
    assert reader.get(key(1)) is None
    assert redis_server.command("HGET", generations, METHOD) != old_token


def test_generation_bookkeeping_expires_and_is_refreshed(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url, ttl=100)
    cache[key(1)] = "value"
    settle(cache)
    generations = generations_key_in(redis_server)
    assert 100 < redis_server.command("TTL", generations) <= 200
    redis_server.command("EXPIRE", generations, 5)
    cache.clear_method(users_group_ids)
    assert 100 < redis_server.command("TTL", generations) <= 200


def test_clear_gives_a_fresh_token_every_time(redis_url: str) -> None:
    cache = make_cache(redis_url)
    tokens = set()
    for _ in range(20):
        cache.clear_method(users_group_ids)
        tokens.add(cache.method_generations()[METHOD])
    assert len(tokens) == 20 and 0 not in tokens


def test_tampered_generation_tokens_are_a_miss_not_an_error(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "value"
    settle(cache)
    generations = generations_key_in(redis_server)
    redis_server.command("HSET", generations, METHOD, "not a number")
    reader = make_cache(redis_url)
    assert reader.get(key(1)) is None
    assert METHOD not in reader.method_generations()


def test_the_entry_tag_is_what_the_documented_format_says(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "value"
    settle(cache)
    _name, payload = only_entry(redis_server)
    assert payload[:4] == b"OCE2" and resealed(payload, key(1)) == payload


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"ttl": -5}, "ttl"), ({"ttl": 0}, "ttl"), ({"count": -1}, "count"), ({"count": 0}, "count")],
)
def test_bad_arguments_name_themselves(arguments: dict, named: str) -> None:
    options = {"count": 10, **arguments}
    count = options.pop("count")
    with pytest.raises(ValueError, match=named):
        TwoTierCache("default", count, client=None, codec=Codec(), **options)


def test_unencodable_values_are_reported_once_per_method(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(redis_url)
    with caplog.at_level(logging.WARNING, logger="ormcache_redis"):
        for i in range(5):
            cache[key(i)] = object()
    warnings = [r.getMessage() for r in caplog.records if "values of" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "users_group_ids" in warnings[0] and "object" in warnings[0]
