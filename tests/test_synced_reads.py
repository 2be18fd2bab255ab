"""Shared reads of a cache whose owner syncs generations per unit of work.

After ``sync_generations`` a process knows each method's token as well as
it knows its L1 copies are current, so an L2 read is one entry read (a
GETRANGE bounded at ``max_value_bytes``, see test_bounds). These tests
hold that to what the pipelined read guarantees: never an entry of an
older generation after the next sync, a value another process wrote under
a newer generation still found, and the token asked again whenever the
owner cannot sync or Redis went away.
"""

from __future__ import annotations

import time

from test_two_tier import generations_key_in, key, make_cache, settle, users_group_ids

METHOD = f"{users_group_ids.__module__}.users_group_ids"


def command_calls(redis_server, name: str) -> int:
    stats = redis_server.command("INFO", "commandstats").decode()
    for line in stats.splitlines():
        if line.startswith(f"cmdstat_{name}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def reads_cost(redis_server, read) -> tuple[int, int]:
    """(entry reads, HGET) commands Redis served for ``read()``."""
    redis_server.command("CONFIG", "RESETSTAT")
    read()
    return command_calls(redis_server, "getrange"), command_calls(redis_server, "hget")


def primed(redis_url: str) -> tuple:
    writer = make_cache(redis_url)
    writer[key(1)] = "first"
    settle(writer)
    reader = make_cache(redis_url)
    return writer, reader


def test_a_synced_read_is_one_get(redis_url: str, redis_server) -> None:
    _writer, reader = primed(redis_url)
    assert reads_cost(redis_server, lambda: reader[key(1)]) == (1, 1)  # token not known yet
    reader.sync_generations()
    reader.evict_method(users_group_ids)
    assert reads_cost(redis_server, lambda: reader[key(1)]) == (1, 0)
    assert reader.stats()["l2_hits"] == 2


def test_unsynced_reads_ask_for_the_token(redis_url: str, redis_server) -> None:
    _writer, reader = primed(redis_url)
    reader.sync_generations()
    reader[key(1)]
    reader.mark_unsynced()
    reader.evict_method(users_group_ids)
    assert reads_cost(redis_server, lambda: reader[key(1)]) == (1, 1)


def test_a_value_written_after_a_clear_elsewhere_is_found(redis_url: str, redis_server) -> None:
    writer, reader = primed(redis_url)
    reader.sync_generations()
    assert reader[key(1)] == "first"
    writer.clear_method(users_group_ids)
    writer[key(1)] = "second"
    settle(writer)
    reader.evict_method(users_group_ids)
    # The entry carries a token the reader does not know: it asks Redis.
    found = []
    get_calls, hget_calls = reads_cost(redis_server, lambda: found.append(reader.get(key(1))))
    assert found == ["second"] and (get_calls, hget_calls) == (2, 1)


def test_older_generations_are_never_served_after_the_next_sync(
    redis_url: str, redis_server
) -> None:
    writer, reader = primed(redis_url)
    reader.sync_generations()
    assert reader[key(1)] == "first"
    writer.clear_method(users_group_ids)
    assert reader.sync_generations() == [METHOD]
    assert reader.get(key(1)) is None
    assert reader.stats()["rejected_entries"] == 1


def test_lost_bookkeeping_after_a_clear_brings_nothing_back(redis_url: str, redis_server) -> None:
    writer, reader = primed(redis_url)
    reader.sync_generations()
    writer.clear_method(users_group_ids)
    reader.sync_generations()
    generations = generations_key_in(redis_server)
    redis_server.command("DEL", generations)
    for cache in (reader, make_cache(redis_url)):
        cache.sync_generations()
        assert cache.get(key(1)) is None
    assert reader.stats()["l2_hits"] == 0


def test_after_an_outage_the_token_is_asked_again(redis_url: str, redis_server) -> None:
    _writer, reader = primed(redis_url)
    reader.sync_generations()
    reader[key(1)]
    redis_server.stop()
    reader.evict_method(users_group_ids)
    assert reader.get(key(1)) is None  # Redis down: a miss, no error
    redis_server.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not reader.client.healthy:
        reader.get(key(-1))  # lets the breaker probe
        time.sleep(0.05)
    assert reader.client.healthy
    # Redis came back empty: the token this process knew is gone with it.
    writer = make_cache(redis_url)
    writer[key(1)] = "after the restart"
    settle(writer)
    reader.evict_method(users_group_ids)
    assert reader.get(key(1)) == "after the restart"


def test_a_clear_moves_other_keys_in_the_same_transaction(redis_url: str, redis_server) -> None:
    cache = make_cache(redis_url)
    cache[key(1)] = "value"
    settle(cache)
    before = cache.method_generations()[METHOD]
    cache.clear_method(users_group_ids, with_commands=[(b"SET", b"test:version", b"v2")])
    assert redis_server.command("GET", b"test:version") == b"v2"
    assert cache.method_generations()[METHOD] != before
