"""Where Odoo HTTP sessions live in Redis, and how they are read back
with a bound on what Redis sends.

Odoo 18/19 address sessions by their first 42 characters (the *identifier*
kept in ``res.device.log``): device revocation deletes every session of an
identifier, the autovacuum cron asks which identifiers still have a session.
So all sessions sharing an identifier live in one Redis hash::

    key   = <prefix> + sha256(identifier).hexdigest()
    field = sha256(sid).hexdigest()
    value = a record (:mod:`.records`)

Deleting an identifier is one ``DEL``, checking identifiers is pipelined
``EXISTS``: no ``KEYS``/``SCAN``. A session id never appears in a key name or
field; the hashes cannot be turned back into ids (42 base64 characters carry
252 bits, Odoo 17's 40 hex characters 160 bits). Odoo 17 has no identifier
concept; its 40-character ids are their own identifier.

A record is at most :data:`MAX_RECORD_BYTES`. The store reads a record
only after Redis said it is no longer than that (:data:`LOAD_SCRIPT`, one
round trip), so a planted giant costs a reader nothing.
"""

from __future__ import annotations

import hashlib
import re

from ormcache_redis.config import SESSION_PREFIX
from ormcache_redis.sessions.record_errors import RecordError, RecordTooLarge

# The session options' defaults live with their rules (src/settings/).
DEFAULT_PREFIX: str = SESSION_PREFIX

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
