"""``ormcache-redis-sessions`` (``ormcache_redis.sessions.migrate``): session
files into Redis and back, each database's secret read from a real
PostgreSQL, Odoo 17 pickles read without running code.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_support import (
    CONFIGURED_SECRET,
    PREFIX,
    VERSIONS,
    configured_store,
    database_secrets,
    logged_in,
    make_store,
    user_data,
)

from ormcache_redis._native import RedisClient
from ormcache_redis.sessions.files import load_session_pickle
from ormcache_redis.sessions.migrate import main as run_migration
from ormcache_redis.sessions.redis_layout import hash_key

# --------------------------------------------------------------------------- migration


def write_odoo_file(session_dir: Path, sid: str, data: dict[str, Any], age: float = 0) -> Path:
    """A session file as Odoo's FilesystemSessionStore writes it."""
    directory = session_dir / sid[:2]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / sid
    if len(sid) == 40:
        path.write_bytes(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def migrate(*argv: str) -> int:
    return run_migration(list(argv))


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_to_redis_copies_files_with_their_remaining_lifetime(
    redis_url: str, raw: RedisClient, tmp_path: Path, odoo_major: int
) -> None:
    store = configured_store(redis_url, odoo_major)
    fresh, old, ancient, empty = (store.generate_key() for _ in range(4))
    write_odoo_file(tmp_path, fresh, user_data())
    write_odoo_file(tmp_path, old, user_data(7), age=3 * 86400)
    write_odoo_file(tmp_path, ancient, user_data(), age=8 * 86400)
    write_odoo_file(tmp_path, empty, {"db": None, "context": {}, "uid": None, "debug": ""})

    assert migrate("to-redis", "--session-dir", str(tmp_path), "--url", redis_url,
                   "--prefix", "test:session:", "--secret", CONFIGURED_SECRET) == 0  # fmt: skip

    # The copy keeps what was left of the file's 7 days (a read then slides it).
    old_ttl = raw.execute("TTL", hash_key("test:session:", old[:42]))
    assert 4 * 86400 - 60 <= old_ttl <= 4 * 86400
    assert dict(store.get(fresh)) == user_data()
    assert store.get(old)["uid"] == 7
    assert store.get(ancient).is_new and store.get(empty).is_new
    # Idempotent: a second run finds them there and overwrites nothing.
    session = store.get(fresh)
    session["debug"] = "1"
    store.save(session)
    assert migrate("to-redis", "--session-dir", str(tmp_path), "--url", redis_url,
                   "--prefix", "test:session:", "--secret", CONFIGURED_SECRET) == 0  # fmt: skip
    assert store.get(fresh)["debug"] == "1"


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch exploited",))


def test_to_redis_reads_odoo17_pickles_without_running_code(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORMCACHE_REDIS_SECRET", CONFIGURED_SECRET)
    store = configured_store(redis_url, 17)
    good, evil = store.generate_key(), store.generate_key()
    data = {**user_data(), "tags": {"a"}, "seen": datetime.datetime(2024, 5, 1, 12, 0)}
    sessions = tmp_path / "sessions"
    write_odoo_file(sessions, good, data)
    (sessions / evil[:2]).mkdir(exist_ok=True)
    (sessions / evil[:2] / evil).write_bytes(pickle.dumps({"uid": 2, "x": _Exploit()}))

    code = migrate("to-redis", "--session-dir", str(sessions), "--url", redis_url,
                   "--prefix", "test:session:")  # fmt: skip
    assert code == 1  # one unreadable file is reported
    assert not (tmp_path / "exploited").exists()
    loaded = store.get(good)
    assert loaded["tags"] == {"a"} and loaded["seen"] == data["seen"]
    assert store.get(evil).is_new


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_to_files_and_back(
    redis_url: str, raw: RedisClient, tmp_path: Path, odoo_major: int
) -> None:
    store = configured_store(redis_url, odoo_major, secret="s3cret", lifetime=lambda: 86400)
    sessions = [logged_in(store, uid) for uid in (2, 3)]
    for session in sessions:
        store.save(session)
    common = ("--session-dir", str(tmp_path), "--url", redis_url, "--prefix", PREFIX)

    assert migrate("to-files", *common, "--secret", CONFIGURED_SECRET) == 2  # no id secret
    assert not any(tmp_path.iterdir())
    # Without the record secret nothing can be checked: nothing is written.
    assert migrate("to-files", *common, "--session-store-secret", "s3cret") == 1
    assert not any(tmp_path.iterdir())
    assert migrate("to-files", *common, "--session-store-secret", "s3cret",
                   "--secret", CONFIGURED_SECRET) == 0  # fmt: skip
    for session in sessions:
        path = tmp_path / session.sid[:2] / session.sid
        content = path.read_bytes()
        loaded = load_session_pickle(content) if odoo_major == 17 else json.loads(content)
        assert loaded == dict(session)
        assert time.time() - path.stat().st_mtime < 120

    raw.execute("FLUSHALL")
    assert migrate("to-redis", *common, "--session-store-secret", "s3cret",
                   "--secret", CONFIGURED_SECRET) == 0  # fmt: skip
    for session in sessions:
        assert dict(store.get(session.sid)) == dict(session)


PG_URI = os.environ.get("ORMCACHE_REDIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
"""A PostgreSQL the suite may create and drop a throwaway database on (trust auth)."""


@pytest.fixture
def odoo_like_database() -> Iterator[tuple[str, str]]:
    """(name, database.secret) of a throwaway database holding what the
    migration reads of an Odoo database: ir_config_parameter."""
    try:
        import psycopg2  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("psycopg2 is needed (scripts/setup.sh installs psycopg2-binary)")
    name, secret = f"ocr_sessions_{os.getpid()}_{int(time.time())}", "a-real-database-secret-uuid"
    try:
        admin = psycopg2.connect(PG_URI, dbname="postgres")
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {PG_URI} (ORMCACHE_REDIS_TEST_PG) is needed: {exc}")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        connection = psycopg2.connect(PG_URI, dbname=name)
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE ir_config_parameter (key varchar PRIMARY KEY, value text)")
            cursor.execute("INSERT INTO ir_config_parameter VALUES ('database.secret', %s)",
                           [secret])  # fmt: skip
        connection.close()
        yield name, secret
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.parametrize("odoo_major", [17, 19])
def test_migration_reads_each_database_secret_from_postgresql(
    redis_url: str, tmp_path: Path, odoo_like_database: tuple[str, str],
    capsys: pytest.CaptureFixture[str], odoo_major: int,
) -> None:  # fmt: skip
    db, secret = odoo_like_database
    store = make_store(redis_url, odoo_major, secret="s3cret",
                       record_secret_for=database_secrets({db: secret}))  # fmt: skip
    files, back = tmp_path / "files", tmp_path / "back"
    known, gone, anonymous = store.generate_key(), store.generate_key(), store.generate_key()
    write_odoo_file(files, known, {**user_data(), "db": db})
    write_odoo_file(files, gone, {**user_data(), "db": "ocr_no_such_database"})
    write_odoo_file(files, anonymous, {"db": None, "debug": "1", "context": {}})
    common = ("--url", redis_url, "--prefix", PREFIX, "--session-store-secret", "s3cret")

    # Without a way to the secrets: only the session without a database is copied.
    assert migrate("to-redis", "--session-dir", str(files), *common, "--dry-run") == 1
    assert "without a known database secret 2" in capsys.readouterr().out

    assert migrate("to-redis", "--session-dir", str(files), *common, "--db-uri", PG_URI) == 1
    out, err = capsys.readouterr()
    assert "copied 2" in out and "without a known database secret 1" in out
    assert "ocr_no_such_database" in err
    assert store.get(known)["uid"] == 2 and store.get(known)["db"] == db
    assert store.get(anonymous)["debug"] == "1"
    assert store.get(gone).is_new

    assert migrate("to-files", "--session-dir", str(back), *common, "--db-uri", PG_URI) == 0
    assert "copied 2" in capsys.readouterr().out
    assert sorted(p.name for p in back.glob("*/*")) == sorted([known, anonymous])


def test_migration_database_errors_name_the_option(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    common = ("to-redis", "--session-dir", str(tmp_path), "--url", redis_url)
    assert migrate(*common, "--db-uri", "postgresql://postgres@127.0.0.1:1") == 2
    assert "--db-uri: cannot connect to PostgreSQL" in capsys.readouterr().err
    assert migrate(*common, "--db-uri", "mysql://x") == 2
    assert "--db-uri must look like postgresql://" in capsys.readouterr().err
    assert migrate(*common, "--secret", "short") == 2
    assert "--secret (ormcache_redis_secret) must be at least 16" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as in a Python without it
    assert migrate(*common, "--db-uri", PG_URI) == 2
    err = capsys.readouterr().err
    assert "needs psycopg2" in err and "--db-uri" in err


def test_migration_reads_the_options_with_the_stores_parser(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same rules and sentences as the session store at start-up: a value
    from odoo.conf is named by its option, one from the command line by its
    flag; odoo.conf's session_store does not matter (the command copies)."""
    conf = tmp_path / "odoo.conf"
    common = ("to-redis", "--session-dir", str(tmp_path), "-c", str(conf), "--secret", "s" * 16)

    def run(*lines: str, argv: tuple[str, ...] = ()) -> tuple[int, str]:
        conf.write_text("\n".join(["[options]", "session_store = filesystem", *lines]) + "\n")
        code = migrate(*common, "--dry-run", *argv)
        return code, capsys.readouterr().err

    assert run(f"session_store_url = {redis_url}")[0] == 0
    code, err = run(f"session_store_url = {redis_url}", "session_store_anonymous_ttl = soon")
    assert code == 2 and "session_store_anonymous_ttl must be a number of seconds" in err
    code, err = run(f"session_store_url = {redis_url}", "session_store_prefix = a b")
    assert code == 2 and "session_store_prefix must not contain spaces" in err
    code, err = run(f"session_store_url = {redis_url}", argv=("--prefix", "a b"))
    assert code == 2 and "--prefix must not contain spaces" in err
    code, err = run(f"session_store_url = {redis_url}", argv=("--anonymous-ttl", "-5"))
    assert code == 2 and "--anonymous-ttl must be a number of seconds above 0" in err
    code, err = run("session_store_url = http://h")
    assert code == 2 and "session_store_url must be a redis://" in err
    code, err = run(f"session_store_url = {redis_url}", argv=("--url", "http://h"))
    assert code == 2 and "--url must be a redis://" in err
    code, err = run()
    assert code == 2 and "--url (or session_store_url / SESSION_STORE_URL) is required" in err


def test_migration_cli_runs_as_a_command(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ormcache_redis.sessions.migrate", "to-redis",
         "--session-dir", str(tmp_path), "--url", redis_url, "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("to-redis: would copy 0")


def test_the_installed_command_is_the_migration() -> None:
    """pyproject's [project.scripts] names the module the command lives in."""
    (entry,) = importlib.metadata.entry_points(
        group="console_scripts", name="ormcache-redis-sessions"
    )
    assert entry.load() is run_migration
