"""The start-up check of Redis memory settings, against real servers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ormcache_redis import RedisClient
from ormcache_redis.server_check import eviction_warning
from ormcache_redis.testing import RedisServer


@pytest.fixture
def configured(redis_url: str, redis_server: Any) -> Iterator[RedisClient]:
    """A client of the suite's server; its memory settings are put back after."""
    client = RedisClient(redis_url)
    try:
        yield client
    finally:
        client.execute("CONFIG", "SET", "maxmemory", "0")
        client.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")


def set_memory(client: RedisClient, maxmemory: str, policy: str) -> None:
    client.execute("CONFIG", "SET", "maxmemory", maxmemory)
    client.execute("CONFIG", "SET", "maxmemory-policy", policy)


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru", "volatile-ttl"])
def test_no_memory_limit_never_warns(configured: RedisClient, policy: str) -> None:
    set_memory(configured, "0", policy)
    assert eviction_warning(configured, "cache") is None
    assert eviction_warning(configured, "sessions") is None


@pytest.mark.parametrize(
    "policy",
    ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-ttl"],
)
def test_an_evicting_policy_warns_for_sessions_only(configured: RedisClient, policy: str) -> None:
    set_memory(configured, "100mb", policy)
    warning = eviction_warning(configured, "sessions")
    assert warning is not None
    assert policy in warning and "100.0 MiB" in warning and "logs users out" in warning
    assert configured.address in warning
    assert eviction_warning(configured, "cache") is None


def test_noeviction_with_a_limit_warns_for_the_cache_only(configured: RedisClient) -> None:
    set_memory(configured, "2gb", "noeviction")
    warning = eviction_warning(configured, "cache")
    assert warning is not None
    assert "refuses writes" in warning and "allkeys-lru" in warning and "2.0 GiB" in warning
    assert eviction_warning(configured, "sessions") is None


def test_a_user_without_config_permission_gets_no_verdict(
    configured: RedisClient, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    set_memory(configured, "100mb", "allkeys-lru")
    configured.execute("ACL", "SETUSER", "no-config", "on", ">pw", "~*", "+@all", "-config")
    try:
        limited = RedisClient(redis_url.replace("redis://", "redis://no-config:pw@"))
        assert limited.execute("PING") == "PONG"
        with caplog.at_level(logging.DEBUG, logger="ormcache_redis.server_check"):
            assert eviction_warning(limited, "sessions") is None
        assert "no permissions" in caplog.text and "pw@" not in caplog.text
    finally:
        configured.execute("ACL", "DELUSER", "no-config")


def test_a_disabled_config_command_gets_no_verdict(caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(args=["--rename-command", "CONFIG", ""]) as server:
        client = RedisClient(server.url)
        with caplog.at_level(logging.DEBUG, logger="ormcache_redis.server_check"):
            assert eviction_warning(client, "cache") is None
        assert "unknown command" in caplog.text


def test_an_unreachable_server_gets_no_verdict() -> None:
    client = RedisClient("redis://127.0.0.1:1/0")
    assert eviction_warning(client, "sessions") is None


def test_the_role_is_checked(configured: RedisClient) -> None:
    with pytest.raises(ValueError, match="role"):
        eviction_warning(configured, "session")
