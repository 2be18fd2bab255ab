"""Session records found in Redis are untrusted: garbage, other formats,
forgeries, records moved to another address or database, planted
``next_sid``s are no session (``ormcache_redis.sessions.records`` through the
store, on the suite's real redis-server).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from session_support import (
    DATABASE_SECRETS,
    PREFIX,
    VERSIONS,
    all_keys,
    configured_store,
    database_secrets,
    logged_in,
    make_store,
    user_data,
)

from ormcache_redis._native import Codec, RedisClient, _mac_tag
from ormcache_redis.sessions.record_errors import RecordError, RecordForged, RecordKeyMissing
from ormcache_redis.sessions.record_keys import record_key, seal_next_sid, sid_key
from ormcache_redis.sessions.records import (
    FORMAT_CODEC,
    FORMAT_JSON,
    TAG_BYTES,
    decode_record,
    encode_record,
)
from ormcache_redis.sessions.redis_layout import address_of, field_of, hash_key
from ormcache_redis.sessions.store_errors import SessionStoreUnavailable

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
        secret_for=database_secrets(), codec=Codec(),
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
    return record + _mac_tag(record_key(mac_secret), tag_input)


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
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0, "oversized": 0}


@pytest.mark.parametrize("odoo_major", VERSIONS)
def test_forged_payloads_are_new_sessions(
    redis_url: str, raw: RedisClient, odoo_major: int
) -> None:
    store = make_store(redis_url, odoo_major)
    victim = logged_in(store, uid=7)
    key, field, record = saved_record(store, raw, victim)
    admin = {**dict(victim), "uid": 2, "login": "admin"}
    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    payload = Codec().dumps(admin) if odoo_major == 17 else json.dumps(admin).encode()
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
                           secret_for=database_secrets(), codec=Codec(),
                           sealing_key=sid_key("s3cret"))  # fmt: skip
    accepted = 0
    for bit in range(len(record) * 8):
        flipped = bytearray(record)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            decode_record(bytes(flipped), key=key, field=field, sid=sid, fmt=store_fmt,
                          secret_for=database_secrets(), codec=Codec(),
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
    assert store.refused.total == {"forged": 4, "no_key": 1, "unreadable": 0, "oversized": 0}
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
    payload = Codec().dumps(data) if odoo_major == 17 else json.dumps(data).encode()
    fmt = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
    v1 = b"OCRS\x01" + fmt + (3600).to_bytes(4, "big") + b"\x00" + payload
    raw.execute("HSET", *address_of(PREFIX, sid), v1)
    assert store.get(sid).is_new
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 1, "oversized": 0}


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
    authenticates anyone, and a store that knows the secret of the database
    such a record names refuses it whole."""
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
            Codec().dumps(tampered) if odoo_major == 17
            else json.dumps(tampered).encode()
        )  # fmt: skip
        raw.execute("HSET", key, field, forge(payload, key=key, field=field, mac_secret=None,
                                              db=db, keying=b"P", fmt=fmt))  # fmt: skip
        loaded = store.get(anonymous.sid)
        if db == "db1":  # its secret is known: the store would have written it under it
            assert loaded.is_new and dict(loaded) == {}
            continue
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
    assert store.refused.total == {"forged": 0, "no_key": 0, "unreadable": 0, "oversized": 0}
