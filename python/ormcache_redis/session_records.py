"""Redis layout and record format of Odoo HTTP sessions.

Shared by the Odoo session store (``odoo_addon/ormcache_redis/session_store.py``)
and the migration command (``ormcache-redis-sessions``), so both read and write
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

Record
------
``b"OCRS" | version (1 byte) | format (1 byte: J=JSON, C=engine codec) |
ttl seconds (uint32 big-endian) | sealed-sid length (uint8) | sealed sid |
payload``. The TTL the record was written with lets a read slide the expiry
without knowing Odoo's lifetime setting. The sealed sid is present only when a
``session_store_secret`` is configured: it is what lets ``to-files`` name the
session files again, while Redis alone never reveals an id.

Odoo 19's soft rotation stores ``next_sid`` (the successor's full id) in the
rotated-away session; it is sealed with a key derived from the session's own
id, which only a holder of the old cookie knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_PREFIX = "odoo:session:"
DEFAULT_SESSION_LIFETIME = 7 * 24 * 3600
"""Odoo's ``SESSION_LIFETIME`` (default ``sessions.max_inactivity_seconds``)."""
DEFAULT_ANONYMOUS_TTL = 4 * 3600

MAGIC = b"OCRS"
RECORD_VERSION = 1
FORMAT_JSON = b"J"
FORMAT_CODEC = b"C"
_HEADER = struct.Struct(">4sBcIB")

IDENTIFIER_LENGTH = 42
"""Odoo's ``STORED_SESSION_BYTES``: the part of a session id kept in the database."""

SID_PATTERN_HEX40 = re.compile(r"^[a-f0-9]{40}\Z")
"""Odoo 17 session ids (werkzeug's ``_sha1_re``)."""
SID_PATTERN_B64_84 = re.compile(r"^[A-Za-z0-9_-]{84}\Z")
"""Odoo 18/19 session ids."""
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{42}\Z")

SEALED_PREFIX = "ocr-sealed:1:"
_NONCE_BYTES = 16
_TAG_BYTES = 16
_MAX_TTL = 2**32 - 1


class PayloadCodec(Protocol):
    """The engine's ``Codec`` (``dumps``/``loads``), or anything alike."""

    def dumps(self, obj: object) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class RecordError(ValueError):
    """Bytes found in Redis are not a session record this code can read."""


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


# --------------------------------------------------------------------------- sealing
# A stream cipher from the standard library: SHAKE-256(key, nonce) is the
# keystream, HMAC-SHA-256 authenticates nonce + ciphertext. Good enough for
# short ids, and needs no third-party package in the migration tool.


def _xor_keystream(key: bytes, nonce: bytes, data: bytes) -> bytes:
    stream = hashlib.shake_256(b"ormcache_redis/seal/1" + key + nonce).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def seal(key: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    cipher = _xor_keystream(key, nonce, plaintext)
    tag = hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:_TAG_BYTES]
    return nonce + cipher + tag


def unseal(key: bytes, sealed: bytes) -> bytes | None:
    if len(sealed) < _NONCE_BYTES + _TAG_BYTES:
        return None
    nonce, tag = sealed[:_NONCE_BYTES], sealed[-_TAG_BYTES:]
    cipher = sealed[_NONCE_BYTES:-_TAG_BYTES]
    expected = hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:_TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        return None
    return _xor_keystream(key, nonce, cipher)


def secret_key(secret: str | bytes) -> bytes:
    """The sealing key of session ids derived from ``session_store_secret``."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(b"ormcache_redis/session-id/1" + raw).digest()


def _next_sid_key(sid: str) -> bytes:
    return hashlib.sha256(b"ormcache_redis/next-sid/1" + sid.encode()).digest()


def seal_next_sid(data: Mapping[str, Any], sid: str) -> dict[str, Any]:
    """``data`` with Odoo 19's ``next_sid`` sealed under a key derived from ``sid``."""
    out = dict(data)
    next_sid = out.get("next_sid")
    if isinstance(next_sid, str) and not next_sid.startswith(SEALED_PREFIX):
        sealed = seal(_next_sid_key(sid), next_sid.encode())
        out["next_sid"] = SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode()
    return out


def open_next_sid(data: dict[str, Any], sid: str) -> dict[str, Any]:
    """Reverse of :func:`seal_next_sid`; an unreadable ``next_sid`` is dropped
    (the old session then rotates again instead of following it)."""
    next_sid = data.get("next_sid")
    if isinstance(next_sid, str) and next_sid.startswith(SEALED_PREFIX):
        try:
            sealed = base64.urlsafe_b64decode(next_sid[len(SEALED_PREFIX) :])
        except ValueError:
            sealed = b""
        opened = unseal(_next_sid_key(sid), sealed)
        if opened is None:
            del data["next_sid"]
        else:
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


def encode_record(
    data: Mapping[str, Any],
    sid: str,
    *,
    fmt: bytes,
    ttl: int,
    codec: PayloadCodec | None = None,
    sid_key: bytes | None = None,
) -> bytes:
    """Serialize one session. JSON records must hold JSON values (Odoo 18/19
    guarantee it); codec records use the engine's closed-type codec, which
    raises its ``EncodeError`` on anything else. Never pickle."""
    clean = seal_next_sid(data, sid)
    if fmt == FORMAT_JSON:
        payload = json.dumps(clean, separators=(",", ":"), allow_nan=False).encode()
    elif fmt == FORMAT_CODEC:
        if codec is None:
            raise ValueError("codec records need a codec")
        payload = codec.dumps(clean)
    else:
        raise ValueError(f"unknown record format {fmt!r}")
    sealed_sid = seal(sid_key, sid.encode()) if sid_key is not None else b""
    header = _HEADER.pack(
        MAGIC, RECORD_VERSION, fmt, max(1, min(int(ttl), _MAX_TTL)), len(sealed_sid)
    )
    return header + sealed_sid + payload


def decode_record(
    raw: bytes,
    sid: str | None,
    *,
    fmt: bytes | None,
    codec: PayloadCodec | None = None,
    sid_key: bytes | None = None,
) -> Record:
    """Parse a record written by :func:`encode_record`; raises
    :class:`RecordError` for anything else (garbage, foreign data, another
    format). ``fmt`` None accepts either format. ``sid`` is the id it was
    looked up by (``None`` when scanning: then the sealed id, if any, opens
    ``next_sid``)."""
    if not isinstance(raw, bytes) or len(raw) < _HEADER.size:
        raise RecordError("too short to be a session record")
    magic, version, record_fmt, ttl, sealed_len = _HEADER.unpack_from(raw)
    if magic != MAGIC or version != RECORD_VERSION:
        raise RecordError("not a session record of this format version")
    if record_fmt not in (FORMAT_JSON, FORMAT_CODEC) or fmt not in (None, record_fmt):
        raise RecordError(f"record format {record_fmt!r} where {fmt!r} is expected")
    body_start = _HEADER.size + sealed_len
    if len(raw) < body_start:
        raise RecordError("truncated record")
    sealed_sid = raw[_HEADER.size : body_start]
    payload = raw[body_start:]
    stored_sid: str | None = None
    if sealed_sid and sid_key is not None:
        opened = unseal(sid_key, sealed_sid)
        if opened is not None:
            stored_sid = opened.decode("ascii", "replace")
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
    opener_sid = sid if sid is not None else stored_sid
    if opener_sid is not None:
        data = open_next_sid(data, opener_sid)
    else:
        data.pop("next_sid", None)
    return Record(data=data, ttl=ttl, sid=stored_sid, fmt=record_fmt)
