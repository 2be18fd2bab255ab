"""Test fixtures: a real redis-server owned by the test session.

The suite starts its own server on a free port (never the machine's shared
one) so tests can stop and restart it. Nothing here mocks Redis.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ormcache_redis import RedisClient, _native, testing

ODOO_TESTS = Path(__file__).parent / "odoo"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("odoo", "tests/odoo/: real Odoo source trees")
    group.addoption(
        "--odoo-tree",
        action="append",
        default=[],
        metavar="PATH",
        help="an Odoo 17.0/18.0/19.0 source tree (the folder of odoo-bin); repeat for several. "
        "Without one, tests/odoo/ is not collected",
    )
    group.addoption(
        "--odoo-python",
        metavar="PYTHON",
        help="a Python with Odoo's requirements (default: the one running pytest)",
    )
    group.addoption(
        "--odoo-db-url",
        default="postgresql://odoo@127.0.0.1:5432/ocr_test",
        metavar="URL",
        help="PostgreSQL role and database name prefix for throwaway databases",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # The plain suite needs no Odoo: tests/odoo/ runs only when given a tree.
    if collection_path == ODOO_TESTS and not config.getoption("--odoo-tree"):
        return True
    return None


class RedisServer(testing.RedisServer):
    """The suite's server, with a helper that talks to it on its own client."""

    def command(self, *args: str | bytes) -> object:
        """Runs a command on a fresh client that shares no state with tests.

        Generous timeouts: set-up and checks must not fail because a loaded
        machine answered later than a cache would wait."""
        return RedisClient(self.url, connect_timeout=5.0, socket_timeout=5.0).execute(*args)


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
def proxy(redis_url: str, redis_server: RedisServer) -> Iterator[testing.FaultProxy]:
    """The suite's TCP fault proxy in front of its server."""
    with testing.FaultProxy(redis_server.port) as running:
        yield running


@pytest.fixture(scope="module")
def own_server() -> Iterator[testing.RedisServer]:
    """A server the module may pause and restart without disturbing others."""
    server = testing.RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.resume()
        server.close()


@pytest.fixture
def client(redis_url: str) -> RedisClient:
    return RedisClient(redis_url, retry_initial=0.05, retry_max=0.2)


@pytest.fixture
def raw(redis_url: str) -> RedisClient:
    """A second client, to look at what the code under test wrote."""
    return RedisClient(redis_url)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Option tests read the environment: start each test from a clean one.
    for name in list(os.environ):
        if name.startswith(("ORMCACHE_REDIS_", "SESSION_STORE")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_threads() -> Callable[[Callable[[int], None], int], None]:
    """Runs ``worker(n)`` in ``count`` threads at once; fails on any exception."""

    def run(worker: Callable[[int], None], count: int) -> None:
        errors: list[BaseException] = []

        def guarded(n: int) -> None:
            try:
                worker(n)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors

    return run


@pytest.fixture
def run_in_fork() -> Callable[[Callable[[], bool]], None]:
    """Runs ``check()`` in a forked child; fails unless it returns True."""
    if not hasattr(os, "fork"):
        pytest.fail("this test needs os.fork")

    def run(check: Callable[[], bool]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_end)
                os.write(write_end, b"ok" if check() else b"ko")
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        answer = os.read(read_end, 2)
        os.close(read_end)
        assert status == 0 and answer == b"ok"

    return run
