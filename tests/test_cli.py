"""The ``ormcache-redis`` command against the suite's real redis-server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

import ormcache_redis
from ormcache_redis import RedisClient
from ormcache_redis.cli import main
from ormcache_redis.metrics.process_record import process_figures
from ormcache_redis.metrics.publisher import MetricsPublisher

PASSWORD = "doctor-pw-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_url(redis_url: str, user: str) -> str:
    return redis_url.replace("redis://", f"redis://{user}:{PASSWORD}@")


@pytest.fixture
def acl_user(redis_server, redis_url):
    """Makes ACL users on the test server and deletes them afterwards."""
    made: list[str] = []

    def make(name: str, *rules: str) -> str:
        redis_server.command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", *rules)
        made.append(name)
        return user_url(redis_url, name)

    yield make
    for name in made:
        redis_server.command("ACL", "DELUSER", name)


def test_doctor_passes_a_usable_server_and_never_prints_the_password(
    redis_url, acl_user, capsys
) -> None:
    url = acl_user("odoo", "~ormcache:*", "+@all")
    assert main(["doctor", url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for topic in ("reachability", "latency", "version", "memory", "persistence", "permissions"):
        assert any(f"] {topic}:" in line for line in lines), topic
    assert PASSWORD not in out
    assert lines[-1].startswith("0 blocking problem(s)")


def test_doctor_names_the_commands_an_acl_refuses(redis_url, acl_user, capsys) -> None:
    url = acl_user("narrow", "~ormcache:*", "+ping", "+get", "+set", "+info", "+config|get")
    assert main(["doctor", url]) == 1
    out = capsys.readouterr().out
    permissions = next(line for line in out.splitlines() if "] permissions:" in line)
    assert permissions.startswith("[FAIL]")
    refused = permissions.split("refused on ormcache:*: ")[1].split(" -> ")[0].split(", ")
    assert "hset" in refused and "eval" in refused and "multi/exec" in refused
    assert "get" not in refused and "set" not in refused
    assert PASSWORD not in out


def test_doctor_checks_the_session_role(redis_url, capsys) -> None:
    assert main(["doctor", "--role", "sessions", redis_url]) == 0
    out = capsys.readouterr().out
    # The suite's server runs without appendonly: sessions would not survive a restart.
    assert any(
        line.startswith("[WARN] persistence") and "appendonly yes" in line
        for line in out.splitlines()
    )


def test_doctor_reports_an_unreachable_server_as_blocking(capsys) -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    assert main(["doctor", url]) == 1
    out = capsys.readouterr().out
    assert out.startswith("[FAIL] reachability") and PASSWORD not in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["doctor"],
        ["doctor", "http://example.com"],
        ["doctor", "redis://127.0.0.1:6379/0", "--role", "both"],
        ["stats"],
        ["flush", "--url", "redis://127.0.0.1:6379/0"],
        ["flush", "--db", "bad name", "--url", "redis://127.0.0.1:6379/0"],
        ["flush", "--db", "db1", "--cache", "no such/cache", "--url", "redis://127.0.0.1:6379/0"],
        ["stats", "--url", f"redis://u:{PASSWORD}@127.0.0.1:99999/0"],
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("ormcache-redis: ") and PASSWORD not in captured.err


@pytest.mark.parametrize("argv", [["--help"], ["doctor", "--help"], ["stats", "--help"],
                                  ["flush", "--help"], ["sessions", "--help"],
                                  ["sessions", "to-redis", "--help"]])  # fmt: skip
def test_every_command_has_help(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert "usage: ormcache-redis" in capsys.readouterr().out


def test_sessions_runs_the_migration(tmp_path, redis_url, capsys) -> None:
    empty = tmp_path / "sessions"
    empty.mkdir()
    argv = ["sessions", "to-redis", "--session-dir", str(empty), "--url", redis_url]
    assert main(argv) == 0
    assert "0" in capsys.readouterr().out
    assert main(["sessions", "to-redis", "--session-dir", str(empty)]) == 2
    assert capsys.readouterr().err.startswith("ormcache-redis sessions: --url")


def test_version_names_the_package_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ormcache-redis {ormcache_redis.__version__}"


def test_the_old_sessions_command_still_works(tmp_path, redis_url) -> None:
    empty = tmp_path / "sessions"
    empty.mkdir()
    script = "from ormcache_redis.sessions.migrate import main; raise SystemExit(main())"
    done = subprocess.run(
        [sys.executable, "-c", script, "to-redis", "--session-dir", str(empty), "--url", redis_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_stats_prints_the_cluster_table_and_json(redis_url, capsys) -> None:
    client = RedisClient(redis_url)
    assert main(["stats", "--url", redis_url]) == 0
    assert "No process has published" in capsys.readouterr().out
    figures = process_figures({}, clients={"cache": client}, session_counts={"saved": 3})
    MetricsPublisher(client, lambda: figures).publish()
    assert client.flush(5)
    assert main(["stats", "--url", redis_url]) == 0
    assert "processes 1" in capsys.readouterr().out
    assert main(["stats", "--url", redis_url, "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["processes"] == 1 and totals["sessions"]["saved"] == 3


def test_stats_and_flush_read_odoo_conf(tmp_path, redis_url, capsys) -> None:
    conf = tmp_path / "odoo.conf"
    conf.write_text(f"[options]\normcache_redis_url = {redis_url}\normcache_redis_prefix = t:\n")
    assert main(["flush", "-c", str(conf), "--db", "db9"]) == 0
    assert "db9" in capsys.readouterr().out
    assert RedisClient(redis_url).execute("EXISTS", "t:{db9}:flush") == 1


@pytest.mark.parametrize(
    ("lines", "argv", "sentence"),
    [
        (["ormcache_redis_url = http://h"], [], "ormcache_redis_url must be a redis://"),
        (["ormcache_redis_url = redis://h", "ormcache_redis_prefix = a b"], [],
         "ormcache_redis_prefix must be at most 64 characters without spaces"),
        (["ormcache_redis_url = redis://h"], ["--prefix", "a b"],
         "--prefix must be at most 64 characters without spaces"),
        ([], ["--url", "http://h"], "--url must be a redis://"),
    ],
)  # fmt: skip
def test_stats_and_flush_check_options_by_their_rules(tmp_path, capsys, lines, argv, sentence):
    """odoo.conf's values are named by their option, the command line's by its flag."""
    conf = tmp_path / "odoo.conf"
    conf.write_text("\n".join(["[options]", *lines]) + "\n")
    with pytest.raises(SystemExit) as exited:
        main(["stats", "-c", str(conf), *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith(f"ormcache-redis: {sentence}")


def test_stats_of_an_unreachable_redis_exits_3(capsys) -> None:
    url = f"redis://u:{PASSWORD}@127.0.0.1:{free_port()}/0"
    assert main(["stats", "--url", url]) == 3
    assert PASSWORD not in capsys.readouterr().err
