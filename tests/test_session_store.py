"""The Redis HTTP session store, without Odoo, against a real redis-server.

The store module lives in the Odoo addon; it is loaded here from its file
(the addon package itself imports Odoo). Sessions are instances of
``StandInSession``, written to behave like ``odoo.http.Session`` (a
MutableMapping with the same slots; 18/19 round-trip values through JSON,
17 copies them). Redis is real: the suite's redis-server (tests/conftest.py), flushed per test.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from ormcache_redis import session_migrate
from ormcache_redis._native import RedisClient, mac_tag
from ormcache_redis.config import ConfigError, OptionSource
from ormcache_redis.session_records import (
    FORMAT_CODEC,
    FORMAT_JSON,
    TAG_BYTES,
    RecordError,
    RecordForged,
    RecordKeyMissing,
    address_of,
    decode_record,
    encode_record,
    field_of,
    hash_key,
    record_key,
    seal_next_sid,
    sid_key,
)

ROOT = Path(__file__).resolve().parent.parent
STORE_PATH = ROOT / "odoo_addon" / "ormcache_redis" / "session_store.py"


def _load_store_module() -> Any:
    spec = importlib.util.spec_from_file_location("ormcache_redis_session_store", STORE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


store_module = _load_store_module()
RedisSessionStore = store_module.RedisSessionStore
SessionStoreUnavailable = store_module.SessionStoreUnavailable
SessionStoreSettings = store_module.SessionStoreSettings
SessionValueError = store_module.SessionValueError

# --------------------------------------------------------------------------- stand-ins


class StandInSession(MutableMapping):
    """Behaves like ``odoo.http.Session`` for what a store touches."""

    __slots__ = ("_data", "can_save", "is_dirty", "is_new", "should_rotate", "sid")
    json_clean = True  # 18/19: Session.__setitem__ round-trips values through JSON

    def __init__(self, data: dict[str, Any], sid: str, new: bool = False) -> None:
        self.can_save = True
        self._data: dict[str, Any] = {}
        self.update(data)
        self.is_dirty = False
        self.is_new = new
        self.should_rotate = False
        self.sid = sid

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        value = json.loads(json.dumps(value)) if self.json_clean else copy.deepcopy(value)
        if key not in self._data or self._data[key] != value:
            self.is_dirty = True
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.is_dirty = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class StandInSession17(StandInSession):
    __slots__ = ()
    json_clean = False  # 17 pickles: any value


TOKEN_SECRET = b"stand-in database secret"

DATABASE_SECRETS = {
    "db1": "database.secret of db1, 36 chars long",
    "db2": "database.secret of db2, 36 chars long",
}
"""What ``DeploymentSecrets.for_database`` answers in these tests: each
database's own secret, nothing for no database (no ``ormcache_redis_secret``)."""
PREFIX = "test:session:"


def database_secrets(secrets: dict[str, str] | None = None, configured: str | None = None) -> Any:
    """A ``record_secret_for`` callable, like the addon's ``DeploymentSecrets``."""
    found = DATABASE_SECRETS if secrets is None else secrets

    def for_database(db: str | None) -> str | None:
        if configured is not None:
            return configured
        return found.get(db) if db else None

    return for_database


def stand_in_session_token(session: Any, env: Any) -> str:
    """Like res.users._compute_session_token: bound to the session id."""
    message = f"{session['uid']}:{session.sid}".encode()
    return hmac.new(TOKEN_SECRET, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- redis


@pytest.fixture
def raw(redis_url: str) -> RedisClient:
    """A second client, to look at what the store wrote."""
    return RedisClient(redis_url)


def make_store(url: str, odoo_major: int = 18, **options: Any) -> Any:
    options.setdefault("lifetime", lambda: 3600)
    options.setdefault("record_secret_for", database_secrets())
    options.setdefault("prefix", PREFIX)
    return RedisSessionStore(
        RedisClient(url, socket_timeout=0.5),
        session_class=StandInSession17 if odoo_major == 17 else StandInSession,
        odoo_major=odoo_major,
        compute_session_token=stand_in_session_token,
        **options,
    )


CONFIGURED_SECRET = "an ormcache_redis_secret of 40 characters"


def configured_store(url: str, odoo_major: int, **options: Any) -> Any:
    """A store of a deployment that sets ormcache_redis_secret."""
    return make_store(
        url, odoo_major, record_secret_for=database_secrets(configured=CONFIGURED_SECRET), **options
    )


def logged_in(store: Any, uid: int = 2) -> Any:
    session = store.new()
    session.update(
        {
            "db": "db1",
            "login": "admin",
            "uid": uid,
            "context": {"lang": "en_US", "tz": "Europe/Brussels"},
            "debug": "",
            "_trace": [],
        }
    )
    session["session_token"] = stand_in_session_token(session, None)
    return session


def all_keys(raw: RedisClient) -> list[bytes]:
    return raw.execute("KEYS", "*")


def command_calls(raw: RedisClient, command: str) -> int:
    info = raw.execute("INFO", "commandstats")
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


VERSIONS = [17, 18, 19]


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
    before = command_calls(raw, "hget")
    for bad in ["", "x" * 84 + "/", "a" * 40, "../../etc/passwd", "A" * 83]:
        assert store.get(bad).is_new
    assert command_calls(raw, "hget") == before
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


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize("odoo_major", VERSIONS)
@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"garbage",
        b"\x80\x04\x95pickle",
        b"OCRS\x01J\x00\x00\x00\x10\x00[1,2]",
        b"OCRS\x01J\x00\x00\x00\x10\x00{not json",
        b"OCRS\x01C\x00\x00\x00\x10\x00\xff\xfe",
        b"OCRS\x09J\x00\x00\x00\x10\x00{}",
        b"OCRS\x01J\x00\x00\x00\x10\xff{}",
    ],
)
def test_garbage_in_redis_is_no_session(
    redis_url: str, raw: RedisClient, odoo_major: int, stored: bytes
) -> None:
    store = make_store(redis_url, odoo_major)
    sid = store.generate_key()
    raw.execute("HSET", hash_key("test:session:", sid[:42]), field_of(sid), stored)
    session = store.get(sid)
    assert session.is_new and dict(session) == {}


def test_record_of_another_odoo_version_is_no_session(redis_url: str, raw: RedisClient) -> None:
    store_18 = make_store(redis_url, 18)
    sid = store_18.generate_key()
    record = encode_record(
        {"db": "db1", "uid": 2}, sid, prefix=PREFIX, fmt=FORMAT_CODEC, ttl=60,
        secret_for=database_secrets(), codec=store_module.Codec(),
    )  # fmt: skip
    raw.execute("HSET", *address_of(PREFIX, sid), record)
    assert store_18.get(sid).is_new


def test_foreign_value_type_under_a_session_key_is_no_session(
    redis_url: str, raw: RedisClient
) -> None:
    store = make_store(redis_url, 18)
    sid = store.generate_key()
    raw.execute("SET", hash_key("test:session:", sid[:42]), "a string, not a hash")
    assert store.get(sid).is_new


def test_records_roundtrip_and_seal() -> None:
    sid = "A" * 84
    key, field = address_of(PREFIX, sid)
    sealing = sid_key("s3cret")
    data = {"db": "db1", "uid": 2, "next_sid": "A" * 42 + "B" * 42}
    record = encode_record(data, sid, prefix=PREFIX, fmt=FORMAT_JSON, ttl=99,
                           secret_for=database_secrets(), sealing_key=sealing)  # fmt: skip
    assert b"A" * 42 not in record and b"B" * 42 not in record
    assert b"db1" in record  # the database is named in clear, for the reader's key choice

    def decode(sid: str | None, **options: Any) -> Any:
        options.setdefault("secret_for", database_secrets())
        return decode_record(record, key=key, field=field, sid=sid, fmt=FORMAT_JSON, **options)

    decoded = decode(sid, sealing_key=sealing)
    assert decoded.data == data and decoded.ttl == 99 and decoded.sid == sid
    assert decoded.db == "db1" and decoded.authenticated and not decoded.stripped
    # Scanning (no sid known): the sealed id opens next_sid.
    assert decode(None, sealing_key=sealing).data == data
    # Without session_store_secret: no id, and next_sid cannot be opened, so it is dropped.
    assert decode(None).data == {"db": "db1", "uid": 2}
    assert decode(None).sid is None
    with pytest.raises(RecordError):
        decode_record(record[:12], key=key, field=field, sid=sid, fmt=FORMAT_JSON,
                      secret_for=database_secrets())  # fmt: skip


def test_record_keys_are_separate_derivations() -> None:
    """The sid-sealing key, the record key and the public key all differ,
    even for one secret."""
    secret = DATABASE_SECRETS["db1"]
    keys = {sid_key(secret), record_key(secret), record_key(None), record_key("other secret")}
    assert len(keys) == 4 and all(len(k) == 32 for k in keys)


# --------------------------------------------------------------------------- forgery
# The attacker can read and write Redis, and may know some secrets (the
# public key; the secret of a database they administer), never the secret of
# the victim's database nor the victim's session id.


def forge(
    payload: dict[str, Any] | bytes,
    *,
    key: str,
    field: str,
    mac_secret: str | None,
    db: str | None = "db1",
    keying: bytes = b"D",
    fmt: bytes = FORMAT_JSON,
    ttl: int = 3600,
    sealed_sid: bytes = b"",
) -> bytes:
    """A version-2 record built by hand from the documented layout, tagged
    with ``mac_secret``'s record key (None: the public key): what a writer
    with that secret can produce for any address it sees in Redis."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    db_raw = (db or "").encode()
    record = (
        b"OCRS" + bytes([2]) + fmt + keying + ttl.to_bytes(4, "big")
        + bytes([len(db_raw)]) + db_raw + bytes([len(sealed_sid)]) + sealed_sid + body
    )  # fmt: skip
    address = key.encode()
    tag_input = len(address).to_bytes(2, "big") + address + field.encode() + record
    return record + mac_tag(record_key(mac_secret), tag_input)


def saved_record(store: Any, raw: RedisClient, session: Any) -> tuple[str, str, bytes]:
    store.save(session)
    key, field = address_of(PREFIX, session.sid)
    return key, field, raw.execute("HGET", key, field)


def test_forge_helper_matches_the_real_format(redis_url: str, raw: RedisClient) -> None:
    """The attack tests below mean something only if the hand-made records
    are accepted when tagged with the right key."""
    store = make_store(redis_url, 18)
    session = logged_in(store)
    key, field, record = saved_record(store, raw, session)
    body = record[record.index(b"{") : -TAG_BYTES]
    assert forge(body, key=key, field=field, mac_secret=DATABASE_SECRETS["db1"]) == record
    raw.execute("HSET", key, field, forge({**dict(session), "debug": "1"}, key=key, field=field,
                                          mac_secret=DATABASE_SECRETS["db1"]))  # fmt: skip
    assert store.get(session.sid)["debug"] == "1"
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0}


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_forged_payloads_are_new_sessions(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major)
    victim = logged_in(store, uid=7)
    key, field, record = saved_record(store, raw, victim)
    admin = {**dict(victim), "uid": 2, "login": "admin"}
    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    payload = store_module.Codec().dumps(admin) if odoo_major == 17 else json.dumps(admin).encode()
    forgeries = [
        # The payload replaced, the old tag kept.
        record[: len(record) - TAG_BYTES - len(payload)] + payload + record[-TAG_BYTES:]
        if odoo_major != 17
        else record[:20] + payload + record[-TAG_BYTES:],
        # Tagged with keys the attacker may have: the public one, another database's.
        forge(payload, key=key, field=field, mac_secret=None, fmt=fmt),
        forge(payload, key=key, field=field, mac_secret=DATABASE_SECRETS["db2"], fmt=fmt),
        forge(payload, key=key, field=field, mac_secret="guessed secret", fmt=fmt),
        # The tag cut off, or replaced by zeros.
        record[:-TAG_BYTES],
        record[:-TAG_BYTES] + bytes(TAG_BYTES),
    ]
    for forged in forgeries:
        raw.execute("HSET", key, field, forged)
        session = store.get(victim.sid)
        assert session.is_new and dict(session) == {}
    assert store.refused.total["forged"] + store.refused.total["unreadable"] == len(forgeries)


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_every_flipped_bit_is_refused(odoo_major: int) -> None:
    store_fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    sid = "c" * 40 if odoo_major == 17 else "C" * 84
    key, field = address_of(PREFIX, sid)
    data = {"db": "db1", "uid": 2, "login": "admin", "session_token": "t" * 64,
            "context": {"lang": "en_US"}, "next_sid": sid[:42] + "N" * (len(sid) - 42)}  # fmt: skip
    record = encode_record(data, sid, prefix=PREFIX, fmt=store_fmt, ttl=3600,
                           secret_for=database_secrets(), codec=store_module.Codec(),
                           sealing_key=sid_key("s3cret"))  # fmt: skip
    accepted = 0
    for bit in range(len(record) * 8):
        flipped = bytearray(record)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            decode_record(bytes(flipped), key=key, field=field, sid=sid, fmt=store_fmt,
                          secret_for=database_secrets(), codec=store_module.Codec(),
                          sealing_key=sid_key("s3cret"))  # fmt: skip
        except RecordError:
            continue
        accepted += 1
    assert accepted == 0, f"{accepted} of {len(record) * 8} flipped bits accepted"


def test_flipped_bits_through_the_store(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 19)
    session = logged_in(store)
    key, field, record = saved_record(store, raw, session)
    for position in range(0, len(record), 7):
        flipped = bytearray(record)
        flipped[position] ^= 0x10
        raw.execute("HSET", key, field, bytes(flipped))
        assert store.get(session.sid).is_new, position
    raw.execute("HSET", key, field, record)
    assert dict(store.get(session.sid)) == dict(session)


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_records_copied_to_another_session_are_refused(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    """An attacker's own valid record (same database) moved under the
    victim's address, in the same identifier's hash or another one, or
    under another prefix."""
    store = make_store(redis_url, odoo_major)
    attacker, victim = logged_in(store, uid=9), logged_in(store, uid=2)
    _, _, attacker_record = saved_record(store, raw, attacker)
    victim_key, victim_field, victim_record = saved_record(store, raw, victim)
    sibling_sid = victim.sid[:42] + store.generate_key()[42:]
    if odoo_major == 17:
        sibling_sid = store.generate_key()
    sibling_key, sibling_field = address_of(PREFIX, sibling_sid)

    raw.execute("HSET", victim_key, victim_field, attacker_record)
    assert store.get(victim.sid).is_new
    raw.execute("HSET", sibling_key, sibling_field, victim_record)  # the victim's, moved
    assert store.get(sibling_sid).is_new
    other_prefix = make_store(redis_url, odoo_major, prefix="other:")
    raw.execute("HSET", *address_of("other:", victim.sid), victim_record)
    assert other_prefix.get(victim.sid).is_new
    assert store.refused.total["forged"] == 2 and other_prefix.refused.total["forged"] == 1


def test_records_of_another_database_are_refused(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    victim = logged_in(store)  # db1
    key, field, _record = saved_record(store, raw, victim)
    as_db2 = {**dict(victim), "db": "db2"}
    db2_secret, db1_secret = DATABASE_SECRETS["db2"], DATABASE_SECRETS["db1"]
    forgeries = [
        # Names db1, tagged with db2's secret (an administrator of db2 can read it).
        forge(dict(victim), key=key, field=field, mac_secret=db2_secret, db="db1"),
        # Names db2 and tagged with db1's key: the header chooses db2's key.
        forge(as_db2, key=key, field=field, mac_secret=db1_secret, db="db2"),
        # Header and payload disagree on the database.
        forge(as_db2, key=key, field=field, mac_secret=db1_secret, db="db1"),
        forge(dict(victim), key=key, field=field, mac_secret=db2_secret, db="db2"),
        # A database no secret is known for.
        forge({**dict(victim), "db": "db3"}, key=key, field=field, mac_secret=None, db="db3"),
    ]
    for forged in forgeries:
        raw.execute("HSET", key, field, forged)
        assert store.get(victim.sid).is_new
    assert store.refused.total == {"forged": 4, "no_key": 1, "unreadable": 0}
    # A genuine db2 session of another sid, copied over: refused for its address.
    other = logged_in(store)
    other["db"] = "db2"
    _, _, db2_record = saved_record(store, raw, other)
    raw.execute("HSET", key, field, db2_record)
    assert store.get(victim.sid).is_new


def test_login_into_another_database_rekeys_the_record(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    key, field, _ = saved_record(store, raw, session)
    session.update({"db": "db2", "uid": 5, "login": "other"})
    _, _, record = saved_record(store, raw, session)
    assert b"db2" in record[:40] and b"db1" not in record

    def decode(secrets: dict[str, str]) -> Any:
        return decode_record(record, key=key, field=field, sid=session.sid, fmt=FORMAT_JSON,
                             secret_for=database_secrets(secrets))  # fmt: skip

    assert decode({"db2": DATABASE_SECRETS["db2"]}).data["uid"] == 5
    with pytest.raises(RecordForged):
        decode({"db2": DATABASE_SECRETS["db1"]})
    with pytest.raises(RecordKeyMissing):
        decode({"db1": DATABASE_SECRETS["db1"]})


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_version_1_records_are_new_sessions(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    """What version 1 wrote for a logged-in session: no tag."""
    store = make_store(redis_url, odoo_major)
    sid = store.generate_key()
    data = user_data()
    payload = store_module.Codec().dumps(data) if odoo_major == 17 else json.dumps(data).encode()
    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    v1 = b"OCRS\x01" + fmt + (3600).to_bytes(4, "big") + b"\x00" + payload
    raw.execute("HSET", *address_of(PREFIX, sid), v1)
    assert store.get(sid).is_new
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 1}


def _anonymous(sid: str, **extra: Any) -> dict[str, Any]:
    return {"db": None, "context": {"lang": "en_US"}, "debug": "assets", **extra}


IMPOSTOR = {"uid": 2, "login": "admin", "session_token": "t" * 64, "pre_uid": 2,
            "pre_login": "admin", "identity-check-last": 9e9, "next_sid": "N" * 84,
            "deletion_time": 9e9, "gc_previous_sessions": True}  # fmt: skip


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_public_records_cannot_carry_a_user(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    """Sessions without a database and without ormcache_redis_secret are
    tagged with the public key: anyone can write one, so nothing in them
    authenticates anyone."""
    store = make_store(redis_url, odoo_major)
    anonymous = store.new()
    anonymous.update(_anonymous(anonymous.sid))
    key, field, record = saved_record(store, raw, anonymous)
    assert record[6:7] == b"P"
    assert dict(store.get(anonymous.sid)) == dict(anonymous)  # a normal one reads back
    assert store.refused.total["forged"] == 0

    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    for db in (None, "db1", "db3"):
        tampered = {**dict(anonymous), **IMPOSTOR, "db": db}
        payload = (
            store_module.Codec().dumps(tampered) if odoo_major == 17
            else json.dumps(tampered).encode()
        )  # fmt: skip
        raw.execute("HSET", key, field, forge(payload, key=key, field=field, mac_secret=None,
                                              db=db, keying=b"P", fmt=fmt))  # fmt: skip
        loaded = store.get(anonymous.sid)
        assert not loaded.is_new  # an anonymous session: harmless, so kept
        assert loaded.get("db") == db and loaded["debug"] == "assets"
        assert not set(IMPOSTOR) & set(loaded), f"db={db}: kept {set(IMPOSTOR) & set(loaded)}"
    assert store.refused.total["forged"] == 3  # counted and reported all the same


def test_sessions_without_database_use_the_configured_secret(
    redis_url: str, raw: RedisClient
) -> None:
    configured = configured_store(redis_url, 18)
    session = configured.new()
    session.update(_anonymous(session.sid, uid=None, pre_uid=4, pre_login="x"))
    key, field, record = saved_record(configured, raw, session)
    assert record[6:7] == b"D"
    assert dict(configured.get(session.sid)) == dict(session)  # nothing stripped
    # The same key claimed by a record tagged with the public key: refused.
    raw.execute("HSET", key, field, forge(dict(session), key=key, field=field, mac_secret=None,
                                          db=None, keying=b"D"))  # fmt: skip
    assert configured.get(session.sid).is_new
    # Servers without the configured secret cannot check it: a new session.
    assert make_store(redis_url, 18).get(session.sid).is_new


def test_logged_in_session_without_a_secret_is_a_503_not_a_public_record(
    redis_url: str, raw: RedisClient
) -> None:
    store = make_store(redis_url, 18, record_secret_for=database_secrets({}))
    session = logged_in(store)
    with pytest.raises(SessionStoreUnavailable, match="'db1'") as error:
        store.save(session)
    assert error.value.code == 503
    assert all_keys(raw) == []
    anonymous = store.new()
    anonymous.update({"db": "db1", "debug": "1"})  # authenticates nobody: public is fine
    store.save(anonymous)
    assert dict(store.get(anonymous.sid)) == dict(anonymous)


def test_injected_next_sid_is_not_followed(redis_url: str, raw: RedisClient) -> None:
    """Odoo 19 follows ``next_sid`` of a rotated-away session: an attacker
    who could plant one would move the victim to a session id they know."""
    store = make_store(redis_url, 19)
    victim = logged_in(store)
    victim["create_time"] = time.time() - 4 * 3600
    key, field, _ = saved_record(store, raw, victim)
    attacker_sid = victim.sid[:42] + store.generate_key()[42:]
    # A next_sid sealed under the attacker's own sid (as in their own
    # rotated-away session).
    sealed_for_attacker = seal_next_sid({"next_sid": attacker_sid}, attacker_sid)["next_sid"]
    injections = [
        # Without any key: the plain id written into the payload.
        forge({**dict(victim), "next_sid": attacker_sid, "deletion_time": time.time() + 99},
              key=key, field=field, mac_secret=None),
        # Even with the database's secret (its administrator): plain, or sealed
        # under another sid, the next_sid does not open and is dropped.
        forge({**dict(victim), "next_sid": attacker_sid, "deletion_time": time.time() + 99},
              key=key, field=field, mac_secret=DATABASE_SECRETS["db1"]),
        forge({**dict(victim), "next_sid": sealed_for_attacker, "deletion_time": time.time() + 99},
              key=key, field=field, mac_secret=DATABASE_SECRETS["db1"]),
    ]  # fmt: skip
    for injected in injections:
        raw.execute("HSET", key, field, injected)
        loaded = store.get(victim.sid)
        assert "next_sid" not in loaded
        if not loaded.is_new:
            store.rotate(loaded, env=object(), soft=True)
            assert loaded.sid != attacker_sid and loaded.sid != victim.sid
    assert store.refused.total["forged"] == 1


def test_modified_next_sid_of_a_real_rotation_is_refused(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 19)
    session = logged_in(store)
    session["create_time"] = time.time() - 4 * 3600
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object(), soft=True)
    key, field = address_of(PREFIX, old_sid)
    record = raw.execute("HGET", key, field)
    start = record.index(b"ocr-sealed:2:") + len(b"ocr-sealed:2:")
    for position in (start, start + 20, start + 60):
        changed = bytearray(record)
        changed[position] = ord("A") if changed[position] != ord("A") else ord("B")
        raw.execute("HSET", key, field, bytes(changed))
        assert store.get(old_sid).is_new
    raw.execute("HSET", key, field, record)
    assert store.get(old_sid)["next_sid"] == session.sid


def test_refused_records_are_reported_at_most_once_a_minute(
    redis_url: str, raw: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(redis_url, 18)
    session = logged_in(store)
    key, field, record = saved_record(store, raw, session)
    raw.execute("HSET", key, field, record[:-1] + bytes([record[-1] ^ 1]))
    with caplog.at_level(logging.WARNING):
        for _ in range(25):
            assert store.get(session.sid).is_new
    warnings = [r for r in caplog.records if "Refused session records" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 whose authentication tag does not verify" in warnings[0].getMessage()
    assert "different secrets" in warnings[0].getMessage()
    assert store.refused.total["forged"] == 25
    assert session.sid[:20] not in caplog.text
    # Once the interval has passed, the next refusal reports what was held back.
    store.refused.interval = 0.2
    time.sleep(0.25)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        store.get(session.sid)
    assert "25 whose authentication tag" in caplog.text


def test_normal_flow_after_every_attack_still_works(redis_url: str, raw: RedisClient) -> None:
    store = make_store(redis_url, 19)
    session = logged_in(store)
    session["create_time"] = time.time() - 4 * 3600
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object(), soft=True)
    assert store.get(old_sid)["next_sid"] == session.sid
    store.rotate(session, env=object())  # hard
    assert dict(store.get(session.sid)) == dict(session)
    store.delete_from_identifiers([session.sid[:42]])
    assert store.get(session.sid).is_new
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0}


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
    import test_session_store as t
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
    return SessionStoreSettings.from_options(OptionSource(None, environ))


def test_settings_default_to_the_filesystem_store() -> None:
    assert settings() is None
    assert settings(SESSION_STORE="filesystem") is None


def test_settings_from_config_then_environment() -> None:
    config = {"session_store": "redis", "session_store_prefix": "p:"}
    parsed = SessionStoreSettings.from_options(
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
    return session_migrate.main(list(argv))


def user_data(uid: int = 2) -> dict[str, Any]:
    return {"db": "db1", "uid": uid, "login": "admin", "session_token": "t",
            "context": {"lang": "en_US"}, "debug": ""}  # fmt: skip


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
        loaded = (
            session_migrate.load_session_pickle(content)
            if odoo_major == 17
            else json.loads(content)
        )
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


def test_migration_cli_runs_as_a_command(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ormcache_redis.session_migrate", "to-redis",
         "--session-dir", str(tmp_path), "--url", redis_url, "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("to-redis: would copy 0")
