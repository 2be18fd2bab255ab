"""The Redis HTTP session store (``ormcache_redis.sessions.store``), without
Odoo, against a real redis-server: reads, writes, expiry, rotation, device
identifiers, outages, settings. Sessions are ``StandInSession``s
(tests/session_support.py), written to behave like ``odoo.http.Session``.
Redis is real: the suite's redis-server (tests/conftest.py), flushed per test.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from session_support import (
    VERSIONS,
    all_keys,
    command_calls,
    logged_in,
    make_store,
    stand_in_session_token,
)

from ormcache_redis._native import RedisClient
from ormcache_redis.config import ConfigError, OptionSource
from ormcache_redis.sessions.redis_layout import hash_key
from ormcache_redis.sessions.settings import SessionStoreSettings, session_store_settings
from ormcache_redis.sessions.store_errors import SessionStoreUnavailable, SessionValueError

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_saved_session_reads_back_equal(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    session = logged_in(store)
    session["context"]["allowed_company_ids"] = [1, 3]
    store.save(session)

    loaded = store.get(session.sid)
    assert dict(loaded) == dict(session)
    assert loaded.sid == session.sid
    assert loaded.is_new is False


def test_odoo17_sessions_keep_python_types(redis_url: str) -> None:
    store = make_store(redis_url, 17)
    session = logged_in(store)
    session["pair"] = (1, "a")
    session["tags"] = {"x", "y"}
    store.save(session)
    loaded = store.get(session.sid)
    assert loaded["pair"] == (1, "a")
    assert loaded["tags"] == {"x", "y"}


def test_odoo17_unencodable_value_names_the_key(redis_url: str) -> None:
    store = make_store(redis_url, 17)
    session = logged_in(store)
    session["handle"] = object()
    with pytest.raises(SessionValueError, match="'handle'"):
        store.save(session)


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_generated_keys_have_odoo_format(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    key = store.generate_key()
    assert store.is_valid_key(key)
    assert len(key) == (40 if odoo_major == 17 else 84)
    assert store.generate_key() != key
    assert not store.is_valid_key(key[:-1])
    assert not store.is_valid_key(key + "A")
    assert not store.is_valid_key(None)
    assert not store.is_valid_key("../" + key[3:])


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_missing_session_is_a_new_one(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    sid = store.generate_key()
    session = store.get(sid)
    assert session.is_new
    assert dict(session) == {}


def test_invalid_session_id_never_reaches_redis(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    before = command_calls(raw, "eval"), command_calls(raw, "hget")
    for bad in ["", "x" * 84 + "/", "a" * 40, "../../etc/passwd", "A" * 83]:
        assert store.get(bad).is_new
    assert (command_calls(raw, "eval"), command_calls(raw, "hget")) == before
    session = logged_in(store)
    session.sid = "not a session id"
    with pytest.raises(ValueError) as error:
        store.save(session)
    assert "not a session id" not in str(error.value)
    with pytest.raises(ValueError):
        store.delete(session)
    assert all_keys(raw) == []


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_no_session_id_in_redis_keys_fields_or_values(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major, secret="s3cret")
    session = logged_in(store)
    store.save(session)
    if odoo_major == 19:
        session["create_time"] = time.time() - 4 * 3600
        store.rotate(session, env=object(), soft=True)
    keys = all_keys(raw)
    assert keys and all(key.startswith(b"test:session:") for key in keys)
    dump = b""
    for key in keys:
        for item in raw.execute("HGETALL", key):
            dump += item
        dump += key
    for sid in {session.sid, session.sid[:42]}:
        assert sid.encode() not in dump


def test_layout_is_one_hash_per_identifier(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 19)
    session = logged_in(store)
    store.save(session)
    expected_key = "test:session:" + hashlib.sha256(session.sid[:42].encode()).hexdigest()
    assert all_keys(raw) == [expected_key.encode()]
    assert raw.execute("HKEYS", expected_key) == [
        hashlib.sha256(session.sid.encode()).hexdigest().encode()
    ]


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_every_saved_session_has_a_ttl(redis_url: str, raw: RedisClient, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major, lifetime=lambda: 7 * 86400, anonymous_ttl=600)
    user = logged_in(store)
    store.save(user)
    anonymous = store.new()
    anonymous.update({"db": "db1", "context": {"lang": "fr_FR"}})
    store.save(anonymous)
    user_key = hash_key("test:session:", user.sid[:42])
    anonymous_key = hash_key("test:session:", anonymous.sid[:42])
    assert 7 * 86400 - 5 <= raw.execute("TTL", user_key) <= 7 * 86400
    assert 595 <= raw.execute("TTL", anonymous_key) <= 600
    for key in all_keys(raw):
        assert raw.execute("PTTL", key) > 0


def test_lifetime_follows_the_configured_inactivity(redis_url: str, raw: RedisClient) -> None:
    lifetime = {"seconds": 1000}
    store = make_store(redis_url, 18, lifetime=lambda: lifetime["seconds"])
    session = logged_in(store)
    store.save(session)
    key = hash_key("test:session:", session.sid[:42])
    assert 995 <= raw.execute("TTL", key) <= 1000
    lifetime["seconds"] = 50
    session["debug"] = "1"
    store.save(session)
    assert 45 <= raw.execute("TTL", key) <= 50


def test_anonymous_ttl_never_exceeds_the_lifetime(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18, lifetime=lambda: 30, anonymous_ttl=3600)
    anonymous = store.new()
    anonymous.update({"db": "db1"})
    store.save(anonymous)
    assert 25 <= raw.execute("TTL", hash_key("test:session:", anonymous.sid[:42])) <= 30


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_expired_session_is_gone(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major, lifetime=lambda: 1)
    session = logged_in(store)
    store.save(session)
    assert not store.get(session.sid).is_new
    time.sleep(1.3)
    assert store.get(session.sid).is_new


def test_reading_slides_the_expiry(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18, lifetime=lambda: 400)
    session = logged_in(store)
    store.save(session)
    key = hash_key("test:session:", session.sid[:42])
    raw.execute("EXPIRE", key, 250)  # as if 150 s passed without a write
    store.get(session.sid)
    store.client.flush(5.0)
    assert raw.execute("TTL", key) >= 395


def test_recent_reads_do_not_write(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18, lifetime=lambda: 400)
    session = logged_in(store)
    store.save(session)
    before = command_calls(raw, "pexpire")
    for _ in range(5):
        store.get(session.sid)
    store.client.flush(5.0)
    assert command_calls(raw, "pexpire") == before


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_anonymous_session_with_nothing_in_it_is_not_written(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major)
    session = store.new()
    session.update(
        {
            "context": {"lang": "en_US"},
            "db": None,
            "debug": "",
            "login": None,
            "uid": None,
            "session_token": None,
            "_trace": [],
            "create_time": time.time(),
        }
    )
    store.save(session)
    assert all_keys(raw) == []


def test_anonymous_session_that_became_empty_is_removed(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    session = store.new()
    session.update({"debug": "assets", "context": {"lang": "en_US"}})
    store.save(session)
    loaded = store.get(session.sid)
    loaded["debug"] = ""
    store.save(loaded)
    assert all_keys(raw) == []


# --------------------------------------------------------------------------- delete / rotate


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_delete_removes_the_session(redis_url: str, raw: RedisClient, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    session = logged_in(store)
    store.save(session)
    store.delete(session)
    assert store.get(session.sid).is_new
    assert all_keys(raw) == []


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_hard_rotation_replaces_the_id(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    session = logged_in(store)
    store.save(session)
    old_sid = session.sid
    session.should_rotate = True
    store.rotate(session, env=object())
    assert session.sid != old_sid and store.is_valid_key(session.sid)
    assert session.should_rotate is False
    assert session["session_token"] == stand_in_session_token(session, None)
    assert store.get(old_sid).is_new
    assert dict(store.get(session.sid)) == dict(session)
    if odoo_major == 19:
        assert abs(session["create_time"] - time.time()) < 5
    else:
        assert "create_time" not in session


def test_rotation_without_env_keeps_the_token_on_17_and_18(redis_url: str) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    token = session["session_token"]
    store.rotate(session, env=None)
    assert session["session_token"] == token


def test_logout_rotation_keeps_the_anonymous_session(redis_url: str) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    session.clear()
    session.update({"db": "db1", "context": {"lang": "en_US"}, "uid": None, "debug": ""})
    store.rotate(session, env=object())
    assert store.get(session.sid)["db"] == "db1"


def test_soft_rotation_lets_the_old_cookie_follow(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 19)
    session = logged_in(store)
    session["create_time"] = time.time() - 4 * 3600
    store.save(session)
    old_sid = session.sid
    concurrent = store.get(old_sid)  # a request that loaded the session before rotation

    store.rotate(session, env=object(), soft=True)
    new_sid = session.sid
    assert new_sid != old_sid and new_sid[:42] == old_sid[:42]
    assert session["gc_previous_sessions"] is True
    assert "next_sid" not in session and "deletion_time" not in session
    assert session["session_token"] == stand_in_session_token(session, None)

    rotated_away = store.get(old_sid)
    assert rotated_away["next_sid"] == new_sid
    assert time.time() < rotated_away["deletion_time"] <= time.time() + 120
    assert dict(store.get(new_sid)) == dict(session)

    # The concurrent request rotates too: it follows, writing nothing.
    writes = command_calls(raw, "hset")
    store.rotate(concurrent, env=object(), soft=True)
    assert concurrent.sid == new_sid
    assert command_calls(raw, "hset") == writes
    # Both sessions share the identifier's hash: one key.
    assert len(all_keys(raw)) == 1


def test_soft_rotation_is_hard_before_19(redis_url: str) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object(), soft=True)
    assert session.sid[:42] != old_sid[:42]
    assert store.get(old_sid).is_new


def test_rotated_away_sessions_are_deleted_after_the_timer(
    redis_url: str, raw: RedisClient
) -> None:
    store = make_store(redis_url, 19, deletion_timer=1)
    session = logged_in(store)
    session["create_time"] = time.time() - 4 * 3600
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object(), soft=True)
    key = hash_key("test:session:", session.sid[:42])
    assert raw.execute("HLEN", key) == 2

    store.delete_old_sessions(session)  # too early: nothing happens
    assert raw.execute("HLEN", key) == 2
    time.sleep(1.1)
    store.delete_old_sessions(session)
    assert raw.execute("HLEN", key) == 1
    assert "gc_previous_sessions" not in session
    assert store.get(old_sid).is_new
    assert dict(store.get(session.sid)) == dict(session)
    assert raw.execute("TTL", key) > 0


def test_rotated_away_session_does_not_keep_the_hash_alive_alone(
    redis_url: str, raw: RedisClient
) -> None:
    store = make_store(redis_url, 19, lifetime=lambda: 400)
    session = logged_in(store)
    session["create_time"] = time.time() - 4 * 3600
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object(), soft=True)
    key = hash_key("test:session:", session.sid[:42])
    raw.execute("EXPIRE", key, 100)
    store.get(old_sid)  # reading the rotated-away session never extends the expiry
    store.client.flush(5.0)
    assert raw.execute("TTL", key) <= 100


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("odoo_major", [18, 19])
def test_delete_from_identifiers_revokes_every_session_of_a_device(
    redis_url: str, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major)
    revoked, kept = logged_in(store), logged_in(store)
    store.save(revoked)
    store.save(kept)
    sibling = store.session_class(dict(revoked), revoked.sid[:42] + store.generate_key()[42:])
    store.save(sibling)

    store.delete_from_identifiers([revoked.sid[:42]])
    assert store.get(revoked.sid).is_new
    assert store.get(sibling.sid).is_new
    assert not store.get(kept.sid).is_new


def test_malformed_identifiers_are_skipped_on_18_and_refused_on_19(redis_url: str) -> None:
    session_18 = make_store(redis_url, 18)
    kept = logged_in(session_18)
    session_18.save(kept)
    session_18.delete_from_identifiers(["*", kept.sid[:41], "../x"])
    assert not session_18.get(kept.sid).is_new
    with pytest.raises(ValueError):
        make_store(redis_url, 19).delete_from_identifiers(kept.sid[:42])  # a str, not a list


@pytest.mark.parametrize("odoo_major", [18, 19])
def test_missing_identifiers(redis_url: str, odoo_major: int) -> None:
    store = make_store(redis_url, odoo_major)
    present = [logged_in(store) for _ in range(3)]
    for session in present:
        store.save(session)
    absent = [store.generate_key()[:42] for _ in range(1200)]
    identifiers = {s.sid[:42] for s in present} | set(absent) | {"bad"}
    assert store.get_missing_session_identifiers(identifiers) == set(absent) | {"bad"}
    assert store.get_missing_session_identifiers([]) == set()


def test_vacuum_is_a_harmless_no_op(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    store.vacuum(max_lifetime=1)
    store.vacuum()
    assert not store.get(session.sid).is_new


# --------------------------------------------------------------------------- outages


def test_redis_down_fails_fast_with_503_and_recovers(
    redis_server: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    redis_server.stop()
    try:
        for call in (lambda: store.get(session.sid), lambda: store.save(session)):
            started = time.monotonic()
            with pytest.raises(SessionStoreUnavailable) as error:
                call()
            assert time.monotonic() - started < 3
            assert error.value.code == 503
            assert error.value.loglevel == logging.ERROR
            assert error.value.error_response is error.value
            assert session.sid not in str(error.value)
            assert "Retry-After" in dict(error.value.get_headers())
        with pytest.raises(SessionStoreUnavailable):
            store.get_missing_session_identifiers([session.sid[:42]])
    finally:
        redis_server.start()
    # The store recovers by itself once Redis answers (breaker half-open retry).
    deadline = time.monotonic() + 40
    while True:
        try:
            store.save(session)
            break
        except SessionStoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert dict(store.get(session.sid)) == dict(session)
    assert session.sid not in caplog.text


def test_redis_paused_is_a_503_not_a_hang(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    raw.execute("CLIENT", "PAUSE", 2000)  # Redis accepts the command, then answers nothing
    paused_at = time.monotonic()
    try:
        with pytest.raises(SessionStoreUnavailable):
            store.get(session.sid)
        assert time.monotonic() - paused_at < 1.5
    finally:
        time.sleep(max(0.0, paused_at + 2.2 - time.monotonic()))


# --------------------------------------------------------------------------- processes

_OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import session_support as t
    store = t.make_store({url!r}, 18)
    session = store.get({sid!r})
    assert not session.is_new, "other process does not see the session"
    session["seen_by_other_process"] = True
    store.save(session)
    """
)


def test_a_session_saved_by_one_process_is_read_by_another(redis_url: str) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    store.save(session)
    script = _OTHER_PROCESS.format(tests=str(ROOT / "tests"), url=redis_url, sid=session.sid)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)
    assert store.get(session.sid)["seen_by_other_process"] is True


# --------------------------------------------------------------------------- settings


def settings(**environ: str) -> Any:
    return session_store_settings(OptionSource(None, environ))


def test_settings_default_to_the_filesystem_store() -> None:
    assert settings() is None
    assert settings(SESSION_STORE="filesystem") is None


def test_settings_from_config_then_environment() -> None:
    config = {"session_store": "redis", "session_store_prefix": "p:"}
    parsed = session_store_settings(
        OptionSource(config.get, {"SESSION_STORE_URL": "rediss://u:pw@redis:6380/2"})
    )
    assert parsed.url == "rediss://u:pw@redis:6380/2"
    assert parsed.prefix == "p:"
    assert parsed.anonymous_ttl == 4 * 3600
    assert settings(
        SESSION_STORE="Redis",
        SESSION_STORE_URL="redis://h:1/0",
        SESSION_STORE_ANONYMOUS_TTL="600",
        SESSION_STORE_SECRET="k",
    ) == SessionStoreSettings(url="redis://h:1/0", anonymous_ttl=600, secret="k")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SESSION_STORE": "memcached"}, "session_store must be"),
        ({"SESSION_STORE": "redis"}, "needs session_store_url"),
        ({"SESSION_STORE": "redis", "SESSION_STORE_URL": "http://x"}, "session_store_url"),
        (
            {"SESSION_STORE": "redis", "SESSION_STORE_URL": "redis://h/0",
             "SESSION_STORE_ANONYMOUS_TTL": "-1"},
            "session_store_anonymous_ttl",
        ),
        (
            {"SESSION_STORE": "redis", "SESSION_STORE_URL": "redis://h/0",
             "SESSION_STORE_PREFIX": "a b"},
            "session_store_prefix",
        ),
    ],
)  # fmt: skip
def test_bad_settings_are_one_sentence_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**environ)


def test_unsupported_odoo_version_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match=r"17\.0, 18\.0 and 19\.0"):
        make_store(redis_url, 16)
