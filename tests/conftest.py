"""Test fixtures: a real redis-server owned by the test session.

The suite starts its own server on a free port (never the machine's shared
one) so tests can stop and restart it. Nothing here mocks Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ormcache_redis import RedisClient, _native, testing


class RedisServer(testing.RedisServer):
    """The suite's server, with a helper that talks to it on its own client."""

    def command(self, *args: str | bytes) -> object:
        """Runs a command on a fresh client that shares no state with tests."""
        return RedisClient(self.url).execute(*args)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a running, empty test server."""
    if not redis_server.running:
        redis_server.start()
    # Writes queued by earlier tests must not land after the flush.
    _native.flush_all_writers(5.0)
    redis_server.command("FLUSHALL")
    return redis_server.url


@pytest.fixture
def client(redis_url: str) -> RedisClient:
    return RedisClient(redis_url, retry_initial=0.05, retry_max=0.2)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Option tests read the environment: start each test from a clean one.
    for name in list(os.environ):
        if name.startswith(("ORMCACHE_REDIS_", "SESSION_STORE")):
            monkeypatch.delenv(name, raising=False)
