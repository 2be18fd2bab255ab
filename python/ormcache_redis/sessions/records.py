"""The record format of Odoo HTTP sessions in Redis.

Shared by the session store (:mod:`.store`) and the migration command
(:mod:`.migrate`, ``ormcache-redis-sessions``), so both read and write
exactly the same bytes; where records live is :mod:`.redis_layout`.
Nothing here imports Odoo.

Record (version 2)
------------------
``b"OCRS" | version 2 | format (J=JSON, C=engine codec) | keying (D or P) |
ttl seconds (uint32 big-endian) | db length (uint8) | db name |
sealed-sid length (uint8) | sealed sid | payload | tag (32 bytes)``

Whoever can write to Redis must not be able to change who a session belongs
to, so the tag is HMAC-SHA-256 over the record's address (Redis key and field:
a record copied to another session or prefix fails) and every byte before the
tag, checked before the payload is decoded. Its key is derived from the
secret of the database the session belongs to (``database.secret``, or the
deployment's ``ormcache_redis_secret``): keying ``D``. The header names that
database in clear (a database name is not secret) so a reader knows which key
to check with; the payload's ``db`` must be the same.

A session that no secret covers (keying ``P``: no database, or one whose
secret cannot be read, and no ``ormcache_redis_secret``) is tagged with a
fixed public key, which only detects corruption: anyone can write such a
record. So it is anonymous and holds nothing of its own: a writer puts in it
only :data:`PUBLIC_RECORD_KEYS` (anything more is
:class:`RecordKeyMissing`), a reader keeps only those and counts a record
that held more as forged, and a reader that has a secret for the session's
database (``ormcache_redis_secret`` covers every session) never accepts a
``P`` record at all: it would have written that session under its secret.

A record is at most :data:`MAX_RECORD_BYTES`. The store reads a record
only after Redis said it is no longer than that (:data:`.redis_layout.LOAD_SCRIPT`, one
round trip), so a planted giant costs a reader nothing; writers refuse to
write one (:class:`RecordTooLarge`).

The TTL the record was written with lets a read slide the expiry without
knowing Odoo's lifetime setting. The sealed sid (ChaCha20-Poly1305 under a key
derived from ``session_store_secret``) is present only when that secret is
configured: it is what lets ``to-files`` name the session files again, while
Redis alone never reveals an id. Odoo 19's soft rotation stores ``next_sid``
(the successor's full id) in the rotated-away session, sealed under a key
derived from the session's own id, which only a holder of the old cookie knows.

Version-1 records (no tag) are refused: their users log in once more.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ormcache_redis._native import _aead_open, _aead_seal, _mac_tag, _mac_verify
from ormcache_redis.sessions.record_errors import (
    RecordError,
    RecordForged,
    RecordKeyMissing,
    RecordTooLarge,
)
from ormcache_redis.sessions.record_keys import (
    SecretForDatabase,
    open_next_sid,
    record_key,
    seal_next_sid,
)
from ormcache_redis.sessions.redis_layout import MAX_RECORD_BYTES, address_of
from ormcache_redis.sessions.session_content import (
    PUBLIC_RECORD_KEYS,
    authenticates_someone,
    public_part,
)

MAGIC = b"OCRS"
RECORD_VERSION = 2
FORMAT_JSON = b"J"
FORMAT_CODEC = b"C"
KEYED_BY_SECRET = b"D"
KEYED_PUBLICLY = b"P"
_HEADER = struct.Struct(">4sBccIB")
_SEALED_LENGTH = struct.Struct(">B")
TAG_BYTES = 32
MAX_DB_NAME_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1."""

_MAX_TTL = 2**32 - 1


class PayloadCodec(Protocol):
    """The engine's ``Codec`` (``dumps``/``loads``), or anything alike."""

    def dumps(self, obj: object) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


@dataclass(frozen=True)
class Record:
    data: dict[str, Any]
    ttl: int
    """Seconds of inactivity the session was written for."""
    sid: str | None
    """The session id, when it was sealed in and the key is known."""
    fmt: bytes
    db: str | None
    """The database the record is keyed for (the session's ``db``)."""
    authenticated: bool
    """Keyed by a secret; False: only the public key covered it, and all but
    :data:`PUBLIC_RECORD_KEYS` was dropped (``stripped`` tells whether anything was)."""
    stripped: bool = False


def _db_of(data: Mapping[str, Any]) -> str | None:
    db = data.get("db")
    if db in (None, "", False):
        return None
    if not isinstance(db, str) or not _valid_db_name(db.encode()):
        raise ValueError(f"the session's db must be a database name, got {db!r}")
    return db


def _valid_db_name(raw: bytes) -> bool:
    if not 0 < len(raw) <= MAX_DB_NAME_BYTES:
        return False
    try:
        return raw.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False


def _mac_input(key: str, field: str, body: bytes) -> bytes:
    address = key.encode()
    return struct.pack(">H", len(address)) + address + field.encode() + body


def encode_record(
    data: Mapping[str, Any],
    sid: str,
    *,
    prefix: str,
    fmt: bytes,
    ttl: int,
    secret_for: SecretForDatabase,
    codec: PayloadCodec | None = None,
    sealing_key: bytes | None = None,
) -> bytes:
    """Serialize one session, tagged for its address under ``prefix``.

    The tag's key comes from ``secret_for(data["db"])``; when that is None the
    record is written under the public key, which only a session
    authenticating nobody may be (else :class:`RecordKeyMissing`: it would be
    a silent logout). A ``db`` that is not a database name is a ValueError.
    JSON records must hold JSON values (Odoo 18/19 guarantee it); codec
    records use the engine's closed-type codec, which raises its
    ``EncodeError`` on anything else. Never pickle. ``sealing_key``
    (:func:`sid_key`) seals the session id in, for ``to-files``."""
    db = _db_of(data)
    secret = secret_for(db)
    if secret is None and authenticates_someone(data):
        raise RecordKeyMissing(
            f"no secret for the sessions of database {db!r}: a logged-in session cannot be "
            "stored under the public key",
            db,
        )
    if secret is None and public_part(data)[1]:
        raise RecordKeyMissing(
            f"no secret for the sessions of database {db!r}: a session holding more than "
            f"{', '.join(sorted(PUBLIC_RECORD_KEYS))} cannot be stored under the public key",
            db,
        )
    clean = seal_next_sid(data, sid)
    if fmt == FORMAT_JSON:
        payload = json.dumps(clean, separators=(",", ":"), allow_nan=False).encode()
    elif fmt == FORMAT_CODEC:
        if codec is None:
            raise ValueError("codec records need a codec")
        payload = codec.dumps(clean)
    else:
        raise ValueError(f"unknown record format {fmt!r}")
    key, field = address_of(prefix, sid)
    sealed_sid = _aead_seal(sealing_key, sid.encode(), field.encode()) if sealing_key else b""
    db_raw = db.encode() if db else b""
    keying = KEYED_PUBLICLY if secret is None else KEYED_BY_SECRET
    body = b"".join(
        (
            _HEADER.pack(
                MAGIC, RECORD_VERSION, fmt, keying, max(1, min(int(ttl), _MAX_TTL)), len(db_raw)
            ),
            db_raw,
            _SEALED_LENGTH.pack(len(sealed_sid)),
            sealed_sid,
            payload,
        )
    )
    size = len(body) + TAG_BYTES
    if size > MAX_RECORD_BYTES:
        raise RecordTooLarge(
            f"the session record would be {size} bytes, above the {MAX_RECORD_BYTES} a "
            "session may be",
            size,
        )
    return body + _mac_tag(record_key(secret), _mac_input(key, field, body))


def decode_record(
    raw: bytes,
    *,
    key: str,
    field: str,
    sid: str | None,
    fmt: bytes | None,
    secret_for: SecretForDatabase,
    codec: PayloadCodec | None = None,
    sealing_key: bytes | None = None,
) -> Record:
    """Check and parse a record found at (``key``, ``field``).

    Raises :class:`RecordForged` when the tag does not verify, or when the
    record is under the public key although ``secret_for`` has a secret for
    its database (such a session is written under that secret);
    :class:`RecordKeyMissing` when no secret is known for the database it
    names; :class:`RecordTooLarge` above :data:`MAX_RECORD_BYTES`; and
    :class:`RecordError` for anything else that is not a version-2 record
    (garbage, foreign data, another format). The tag is checked before the
    payload is decoded. ``fmt`` None accepts either format. ``sid`` is the
    id it was looked up by (None when scanning: then the sealed id, if
    ``sealing_key`` opens it, opens ``next_sid``).

    A record under the public key gives only its :func:`public_part`
    (``authenticated`` False; ``stripped`` when it held more)."""
    if not isinstance(raw, bytes) or len(raw) < _HEADER.size + _SEALED_LENGTH.size + TAG_BYTES:
        raise RecordError("too short to be a session record")
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"a session record of {len(raw)} bytes", len(raw))
    magic, version, record_fmt, keying, ttl, db_len = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise RecordError("not a session record")
    if version != RECORD_VERSION:
        raise RecordError(f"a version-{version} session record (this code reads version 2)")
    if record_fmt not in (FORMAT_JSON, FORMAT_CODEC) or fmt not in (None, record_fmt):
        raise RecordError(f"record format {record_fmt!r} where {fmt!r} is expected")
    if keying not in (KEYED_BY_SECRET, KEYED_PUBLICLY):
        raise RecordError("unknown record keying")
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    sealed_at = _HEADER.size + db_len
    if len(body) < sealed_at + _SEALED_LENGTH.size:
        raise RecordError("truncated record")
    db_raw = body[_HEADER.size : sealed_at]
    if db_raw and not _valid_db_name(db_raw):
        raise RecordError("the database name in the record is not one")
    db = db_raw.decode() if db_raw else None
    (sealed_len,) = _SEALED_LENGTH.unpack_from(body, sealed_at)
    payload_at = sealed_at + _SEALED_LENGTH.size + sealed_len
    if len(body) < payload_at:
        raise RecordError("truncated record")

    secret = secret_for(db)
    if keying == KEYED_BY_SECRET and secret is None:
        raise RecordKeyMissing(f"no secret is known for database {db!r}", db)
    if keying == KEYED_PUBLICLY and secret is not None:
        # Whoever has this secret writes this session under it: the public
        # key, which anyone can use, vouches for nothing here.
        raise RecordForged("a record under the public key where a secret covers the session")
    if not _mac_verify(record_key(secret), _mac_input(key, field, body), tag):
        raise RecordForged("the record's tag does not verify")

    payload = body[payload_at:]
    try:
        if record_fmt == FORMAT_JSON:
            data = json.loads(payload)
        else:
            if codec is None:
                raise ValueError("codec records need a codec")
            data = codec.loads(payload)
    except (ValueError, TypeError, RecursionError) as exc:
        # json raises ValueError; the engine's DecodeError is a ValueError.
        raise RecordError(f"payload does not decode ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise RecordError("payload is not a mapping of names to values")
    try:
        consistent = _db_of(data) == db
    except ValueError:
        consistent = False
    if not consistent:
        # The tag verified: only a writer holding the key (or the public
        # key, for P records) gets here.
        raise RecordForged("the record's database is not the session's")

    stored_sid: str | None = None
    sealed_sid = body[sealed_at + _SEALED_LENGTH.size : payload_at]
    if sealed_sid and sealing_key is not None:
        opened = _aead_open(sealing_key, sealed_sid, field.encode())
        if opened is not None:
            stored_sid = opened.decode("ascii", "replace")
    if keying == KEYED_PUBLICLY:
        public, stripped = public_part(data)
        return Record(
            public, ttl, stored_sid, record_fmt, db, authenticated=False, stripped=stripped
        )
    data = open_next_sid(data, sid if sid is not None else stored_sid)
    return Record(data, ttl, stored_sid, record_fmt, db, authenticated=True)
