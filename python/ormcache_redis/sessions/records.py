"""Redis layout and record format of Odoo HTTP sessions.

Shared by the session store (:mod:`.store`) and the migration command
(:mod:`.migrate`, ``ormcache-redis-sessions``), so both read and write
exactly the same bytes. Nothing here imports Odoo.

Layout
------
Odoo 18/19 address sessions by their first 42 characters (the *identifier*
kept in ``res.device.log``): device revocation deletes every session of an
identifier, the autovacuum cron asks which identifiers still have a session.
So all sessions sharing an identifier live in one Redis hash::

    key   = <prefix> + sha256(identifier).hexdigest()
    field = sha256(sid).hexdigest()
    value = a record (below)

Deleting an identifier is one ``DEL``, checking identifiers is pipelined
``EXISTS``: no ``KEYS``/``SCAN``. A session id never appears in a key name or
field; the hashes cannot be turned back into ids (42 base64 characters carry
252 bits, Odoo 17's 40 hex characters 160 bits). Odoo 17 has no identifier
concept; its 40-character ids are their own identifier.

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
only after Redis said it is no longer than that (:data:`LOAD_SCRIPT`, one
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

import base64
import functools
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ormcache_redis._native import _aead_open, _aead_seal, _derive_key, _mac_tag, _mac_verify
from ormcache_redis.config import OPTIONS, SESSION_PREFIX

# The session options' defaults live with their rules (src/settings/).
DEFAULT_PREFIX: str = SESSION_PREFIX
DEFAULT_ANONYMOUS_TTL: int = round(OPTIONS["session_store_anonymous_ttl"].default)
DEFAULT_SESSION_LIFETIME = 7 * 24 * 3600
"""Odoo's ``SESSION_LIFETIME`` (default ``sessions.max_inactivity_seconds``)."""

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

MAX_RECORD_BYTES = 1 << 20
"""The longest session record (1 MiB) a store writes or reads.

An Odoo session holds who is logged in, a context and a few flags: a few
hundred bytes, some kilobytes with e-commerce or 2FA state; a 1 MiB one is a
bug (something that belongs in the database) or a record planted by
someone who can write to Redis. Every request reads its session, so the cap
bounds what one request can be made to cost: the bytes read (checked in
Redis before they are sent, :data:`LOAD_SCRIPT`), and decoding them (JSON or
the codec, within a few times the record's size). Not an option: a session
that needs more holds what belongs in the database."""

MAX_SESSIONS_PER_IDENTIFIER = 64
"""Records one identifier's hash may hold for ``to-files`` to read it (Odoo
17 and 18 keep one session per identifier, 19 also those soft-rotated away
in the last minutes); a bigger hash was not written by a store and is skipped."""

IDENTIFIER_LENGTH = 42
"""Odoo's ``STORED_SESSION_BYTES``: the part of a session id kept in the database."""

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{42}\Z")

FIELD_LENGTH = 64
"""A hash field is the hex SHA-256 of a session id."""

LOAD_SCRIPT = """\
local size = redis.call('HSTRLEN', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if size > tonumber(ARGV[2]) then return {ttl, size} end
return {ttl, redis.call('HGET', KEYS[1], ARGV[1])}
"""
"""Reads one record only when it is at most ``ARGV[2]`` bytes, and the hash's
PTTL, atomically, in one round trip: ``{pttl, record}``, ``{pttl, nil}``
when there is none, ``{pttl, its length}`` (an integer) when it is longer.
One key: it runs on a Redis Cluster too. A key that is not a hash is a
WRONGTYPE error."""

LIST_SCRIPT = """\
local count = redis.call('HLEN', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count > tonumber(ARGV[1]) then return {ttl, count, {}} end
local fields = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if #name == tonumber(ARGV[2]) then fields[#fields + 1] = name end
end
return {ttl, count, fields}
"""
"""The fields of one identifier's hash that have a field's length, when it
has at most ``ARGV[1]`` (``{pttl, count, fields}``; none when it has more):
a reply that stays small whatever was planted in the hash."""

SEALED_PREFIX = "ocr-sealed:2:"
_MAX_TTL = 2**32 - 1

# One key per purpose (HKDF info), so no key ever serves two uses.
PURPOSE_RECORD = "session-record/v2"
PURPOSE_SID = "session-id/v2"
PURPOSE_NEXT_SID = "session-next-sid/v2"
PUBLIC_SECRET = b"ormcache_redis: sessions without a database and without a secret"
"""Keys the tag of records no secret covers: known to everyone, it only
detects corruption (see :data:`AUTHENTICATING_KEYS`)."""

AUTHENTICATING_KEYS = frozenset(
    {
        # Who the session belongs to: get_default_session() in odoo/http.py (17, 18, 19).
        "uid",
        "login",
        "session_token",
        # A login waiting for its second factor: Session.authenticate/finalize.
        "pre_uid",
        "pre_login",
        # The password was re-entered recently: res.users' check_identity.
        "identity-check-last",
        # Odoo 19's soft rotation: where the old cookie is sent, and when it dies.
        "next_sid",
        "deletion_time",
        "gc_previous_sessions",
    }
)
"""Session keys that authenticate someone or steer a rotation: a session
holding one is never written under the public key."""

PUBLIC_RECORD_KEYS = frozenset({"db", "debug", "context", "create_time"})
"""All that a record under the public key may hold, each of one shape:
``db`` (the record's database, checked against its header), ``debug`` (a
short string), ``context`` (only ``lang`` and ``tz``, short strings) and 19's
``create_time`` (a number). Odoo refills every other key of a fresh session
(``get_default_session``) on each request. Anything else (``uid``,
``sale_order_id``...) is someone's own state, which only a secret may vouch
for."""

_PUBLIC_CONTEXT_KEYS = ("lang", "tz")
_PUBLIC_TEXT_LENGTH = 64

SecretForDatabase = Callable[[str | None], str | bytes | None]
"""The secret of a database's session records (``None``: no database); returns
None when there is none (for no database: no ``ormcache_redis_secret``)."""


class PayloadCodec(Protocol):
    """The engine's ``Codec`` (``dumps``/``loads``), or anything alike."""

    def dumps(self, obj: object) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class RecordError(ValueError):
    """Bytes found in Redis are not a session record this code can read."""


class RecordForged(RecordError):
    """The record's tag does not verify: written by someone without the key
    (or a server with another secret), or copied from another session."""


class RecordTooLarge(RecordError):
    """A record longer than :data:`MAX_RECORD_BYTES` (``size``: its length)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class RecordKeyMissing(RecordError):
    """No secret is known for the database a record names (reading), or a
    session that authenticates someone would have to be written under the
    public key (writing)."""

    def __init__(self, message: str, db: str | None) -> None:
        super().__init__(message)
        self.db = db


# Keys that Odoo's get_default_session() fills on every request: a session
# holding only these, at their defaults, carries nothing the next request
# would miss.
_DEFAULT_SESSION_VALUES: dict[str, Any] = {
    "db": None,
    "debug": "",
    "login": None,
    "uid": None,
    "session_token": None,
    "_trace": [],
}


def carries_nothing(data: Mapping[str, Any]) -> bool:
    """True for an anonymous session holding only what Odoo rebuilds on every
    request (defaults, the language, 19's ``create_time``): storing it would
    cost a write and memory for nothing."""
    for name, value in data.items():
        if name == "create_time":
            continue
        if name == "context":
            if not isinstance(value, dict) or set(value) - {"lang"}:
                return False
            continue
        if name not in _DEFAULT_SESSION_VALUES or value != _DEFAULT_SESSION_VALUES[name]:
            return False
    return True


def authenticates_someone(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` holds a value under one of :data:`AUTHENTICATING_KEYS`."""
    return any(data.get(name) not in (None, "", False) for name in AUTHENTICATING_KEYS)


def _public_text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= _PUBLIC_TEXT_LENGTH


def _public_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def public_part(data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """What of ``data`` a record under the public key may hold
    (:data:`PUBLIC_RECORD_KEYS`), and whether anything else was there: a
    key outside the list with another value than Odoo's default for it, or
    a listed key of another shape."""
    kept: dict[str, Any] = {}
    more = False
    for name, value in data.items():
        if name == "db":
            kept[name] = value  # the record's database: checked by its reader
        elif name == "debug" and _public_text(value):
            kept[name] = value
        elif name == "create_time" and _public_number(value):
            kept[name] = value
        elif name == "context" and isinstance(value, dict):
            context = {k: value[k] for k in _PUBLIC_CONTEXT_KEYS if _public_text(value.get(k))}
            more = more or len(context) != len(value)
            kept[name] = context
        elif name not in _DEFAULT_SESSION_VALUES or value != _DEFAULT_SESSION_VALUES[name]:
            # At its default, a key is Odoo's (refilled on every request),
            # not the session's own.
            more = True
    return kept, more


def record_ttl(data: Mapping[str, Any], lifetime: int, anonymous_ttl: int) -> int:
    """Seconds a session lives without activity: Odoo's lifetime once logged
    in, the shorter anonymous TTL (never above the lifetime) before."""
    lifetime = max(1, int(lifetime))
    if data.get("uid"):
        return lifetime
    return max(1, min(int(anonymous_ttl), lifetime))


def identifier_of(sid: str) -> str:
    return sid[:IDENTIFIER_LENGTH]


def hash_key(prefix: str, identifier: str) -> str:
    return prefix + hashlib.sha256(identifier.encode()).hexdigest()


def field_of(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def address_of(prefix: str, sid: str) -> tuple[str, str]:
    """(Redis key, hash field) of a session."""
    return hash_key(prefix, identifier_of(sid)), field_of(sid)


def load_command(key: str, field: str) -> tuple[str | int, ...]:
    """Reads one record at most :data:`MAX_RECORD_BYTES` long (:data:`LOAD_SCRIPT`)."""
    return ("EVAL", LOAD_SCRIPT, 1, key, field, MAX_RECORD_BYTES)


def loaded_record(reply: object) -> tuple[object, bytes | None]:
    """(PTTL, record or None) from the reply to :func:`load_command`;
    :class:`RecordTooLarge` when Redis found it too long (it sent only the
    length), :class:`RecordError` for a reply of another shape."""
    if not isinstance(reply, list) or len(reply) != 2:
        raise RecordError("unexpected reply to a session read")
    remaining_ms, raw = reply
    if raw is False:  # a RESP3 connection may see the script's nil as false
        raw = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raise RecordTooLarge(f"a session record of {raw} bytes", raw)
    if raw is not None and not isinstance(raw, bytes):
        raise RecordError("unexpected reply to a session read")
    return remaining_ms, raw


def list_command(key: str) -> tuple[str | int, ...]:
    """Lists one identifier's fields, bounded (:data:`LIST_SCRIPT`)."""
    return ("EVAL", LIST_SCRIPT, 1, key, MAX_SESSIONS_PER_IDENTIFIER, FIELD_LENGTH)


def listed_fields(reply: object) -> tuple[object, int, list[str]]:
    """(PTTL, how many fields the hash has, the fields of a field's shape)
    from the reply to :func:`list_command`: none when it has more than
    :data:`MAX_SESSIONS_PER_IDENTIFIER`; RecordError for another shape."""
    if not isinstance(reply, list) or len(reply) != 3:
        raise RecordError("unexpected reply to a session listing")
    remaining_ms, count, names = reply
    if not isinstance(count, int) or not isinstance(names, list):
        raise RecordError("unexpected reply to a session listing")
    fields = []
    for name in names:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        if re.fullmatch(r"[0-9a-f]{64}", text):
            fields.append(text)
    return remaining_ms, count, fields


# --------------------------------------------------------------------------- keys


@functools.lru_cache(maxsize=256)
def _derived(secret: str | bytes, purpose: str) -> bytes:
    return _derive_key(secret, purpose)


def record_key(secret: str | bytes | None) -> bytes:
    """The key of record tags for a database's ``secret`` (None: the public key)."""
    return _derived(PUBLIC_SECRET if secret is None else secret, PURPOSE_RECORD)


def sid_key(session_store_secret: str | bytes) -> bytes:
    """The key sealing session ids into records, from ``session_store_secret``."""
    return _derived(session_store_secret, PURPOSE_SID)


def _next_sid_key(sid: str) -> bytes:
    return _derive_key(sid, PURPOSE_NEXT_SID)


# --------------------------------------------------------------------------- next_sid


def seal_next_sid(data: Mapping[str, Any], sid: str) -> dict[str, Any]:
    """``data`` with Odoo 19's ``next_sid`` sealed under a key derived from ``sid``."""
    out = dict(data)
    next_sid = out.get("next_sid")
    if isinstance(next_sid, str) and not next_sid.startswith(SEALED_PREFIX):
        sealed = _aead_seal(_next_sid_key(sid), next_sid.encode(), b"next_sid")
        out["next_sid"] = SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode()
    return out


def open_next_sid(data: dict[str, Any], sid: str | None) -> dict[str, Any]:
    """Reverse of :func:`seal_next_sid`; a ``next_sid`` that does not open
    (no ``sid``, another one, altered) is dropped: the old session then
    rotates again instead of following it."""
    next_sid = data.pop("next_sid", None)
    if sid is None or not isinstance(next_sid, str) or not next_sid.startswith(SEALED_PREFIX):
        return data
    try:
        sealed = base64.urlsafe_b64decode(next_sid[len(SEALED_PREFIX) :])
    except ValueError:
        return data
    opened = _aead_open(_next_sid_key(sid), sealed, b"next_sid")
    if opened is not None:
        data["next_sid"] = opened.decode("ascii", "replace")
    return data


# --------------------------------------------------------------------------- records


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
