"""What a session record planted by someone who can write to Redis may cost
and give, on the suite's real redis-server.

- a record longer than ``MAX_RECORD_BYTES`` is refused on its length, in
  Redis, before a byte of it is sent: a 300 MB one costs a request no more
  time or memory than a small one, and the request gets a new session;
- a record under the public key is never an existing session for a store
  that has a secret for it;
- a record under the public key is anonymous: it gives Odoo only
  ``PUBLIC_RECORD_KEYS``, never a cart or anything else of its own;
- ``ormcache-redis-sessions to-files`` reads only bounded replies.

Time and memory are measured in a fresh process (one ``store.get``, or one
migration): the peak resident set (``VmHWM``) above what the process held
before, so neither the planting nor the test process is counted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from session_support import (
    CONFIGURED_SECRET,
    DATABASE_SECRETS,
    PREFIX,
    VERSIONS,
    all_keys,
    configured_store,
    logged_in,
    make_store,
)

from ormcache_redis._native import Codec, RedisClient
from ormcache_redis.sessions import records, redis_layout
from ormcache_redis.sessions.record_errors import RecordForged
from ormcache_redis.sessions.record_keys import record_key
from ormcache_redis.sessions.records import FORMAT_CODEC, FORMAT_JSON, TAG_BYTES, decode_record
from ormcache_redis.sessions.redis_layout import address_of
from ormcache_redis.sessions.store_errors import SessionStoreUnavailable, SessionValueError

TESTS = str(Path(__file__).resolve().parent)

GIANT = 300 << 20
"""The planted record: 300 MB."""
MAX_SECONDS = 0.5
MAX_EXTRA_MB = 50

FILLER = memoryview(b"a" * (1 << 20))


def filler(count: int) -> Iterator[memoryview]:
    """``count`` bytes ``a``, a megabyte at a time."""
    while count:
        step = min(count, len(FILLER))
        yield FILLER[:step]
        count -= step


def send(redis_url: str, *args: str | bytes | list[bytes | int]) -> bytes:
    """Sends one command to the suite's Redis as it is written, without ever
    holding it whole: an argument given as a list is its parts, an int part
    that many bytes ``a``. Returns the first bytes of the reply."""
    parts = [[arg.encode()] if isinstance(arg, str) else [arg] if isinstance(arg, bytes)
             else arg for arg in args]  # fmt: skip
    url = urlsplit(redis_url)
    with socket.create_connection((url.hostname, url.port), timeout=60.0) as sock:
        sock.sendall(f"*{len(parts)}\r\n".encode())
        for arg in parts:
            size = sum(part if isinstance(part, int) else len(part) for part in arg)
            sock.sendall(f"${size}\r\n".encode())
            for part in arg:
                if isinstance(part, int):
                    for chunk in filler(part):
                        sock.sendall(chunk)
                else:
                    sock.sendall(part)
            sock.sendall(b"\r\n")
        return sock.recv(256)


def plant(
    redis_url: str,
    key: str,
    field: str,
    *,
    size: int,
    tag: str = "public",
    db: str | None = None,
    keying: bytes = b"P",
) -> None:
    """A JSON record of exactly ``size`` bytes at (``key``, ``field``):
    ``{"db": db, "debug": "aaa…"}``, tagged with the public key (``tag``
    "public": valid, what anyone can write), a database's secret ("db1"), or
    not validly ("wrong")."""
    db_raw = (db or "").encode()
    head = (
        b"OCRS" + bytes([2]) + FORMAT_JSON + keying + (3600).to_bytes(4, "big")
        + bytes([len(db_raw)]) + db_raw + b"\x00"
        + b'{"db":' + json.dumps(db).encode() + b',"debug":"'
    )  # fmt: skip
    payload_tail = b'"}'
    count = size - len(head) - len(payload_tail) - TAG_BYTES
    assert count >= 0
    if tag == "wrong":
        digest = os.urandom(TAG_BYTES)
    else:
        secret = None if tag == "public" else DATABASE_SECRETS[tag]
        mac = hmac.new(record_key(secret), digestmod=hashlib.sha256)
        address = key.encode()
        mac.update(len(address).to_bytes(2, "big") + address + field.encode() + head)
        for chunk in filler(count):
            mac.update(chunk)
        mac.update(payload_tail)
        digest = mac.digest()
    assert send(redis_url, "HSET", key, field, [head, count, payload_tail + digest])[:1] == b":"
    assert RedisClient(redis_url).execute("HSTRLEN", key, field) == size


def drop(redis_url: str, key: str) -> None:
    RedisClient(redis_url, socket_timeout=30.0).execute("DEL", key)


# One store.get in a fresh process, as the addon builds the store
# (session_store_timeout's default: 1 s).
LOAD = textwrap.dedent(
    """
    import io, json, logging, sys, time
    sys.path.insert(0, sys.argv[1])
    from session_support import (CONFIGURED_SECRET, PREFIX, StandInSession,
                                 database_secrets, stand_in_session_token)
    from ormcache_redis._native import RedisClient
    from ormcache_redis.sessions.store import RedisSessionStore

    log = io.StringIO()
    logging.basicConfig(stream=log, level=logging.WARNING)
    url, sid, configured = sys.argv[2], sys.argv[3], sys.argv[4] == "configured"
    store = RedisSessionStore(
        RedisClient(url, connect_timeout=1.0, socket_timeout=1.0),
        session_class=StandInSession, odoo_major=18,
        compute_session_token=stand_in_session_token,
        record_secret_for=database_secrets(configured=CONFIGURED_SECRET if configured else None),
        prefix=PREFIX,
    )
    store.client.ping()

    def vm(name):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(name))

    before = vm("VmRSS:")
    start = time.perf_counter()
    try:
        session = store.get(sid)
        outcome = {"new": session.is_new, "data": dict(session)}
    except Exception as exc:
        outcome = {"raised": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = time.perf_counter() - start
    outcome["extra_mb"] = (vm("VmHWM:") - before) / 1024
    outcome["refused"] = store.refused.total
    outcome["log"] = log.getvalue()
    print(json.dumps(outcome))
    """
)


def load_in_a_fresh_process(redis_url: str, sid: str, configured: bool = False) -> dict[str, Any]:
    mode = "configured" if configured else "plain"
    done = subprocess.run(
        [sys.executable, "-c", LOAD, TESTS, redis_url, sid, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- size


def test_the_plant_helper_writes_records_the_store_reads(redis_url: str) -> None:
    """The giant records below mean something only if the same helper's
    small ones are accepted: a valid public-key record, and one under db1's
    secret."""
    store = make_store(redis_url, 18)
    sid = store.generate_key()
    key, field = address_of(PREFIX, sid)
    # 67 bytes around the filler: 13 of header, 20 of JSON before, 2 after, the tag.
    plant(redis_url, key, field, size=100)
    session = store.get(sid)
    assert not session.is_new and session["debug"] == "a" * (100 - 67)
    # 71 with the database named twice: 3 more bytes in the header, 1 in the JSON.
    plant(redis_url, key, field, size=200, tag="db1", db="db1", keying=b"D")
    assert store.get(sid)["debug"] == "a" * (200 - 71)
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0, "oversized": 0}


@pytest.mark.parametrize(
    "tag",
    [
        "public",  # what anyone can write: before the cap, read and decoded (300 MB of JSON)
        "wrong",  # a forged tag: before the cap, read and checked (300 MB through the MAC)
    ],
)
def test_a_giant_record_is_refused_before_it_is_read(redis_url: str, tag: str) -> None:
    store = make_store(redis_url, 18)
    victim = logged_in(store)
    store.save(victim)
    key, field = address_of(PREFIX, victim.sid)
    plant(redis_url, key, field, size=GIANT, tag=tag, db=None if tag == "public" else "db1",
          keying=b"P" if tag == "public" else b"D")  # fmt: skip
    try:
        outcome = load_in_a_fresh_process(redis_url, victim.sid)
    finally:
        drop(redis_url, key)
    figures = f"{outcome['seconds']:.3f} s, +{outcome['extra_mb']:.1f} MB"
    assert outcome["seconds"] <= MAX_SECONDS, figures
    assert outcome["extra_mb"] <= MAX_EXTRA_MB, figures
    # Like a tampered record: a new, empty session (Odoo gives it a new id).
    assert outcome.get("new") is True and outcome["data"] == {}, outcome
    assert outcome["refused"].get("oversized") == 1, outcome["refused"]
    assert sum(outcome["refused"].values()) == 1
    # Reported once, in words, without the session id.
    warnings = [line for line in outcome["log"].splitlines() if "Refused session records" in line]
    assert len(warnings) == 1 and "longer than the 1048576 bytes" in warnings[0], outcome["log"]
    assert victim.sid[:20] not in outcome["log"] and field not in outcome["log"]


def test_the_record_cap_is_exact(redis_url: str, raw: RedisClient) -> None:
    """A record of MAX_RECORD_BYTES reads back; one byte more is refused on
    its length, whether a store would write it (it will not: the request
    fails with the biggest keys named) or someone plants it."""
    cap = redis_layout.MAX_RECORD_BYTES
    store = make_store(redis_url, 18)
    session = logged_in(store)
    session["blob"] = ""
    store.save(session)
    key, field = address_of(PREFIX, session.sid)
    session["blob"] = "x" * (cap - raw.execute("HSTRLEN", key, field))
    store.save(session)
    assert raw.execute("HSTRLEN", key, field) == cap
    assert dict(store.get(session.sid)) == dict(session)

    session["blob"] += "x"
    with pytest.raises(SessionValueError, match="'blob'"):
        store.save(session)
    assert raw.execute("HSTRLEN", key, field) == cap  # the record before stays

    plant(redis_url, key, field, size=cap + 1, tag="db1", db="db1", keying=b"D")
    assert store.get(session.sid).is_new
    plant(redis_url, key, field, size=cap, tag="db1", db="db1", keying=b"D")
    assert not store.get(session.sid).is_new  # the same record one byte shorter: read
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0, "oversized": 1}


# --------------------------------------------------------------------------- public key


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_a_public_record_is_no_session_for_a_store_with_a_secret(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    """With ormcache_redis_secret every session is written under it, those
    without a database too: a record under the public key at any address
    is no session there, however harmless it looks."""
    store = configured_store(redis_url, odoo_major)
    session = store.new()
    session.update({"db": None, "debug": "1", "context": {"lang": "en_US"}})
    store.save(session)
    key, field = address_of(PREFIX, session.sid)
    assert raw.execute("HGET", key, field)[6:7] == b"D"
    assert dict(store.get(session.sid)) == dict(session)

    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    data = {"db": None, "debug": "1", "context": {"lang": "en_US"}}
    for db in (None, "db1", "db3"):
        data["db"] = db
        record = records.encode_record(
            data, session.sid, prefix=PREFIX, fmt=fmt, ttl=60, secret_for=lambda _db: None,
            codec=Codec(),
        )  # fmt: skip
        assert record[6:7] == b"P"
        raw.execute("HSET", key, field, record)
        loaded = store.get(session.sid)
        assert loaded.is_new and dict(loaded) == {}, db
        with pytest.raises(RecordForged):
            decode_record(record, key=key, field=field, sid=session.sid, fmt=fmt,
                          secret_for=lambda _db: CONFIGURED_SECRET, codec=Codec())  # fmt: skip
    assert store.refused.total["forged"] == 3


# --------------------------------------------------------------------------- anonymous


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_a_public_record_is_anonymous_and_holds_nothing_of_its_own(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major)
    sid = store.generate_key()
    key, field = address_of(PREFIX, sid)
    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON

    def planted(data: dict[str, Any]) -> dict[str, Any] | None:
        payload = Codec().dumps(data) if odoo_major == 17 else json.dumps(data).encode()
        body = b"OCRS" + bytes([2]) + fmt + b"P" + (3600).to_bytes(4, "big") + b"\x00\x00" + payload
        address = key.encode()
        mac = hmac.new(record_key(None), digestmod=hashlib.sha256)
        mac.update(len(address).to_bytes(2, "big") + address + field.encode() + body)
        raw.execute("HSET", key, field, body + mac.digest())
        session = store.get(sid)
        return None if session.is_new else dict(session)

    allowed = {"db": None, "debug": "1", "context": {"lang": "fr_BE", "tz": "Europe/Brussels"},
               "create_time": 1.5e9}  # fmt: skip
    assert planted(allowed) == allowed
    assert store.refused.total["forged"] == 0
    # A cart, a user, a company list in the context: none of it is kept.
    assert planted({**allowed, "sale_order_id": 42, "website_sale_cart_quantity": 3,
                    "uid": 2, "login": "admin", "session_token": "t",
                    "context": {**allowed["context"], "uid": 2, "allowed_company_ids": [1]},
                    "_trace": [], "pre_uid": 2}) == allowed  # fmt: skip
    # Listed keys of another shape are dropped too (Odoo would fail on them).
    assert planted({"db": None, "debug": {"x": 1}, "context": None,
                    "create_time": "soon"}) == {"db": None}  # fmt: skip
    assert planted({"db": None, "debug": "d" * 65}) == {"db": None}
    assert store.refused.total["forged"] == 3
    # Odoo's defaults are no state of the session's own: not counted.
    assert planted({**allowed, "uid": None, "login": None, "session_token": None,
                    "_trace": []}) == allowed  # fmt: skip
    assert store.refused.total["forged"] == 3


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_a_store_never_writes_more_than_that_under_the_public_key(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    """What a reader drops, a writer refuses: a cart in a session without a
    database is a 503 without ormcache_redis_secret, not a silent loss."""
    store = make_store(redis_url, odoo_major)
    session = store.new()
    session.update({"db": None, "debug": "1", "sale_order_id": 42})
    with pytest.raises(SessionStoreUnavailable, match="ormcache_redis_secret") as error:
        store.save(session)
    assert error.value.code == 503
    assert all_keys(raw) == []
    configured = configured_store(redis_url, odoo_major)
    configured.save(session)
    assert dict(configured.get(session.sid)) == dict(session)


# --------------------------------------------------------------------------- to-files

MIGRATE = textwrap.dedent(
    """
    import contextlib, io, json, sys, time
    from ormcache_redis.sessions.migrate import main

    def vm(name):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(name))

    before = vm("VmRSS:")
    start = time.perf_counter()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(sys.argv[1:])
    print(json.dumps({"code": code, "seconds": time.perf_counter() - start,
                      "extra_mb": (vm("VmHWM:") - before) / 1024,
                      "out": out.getvalue(), "err": err.getvalue()}))
    """
)


def test_to_files_reads_only_bounded_replies(redis_url: str, tmp_path: Path) -> None:
    """Among genuine sessions: a 300 MB record, an identifier's hash with
    more records than a store writes, fields and key names of another shape
    and size. The genuine sessions are copied, the rest is counted, and the
    command's memory stays that of a small copy."""
    store = configured_store(redis_url, 18, secret="s3cret")
    genuine = [logged_in(store, uid) for uid in (2, 3)]
    for session in genuine:
        store.save(session)
    planter = RedisClient(redis_url, socket_timeout=30.0)
    # A 300 MB record beside the first genuine session, in its hash.
    giant_key, _ = address_of(PREFIX, genuine[0].sid)
    plant(redis_url, giant_key, "f" * 64, size=GIANT)
    # A hash with one record more than a store ever writes per identifier.
    crowded = PREFIX + "c" * 64
    count = redis_layout.MAX_SESSIONS_PER_IDENTIFIER + 1
    planter.execute("HSET", crowded, *[x for n in range(count) for x in (f"{n:064x}", "r")])
    # A field name of 20 MB, and a key name of 20 MB under the prefix.
    odd = PREFIX + "d" * 64
    send(redis_url, "HSET", odd, [20 << 20], "v")
    send(redis_url, "SET", [PREFIX.encode(), 20 << 20], "v")
    assert planter.execute("DBSIZE") == 5  # two genuine hashes, three planted keys
    try:
        done = subprocess.run(
            [sys.executable, "-c", MIGRATE, "to-files", "--session-dir", str(tmp_path),
             "--url", redis_url, "--prefix", PREFIX, "--session-store-secret", "s3cret",
             "--secret", CONFIGURED_SECRET],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        drop(redis_url, giant_key)
        planter.execute("FLUSHALL")
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout)
    figures = f"{outcome['seconds']:.3f} s, +{outcome['extra_mb']:.1f} MB"
    assert outcome["extra_mb"] <= MAX_EXTRA_MB, figures
    assert outcome["seconds"] <= 5.0, figures
    assert outcome["code"] == 1, outcome  # refusals make it fail
    line = outcome["out"]
    assert "too large 1" in line, line
    assert f"unreadable {count + 1}" in line, line
    assert sorted(path.name for path in tmp_path.glob("*/*")) == sorted(s.sid for s in genuine)


# --------------------------------------------------------------------------- ACL


def documented_acl_rules() -> list[str]:
    """The rules of SECURITY.md's ACL line, after the user's name and password."""
    text = (Path(TESTS).parent / "SECURITY.md").read_text()
    line = next(line.strip() for line in text.splitlines() if line.strip().startswith("user odoo"))
    return [rule for rule in line.split()[3:] if not rule.startswith(">")]


def test_the_documented_acl_runs_the_session_store(redis_url: str, raw: RedisClient) -> None:
    """A session read is a script: its commands need their own permission,
    which SECURITY.md's line grants; without HSTRLEN the read is a 503
    naming the refusal, never a silent new session."""
    rules = documented_acl_rules()
    assert "+hstrlen" in rules and "+eval" in rules and "~odoo:session:*" in rules
    user_url = redis_url.replace("redis://", "redis://odoo-doc:doc-password@")
    try:
        raw.execute("ACL", "SETUSER", "odoo-doc", "reset", "on", ">doc-password", *rules)
        store = make_store(user_url, 19, prefix="odoo:session:")
        session = logged_in(store)
        store.save(session)
        assert dict(store.get(session.sid)) == dict(session)
        store.rotate(session, env=object())
        assert dict(store.get(session.sid)) == dict(session)
        assert store.get_missing_session_identifiers([session.sid[:42]]) == set()
        store.delete_from_identifiers([session.sid[:42]])
        assert store.get(session.sid).is_new

        raw.execute("ACL", "SETUSER", "odoo-doc", "-hstrlen")
        store.save(session)
        with pytest.raises(SessionStoreUnavailable, match="refused to read a session") as error:
            make_store(user_url, 19, prefix="odoo:session:").get(session.sid)
        assert error.value.code == 503
    finally:
        raw.execute("ACL", "DELUSER", "odoo-doc")
