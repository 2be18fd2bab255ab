"""The Redis client against a real redis-server: commands, write-behind,
timeouts, outages and the circuit breaker, fork safety."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from ormcache_redis import ConfigError, RedisClient, RedisReplyError, RedisUnavailable


def test_commands_and_reply_types(client: RedisClient) -> None:
    assert client.execute("SET", "k", b"\x00\xffbinary", "EX", 100) == "OK"
    assert client.execute("GET", "k") == b"\x00\xffbinary"
    assert client.execute("GET", "missing") is None
    assert client.execute("INCRBY", "n", 5) == 5
    assert client.execute("TTL", "k") > 0
    assert client.execute("HSET", "h", "f", 1.5) == 1
    assert client.execute("HGETALL", "h") == [b"f", b"1.5"]
    assert client.pipeline([("INCR", "n"), ("GET", "n")]) == [6, b"6"]
    assert client.pipeline([("SET", "a", "1"), ("EXPIRE", "a", 10)], transaction=True) == [
        "OK",
        1,
    ]
    assert 0 < client.ping() < 1


def test_error_replies_and_bad_arguments(client: RedisClient) -> None:
    client.execute("SET", "str", "x")
    with pytest.raises(RedisReplyError):
        client.execute("HGET", "str", "field")
    with pytest.raises(TypeError):
        client.execute("SET", "k", object())
    with pytest.raises(TypeError):
        client.execute("SET", "k", True)
    with pytest.raises(TypeError):
        client.execute()
    # An error reply is not an outage.
    assert client.healthy


@pytest.mark.parametrize(
    "url",
    ["http://localhost", "localhost:6379", "redis://host/notanumber", "ftp://u:hunter2@h"],
)
def test_bad_urls_raise_config_error_without_secrets(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        RedisClient(url)
    assert "hunter2" not in str(info.value)


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="socket_timeout"):
        RedisClient("redis://127.0.0.1", socket_timeout=0)
    with pytest.raises(ConfigError, match="retry_max"):
        RedisClient("redis://127.0.0.1", retry_initial=5, retry_max=1)


def test_repr_and_address_hide_the_password() -> None:
    client = RedisClient("redis://user:hunter2@127.0.0.1:6399/2")
    assert "hunter2" not in repr(client) and "hunter2" not in client.address
    assert client.address == "redis://127.0.0.1:6399/2"


def test_write_behind_is_visible_from_another_process(client: RedisClient, redis_url: str) -> None:
    for i in range(500):
        assert client.enqueue("SET", f"wb:{i}", str(i), "EX", 60)
    assert client.flush(timeout=10)
    code = (
        "from ormcache_redis import RedisClient;"
        f"c = RedisClient({redis_url!r});"
        "print(sum(int(c.execute('GET', f'wb:{i}')) for i in range(500)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == sum(range(500))
    stats = client.stats()
    assert stats["writes_sent"] == 500 and stats["writes_dropped_full"] == 0


def test_full_write_queue_drops_and_counts(redis_url: str) -> None:
    client = RedisClient(redis_url, write_queue=1)
    results = [client.enqueue("SET", f"q:{i}", "x" * 1000) for i in range(2000)]
    assert client.flush(timeout=10)
    stats = client.stats()
    dropped = results.count(False)
    assert dropped == stats["writes_dropped_full"] > 0
    assert stats["writes_sent"] == results.count(True)


def test_outage_fails_fast_then_recovers(
    redis_server, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = RedisClient(redis_url, retry_initial=0.1, retry_max=0.2, failure_threshold=2)
    client.execute("SET", "before", "1")
    redis_server.stop()
    caplog.set_level(logging.INFO, logger="ormcache_redis")
    started = time.monotonic()
    failures = 0
    for _ in range(50):
        try:
            client.execute("GET", "before")
        except RedisUnavailable:
            failures += 1
    assert failures == 50
    assert time.monotonic() - started < 2, "an outage must not make every call wait"
    assert client.state == "open" and not client.healthy
    # Writes while down are dropped and counted, never queued without bound.
    assert client.enqueue("SET", "during", "1") is False
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]

    redis_server.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            client.execute("SET", "after", "1")
            break
        except RedisUnavailable:
            time.sleep(0.05)
    assert client.execute("GET", "after") == b"1"
    assert client.state == "closed"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert client.stats()["outages"] == 1


def test_unresponsive_server_times_out() -> None:
    # A listener that accepts connections and never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client = RedisClient(f"redis://127.0.0.1:{port}/0", socket_timeout=0.1, connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            client.execute("GET", "x")
        assert time.monotonic() - started < 1.5
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


def test_gil_is_released_during_io(redis_url: str) -> None:
    client = RedisClient(redis_url)
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        # BLPOP blocks server-side for 0.2 s: the other thread must run meanwhile.
        RedisClient(redis_url, socket_timeout=2).execute("BLPOP", "nothing", "0.2")
    finally:
        done.set()
        counter.join()
    assert ticks > 1000
    del client


def test_forked_child_gets_its_own_connections_and_writer(
    client: RedisClient, run_in_fork: Callable[[Callable[[], bool]], None]
) -> None:
    client.execute("SET", "parent", "1")
    client.enqueue("SET", "parent-queued", "1")
    assert client.flush()

    def child() -> bool:
        return (
            client.execute("GET", "parent") == b"1"
            and client.enqueue("SET", "child-queued", "2")
            and client.flush(5)
            and client.execute("GET", "child-queued") == b"2"
        )

    run_in_fork(child)
    # The parent's pooled connection is intact after the child used its own.
    for _ in range(20):
        assert client.execute("GET", "parent") == b"1"
    assert client.execute("GET", "child-queued") == b"2"


def test_threads_share_the_pool(
    client: RedisClient, run_threads: Callable[[Callable[[int], None], int], None]
) -> None:
    def worker(n: int) -> None:
        for i in range(200):
            client.execute("SET", f"t:{n}:{i}", i)
            assert client.execute("GET", f"t:{n}:{i}") == str(i).encode()

    run_threads(worker, 8)
    assert client.stats()["connects"] <= 8


def test_queued_writes_are_flushed_at_clean_exit(redis_url: str, client: RedisClient) -> None:
    # Enough writes that the writer thread is still busy when the script ends
    # (without the exit flush about a third of them are lost on this machine).
    code = (
        "from ormcache_redis import RedisClient;"
        f"c = RedisClient({redis_url!r}, write_queue=100000);"
        "assert all([c.enqueue('SET', f'exit:{i}', 'x' * 1000) for i in range(50000)])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert client.execute("DBSIZE") == 50000


def test_unix_socket(tmp_path) -> None:
    socket_path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = RedisClient(f"unix://{socket_path}?db=3")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except RedisUnavailable:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.execute("SET", "over-unix", "1")
        assert client.execute("GET", "over-unix") == b"1"
        assert client.execute("CLIENT", "INFO").count(b"db=3") == 1
    finally:
        process.kill()
        process.wait()


def test_no_thread_until_the_first_write(redis_url: str) -> None:
    # Odoo's master process builds clients before forking its workers.
    code = (
        "import os;"
        "from ormcache_redis import RedisClient;"
        f"c = RedisClient({redis_url!r}); c.execute('GET', 'x');"
        "n = len(os.listdir('/proc/self/task'));"
        "c.enqueue('SET', 'x', '1'); c.flush();"
        "print(n, len(os.listdir('/proc/self/task')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    threads_before_write, threads_after_write = map(int, out.stdout.split())
    assert threads_after_write == threads_before_write + 1


def test_writes_of_a_dropped_client_are_flushed_at_exit(
    redis_url: str, client: RedisClient
) -> None:
    code = (
        "from ormcache_redis import RedisClient;"
        f"c = RedisClient({redis_url!r}, write_queue=100000);"
        "assert all([c.enqueue('SET', f'orphan:{i}', 'x' * 1000) for i in range(50000)]);"
        "del c"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert client.execute("DBSIZE") == 50000
