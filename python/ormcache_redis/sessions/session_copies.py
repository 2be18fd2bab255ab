"""Copying Odoo HTTP sessions between the filesystem store and Redis
(``to_redis``, ``to_files``), and the :class:`Report` of what was copied
or skipped, and why.

The copy is what the Redis store itself writes and reads (same layout,
same records), and keeps each session's remaining lifetime; reads from
Redis are bounded as the store's are. ``to_files`` needs the session ids,
which Redis holds only sealed under ``session_store_secret``.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ormcache_redis._native import Codec, EncodeError, RedisClient, RedisReplyError
from ormcache_redis.config import ConfigError
from ormcache_redis.sessions.files import read_session_file, session_files, write_session_file
from ormcache_redis.sessions.record_errors import (
    RecordError,
    RecordForged,
    RecordKeyMissing,
    RecordTooLarge,
)
from ormcache_redis.sessions.record_keys import sid_key
from ormcache_redis.sessions.records import decode_record, encode_record
from ormcache_redis.sessions.redis_layout import (
    FIELD_LENGTH,
    MAX_RECORD_BYTES,
    MAX_SESSIONS_PER_IDENTIFIER,
    address_of,
    list_command,
    listed_fields,
    load_command,
    loaded_record,
)
from ormcache_redis.sessions.session_content import carries_nothing, record_ttl
from ormcache_redis.sessions.versions import record_format_of

BATCH = 200
SCAN_COUNT = 500
"""Keys per SCAN step; each is the prefix and 64 hex digits (MATCH), so a reply stays small."""
LOADS_PER_ROUND_TRIP = 8
"""Records read in one round trip by to-files: at most 8 MiB (MAX_RECORD_BYTES each)."""


@dataclass
class Report:
    copied: int = 0
    existing: int = 0
    expired: int = 0
    empty: int = 0
    unreadable: int = 0
    oversized: int = 0
    forged: int = 0
    no_key: int = 0
    no_id: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.unreadable or self.oversized or self.forged or self.no_key)

    def line(self, direction: str, dry_run: bool) -> str:
        verb = "would copy" if dry_run else "copied"
        parts = [
            f"{verb} {self.copied}",
            f"already there {self.existing}",
            f"expired {self.expired}",
            f"empty anonymous {self.empty}",
            f"unreadable {self.unreadable}",
            f"too large {self.oversized}",
            f"without a known database secret {self.no_key}",
        ]
        if direction == "to-files":
            parts.append(f"not authentic {self.forged}")
        if direction == "to-files":
            parts.append(f"without a recoverable id {self.no_id}")
        return f"{direction}: " + ", ".join(parts) + "."


def to_redis(args: argparse.Namespace, client: RedisClient) -> Report:
    report = Report()
    codec = Codec()
    sealing_key = sid_key(args.session_store_secret) if args.session_store_secret else None
    now = time.time()
    pending: list[tuple[str, Sequence[Any]]] = []

    def flush() -> None:
        if not pending:
            return
        exists = client.pipeline([("HEXISTS", key, fld) for key, (fld, *_r) in pending])
        commands: list[tuple[Any, ...]] = []
        for (key, (fld, record, ttl_ms)), present in zip(pending, exists, strict=True):
            if present and not args.overwrite:
                report.existing += 1
                continue
            report.copied += 1
            commands += [("HSET", key, fld, record), ("PEXPIRE", key, ttl_ms)]
        if commands and not args.dry_run:
            # PEXPIRE only ever follows its HSET in the same MULTI/EXEC; on
            # a Redis Cluster one per session hash (a transaction stays in
            # one slot).
            parts = [commands]
            if client.topology == "cluster":
                parts = [commands[i : i + 2] for i in range(0, len(commands), 2)]
            for part in parts:
                client.pipeline(part, transaction=True)
        pending.clear()

    for sid, path in session_files(args.session_dir):
        fmt = record_format_of(sid)
        assert fmt is not None
        try:
            data = read_session_file(path, fmt)
            age = max(0.0, now - path.stat().st_mtime)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            report.unreadable += 1
            report.problems.append(f"{path.parent.name}/…: {type(exc).__name__}: {exc}")
            continue
        if carries_nothing(data):
            report.empty += 1
            continue
        ttl = record_ttl(data, args.lifetime, args.anonymous_ttl)
        remaining = min(ttl, args.lifetime - age)
        if remaining <= 0:
            report.expired += 1
            continue
        try:
            record = encode_record(
                data,
                sid,
                prefix=args.prefix,
                fmt=fmt,
                ttl=ttl,
                secret_for=args.secrets.for_database,
                codec=codec,
                sealing_key=sealing_key,
            )
        except RecordKeyMissing as exc:
            report.no_key += 1
            report.problems.append(f"{path.parent.name}/…: {exc}")
            continue
        except RecordTooLarge as exc:
            report.oversized += 1
            report.problems.append(f"{path.parent.name}/…: {exc}")
            continue
        except (EncodeError, TypeError, ValueError) as exc:
            report.unreadable += 1
            report.problems.append(f"{path.parent.name}/…: cannot be stored safely: {exc}")
            continue
        key, fld = address_of(args.prefix, sid)
        pending.append((key, (fld, record, max(1, int(remaining * 1000)))))
        if len(pending) >= BATCH:
            flush()
    flush()
    return report


def _scan(client: RedisClient, url: str, prefix: str) -> Iterator[str]:
    """The session hashes' keys under ``prefix``. A one-off migration may
    SCAN; the store itself never does. Only keys of a session hash's shape
    (the prefix and 64 hex digits) match, so whatever else was written under
    the prefix (a key name of any length) never reaches this process."""
    escaped = "".join(f"\\{c}" if c in "\\*?[]^" else c for c in prefix)
    pattern = escaped + "[0-9a-f]" * FIELD_LENGTH
    for server in _servers_to_scan(client, url):
        cursor: bytes | str | int = 0
        while True:
            reply = server.execute("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
                raise RedisReplyError("SCAN answered something else than a cursor and keys")
            cursor, keys = reply
            for key in keys:
                name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                if len(name) == len(prefix) + FIELD_LENGTH and name.startswith(prefix):
                    yield name
            if int(cursor) == 0:
                break


def _servers_to_scan(client: RedisClient, url: str) -> list[RedisClient]:
    """The client itself, or one client per master of a Redis Cluster: SCAN
    walks the keys of the one node it reaches. The masters are reached with
    the URL's credentials and options."""
    if client.topology != "cluster":
        return [client]
    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    authority = rest.partition("/")[0]
    credentials = authority.rpartition("@")[0]
    base = "rediss" if scheme.startswith("rediss") else "redis"
    masters = set()
    for _start, _end, (host, port, *_node), *_replicas in client.execute("CLUSTER", "SLOTS"):
        name = host.decode() if isinstance(host, bytes) else host
        masters.add((f"[{name}]" if ":" in name else name, int(port)))
    return [
        RedisClient(
            f"{base}://{credentials + '@' if credentials else ''}{host}:{port}/0"
            + (f"?{query}" if query else ""),
            connect_timeout=5.0,
            socket_timeout=10.0,
        )
        for host, port in sorted(masters)
    ]


def to_files(args: argparse.Namespace, client: RedisClient) -> Report:
    report = Report()
    if not args.session_store_secret:
        raise ConfigError(
            "to-files needs --session-store-secret (or SESSION_STORE_SECRET): the "
            "session_store_secret the store ran with. Without it Redis holds no session id "
            "to name the files by."
        )
    codec = Codec()
    sealing_key = sid_key(args.session_store_secret)
    args.session_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for key_name in _scan(client, args.url, args.prefix):
        # Bounded reads only: the field names first (at most
        # MAX_SESSIONS_PER_IDENTIFIER, each of a field's length), then each
        # record only once Redis found it at most MAX_RECORD_BYTES long.
        try:
            _ttl, count, fields = listed_fields(client.execute(*list_command(key_name)))
        except (RedisReplyError, RecordError):
            report.unreadable += 1  # not a hash: something else uses the prefix
            report.problems.append(f"{key_name!r} is not a session hash")
            continue
        if count > MAX_SESSIONS_PER_IDENTIFIER:
            report.unreadable += count
            report.problems.append(
                f"{key_name!r} holds {count} records, more than the "
                f"{MAX_SESSIONS_PER_IDENTIFIER} of one identifier a store writes: skipped"
            )
            continue
        if len(fields) < count:
            report.unreadable += count - len(fields)
            report.problems.append(f"{key_name!r} holds fields that are not a session's")
        for start in range(0, len(fields), LOADS_PER_ROUND_TRIP):
            batch = fields[start : start + LOADS_PER_ROUND_TRIP]
            try:
                replies = client.pipeline([load_command(key_name, fld) for fld in batch])
            except RedisReplyError:
                report.unreadable += len(batch)  # replaced by another type meanwhile
                report.problems.append(f"{key_name!r} is not a session hash")
                break
            for field_name, reply in zip(batch, replies, strict=True):
                _to_file(args, report, codec, sealing_key, now, key_name, field_name, reply)
    return report


def _to_file(
    args: argparse.Namespace,
    report: Report,
    codec: Codec,
    sealing_key: bytes,
    now: float,
    key_name: str,
    field_name: str,
    reply: object,
) -> None:
    """Writes the session file of one record read by ``load_command``."""
    try:
        remaining_ms, raw = loaded_record(reply)
        if raw is None:
            return  # deleted or expired since it was listed
        record = decode_record(
            raw,
            key=key_name,
            field=field_name,
            sid=None,
            fmt=None,
            secret_for=args.secrets.for_database,
            codec=codec,
            sealing_key=sealing_key,
        )
    except RecordTooLarge as exc:
        report.oversized += 1
        report.problems.append(f"a record under {key_name!r}: {exc}, above {MAX_RECORD_BYTES}")
        return
    except RecordForged as exc:
        report.forged += 1
        report.problems.append(f"a record under {key_name!r}: {exc}")
        return
    except RecordKeyMissing as exc:
        report.no_key += 1
        report.problems.append(f"a record under {key_name!r}: {exc}")
        return
    except RecordError as exc:
        report.unreadable += 1
        report.problems.append(f"a record under {key_name!r}: {exc}")
        return
    sid = record.sid
    if sid is None or record_format_of(sid) != record.fmt:
        report.no_id += 1
        return
    if address_of(args.prefix, sid) != (key_name, field_name):
        # The tag covers the address and the sealed id: only a writer
        # holding the keys could file a record under another id.
        report.forged += 1
        report.problems.append(f"a record under {key_name!r} is filed under another id")
        return
    if (args.session_dir / sid[:2] / sid).exists() and not args.overwrite:
        report.existing += 1
        return
    # Backdate the file so Odoo's vacuum removes it about when Redis would have.
    left = remaining_ms / 1000 if isinstance(remaining_ms, int) and remaining_ms > 0 else 0
    mtime = now - max(0.0, record.ttl - left) if left else now
    if not args.dry_run:
        try:
            write_session_file(args.session_dir, sid, record.data, mtime)
        except (OSError, TypeError, ValueError, pickle.PicklingError) as exc:
            report.unreadable += 1
            report.problems.append(f"a session cannot be written as a file: {exc}")
            return
    report.copied += 1
