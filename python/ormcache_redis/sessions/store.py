"""Odoo's session store interface on Redis, without Odoo.

``RedisSessionStore`` speaks what Odoo 17, 18 and 19 call on
``odoo.http.root.session_store``, with each version's semantics
(:mod:`.versions`); the Redis layout and record format are in
:mod:`.redis_layout` and :mod:`.records`. The addon
(``odoo_addon/ormcache_redis/session_store.py``) installs it on Odoo. Needs
werkzeug (Odoo has it): a Redis outage is an HTTP 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol

from ormcache_redis._native import (
    Codec,
    EncodeError,
    RedisClient,
    RedisReplyError,
    RedisUnavailable,
)
from ormcache_redis.sessions.record_errors import (
    RecordError,
    RecordForged,
    RecordKeyMissing,
    RecordTooLarge,
)
from ormcache_redis.sessions.record_keys import SecretForDatabase, sid_key
from ormcache_redis.sessions.records import decode_record, encode_record
from ormcache_redis.sessions.redis_layout import (
    DEFAULT_PREFIX,
    IDENTIFIER_LENGTH,
    IDENTIFIER_PATTERN,
    address_of,
    hash_key,
    load_command,
    loaded_record,
)
from ormcache_redis.sessions.refusals import RefusedRecords
from ormcache_redis.sessions.session_content import (
    DEFAULT_ANONYMOUS_TTL,
    DEFAULT_SESSION_LIFETIME,
    PUBLIC_RECORD_KEYS,
    carries_nothing,
    record_ttl,
)
from ormcache_redis.sessions.store_errors import (
    SessionStoreUnavailable,
    SessionValueError,
    too_large_message,
    unencodable_message,
)
from ormcache_redis.sessions.versions import rules_for

_logger = logging.getLogger(__name__)

SESSION_DELETION_TIMER = 120
"""Odoo 19's grace period for requests still carrying a soft-rotated-away id."""
MISSING_IDENTIFIERS_BATCH = 500
"""EXISTS per round trip in get_missing_session_identifiers (the autovacuum
cron sends up to 100 000 identifiers at once)."""


class SessionLike(Protocol):
    """What the store needs from Odoo's ``odoo.http.Session``."""

    sid: str
    is_new: bool
    should_rotate: bool

    def __getitem__(self, key: str) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def keys(self) -> Any: ...


class RedisSessionStore:
    """Odoo's session store interface on Redis (see :mod:`.redis_layout` for the layout).

    ``odoo_major`` selects the version's rules (:func:`.versions.rules_for`):
    id format, record format, soft rotation, identifier checks.

    ``lifetime()`` returns the inactivity lifetime of authenticated sessions
    (Odoo's ``sessions.max_inactivity_seconds``); anonymous ones get
    ``min(anonymous_ttl, lifetime())``. ``compute_session_token(session, env)``
    is Odoo's ``security.compute_session_token``, used on rotation.

    ``record_secret_for(db_name)`` is the secret that authenticates the
    records of sessions of ``db_name`` (``None``: sessions without a
    database), or None when there is none (the addon passes
    ``DeploymentSecrets.for_database``). A record whose tag does not verify
    is a new session, counted in ``refused`` and reported in the log.
    ``secret`` is ``session_store_secret``: it seals session ids into the
    records, for ``ormcache-redis-sessions to-files``.
    """

    renew_missing = True  # like Odoo's store: a missing session is a new one

    def __init__(
        self,
        client: RedisClient,
        *,
        session_class: Callable[..., SessionLike],
        odoo_major: int,
        compute_session_token: Callable[[SessionLike, Any], str],
        record_secret_for: SecretForDatabase,
        lifetime: Callable[[], int] = lambda: DEFAULT_SESSION_LIFETIME,
        prefix: str = DEFAULT_PREFIX,
        anonymous_ttl: int = DEFAULT_ANONYMOUS_TTL,
        codec: Codec | None = None,
        secret: str | None = None,
        deletion_timer: int = SESSION_DELETION_TIMER,
    ) -> None:
        self.rules = rules_for(odoo_major)
        self.client = client
        self.session_class = session_class
        self.prefix = prefix
        self.anonymous_ttl = anonymous_ttl
        self.deletion_timer = deletion_timer
        self._compute_session_token = compute_session_token
        self._record_secret_for = record_secret_for
        self.refused = RefusedRecords()
        # Sessions written to Redis by this process (published as metrics).
        self.saved = 0
        self._saved_lock = threading.Lock()
        self._lifetime = lifetime
        # JSON records ignore the codec.
        self._codec = codec or Codec()
        self._sid_key = sid_key(secret) if secret else None

    def __repr__(self) -> str:
        return f"<RedisSessionStore {self.client.address} prefix={self.prefix!r}>"

    # ------------------------------------------------------------------ ids

    def generate_key(self, salt: object = None) -> str:
        return self.rules.new_sid()

    def is_valid_key(self, key: object) -> bool:
        return self.rules.is_valid_sid(key)

    def _checked_sid(self, sid: object) -> str:
        if not self.is_valid_key(sid):
            # Odoo says ValueError too; the id itself stays out of the message.
            raise ValueError("Invalid session id")
        assert isinstance(sid, str)
        return sid

    def _address(self, sid: str) -> tuple[str, str]:
        return address_of(self.prefix, sid)

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _redis(self, action: str) -> Iterator[None]:
        try:
            yield
        except RedisUnavailable as exc:
            raise SessionStoreUnavailable(
                f"HTTP sessions are unavailable: Redis at {self.client.address} could not "
                f"{action} ({exc}). Retry in a moment."
            ) from None
        except RedisReplyError as exc:
            raise SessionStoreUnavailable(
                f"HTTP sessions are unavailable: Redis at {self.client.address} refused to "
                f"{action} ({exc})."
            ) from None

    # ------------------------------------------------------------------ read

    def new(self) -> SessionLike:
        return self.session_class({}, self.generate_key(), True)

    def get(self, sid: str) -> SessionLike:
        """The stored session, or a new one (new id) when there is none or it
        cannot be read. Raises ``SessionStoreUnavailable`` when Redis is down."""
        if not self.is_valid_key(sid):
            return self.new()
        key, field = self._address(sid)
        try:
            remaining_ms, raw = self._load(key, field)
        except RecordTooLarge:
            # Refused on its length in Redis: not one byte of it was sent.
            self.refused.count("oversized")
            return self.new()
        except RecordError as exc:
            _logger.debug("Unreadable session record in Redis: %s.", exc)
            self.refused.count("unreadable")
            return self.new()
        if raw is None:
            return self.new()
        try:
            record = decode_record(
                raw,
                key=key,
                field=field,
                sid=sid,
                fmt=self.rules.record_format,
                secret_for=self._record_secret_for,
                codec=self._codec,
                sealing_key=self._sid_key,
            )
        except RecordForged:
            self.refused.count("forged")
            return self.new()
        except RecordTooLarge:
            self.refused.count("oversized")
            return self.new()
        except RecordKeyMissing:
            self.refused.count("no_key")
            return self.new()
        except RecordError as exc:
            _logger.debug("Unreadable session record in Redis: %s.", exc)
            self.refused.count("unreadable")
            return self.new()
        if record.stripped:
            # Only the public key covered it, yet it holds more than an
            # anonymous session may: never written by a store (encode_record
            # refuses to). What it may hold is kept; it still names nobody.
            self.refused.count("forged")
        self._slide_expiry(key, record.data, record.ttl, remaining_ms)
        return self.session_class(record.data, sid, False)

    def _load(self, key: str, field: str) -> tuple[object, bytes | None]:
        """(PTTL of the hash, the record or None), in one round trip; the
        record is sent only when Redis found it at most MAX_RECORD_BYTES
        long (``LOAD_SCRIPT``), else RecordTooLarge. A key that is not a
        hash, or a reply of another shape, is a RecordError."""
        with self._redis("read a session"):
            try:
                reply = self.client.execute(*load_command(key, field))
            except RedisReplyError as exc:
                if "WRONGTYPE" not in str(exc):
                    raise
                # Something else lives under our key: no session.
                raise RecordError("the session key holds another type than a hash") from None
        return loaded_record(reply)

    def _slide_expiry(self, key: str, data: dict[str, Any], ttl: int, remaining_ms: object) -> None:
        """Push the expiry back on reads too: Odoo only writes a session when
        it changed, and an active user must not expire. At most once per
        ``ttl / 4`` (max one hour) per session, queued off the request path,
        and only ever lengthening (a sibling of the same identifier keeps its
        own longer expiry)."""
        if "deletion_time" in data or not isinstance(remaining_ms, int) or remaining_ms < 0:
            return
        ttl_ms = ttl * 1000
        slack_ms = min(3600 * 1000, ttl_ms // 4)
        if remaining_ms < ttl_ms - slack_ms:
            self.client.enqueue("PEXPIRE", key, ttl_ms)

    # ------------------------------------------------------------------ write

    def _ttl_for(self, data: MutableMapping[str, Any] | dict[str, Any]) -> int:
        try:
            lifetime = int(self._lifetime())
        except Exception:
            _logger.warning("Could not read the session lifetime; using 7 days.", exc_info=True)
            lifetime = DEFAULT_SESSION_LIFETIME
        return record_ttl(data, lifetime, self.anonymous_ttl)

    def _encode(self, sid: str, data: dict[str, Any], ttl: int) -> bytes:
        """The record; a session above MAX_RECORD_BYTES is a SessionValueError
        (naming its biggest keys): written, it would read as no session."""
        try:
            return encode_record(
                data,
                sid,
                prefix=self.prefix,
                fmt=self.rules.record_format,
                ttl=ttl,
                secret_for=self._record_secret_for,
                codec=self._codec,
                sealing_key=self._sid_key,
            )
        except EncodeError:
            raise SessionValueError(unencodable_message(self._codec, data)) from None
        except RecordTooLarge as exc:
            raise SessionValueError(too_large_message(self._codec, data, exc.size)) from None
        except RecordKeyMissing as exc:
            if exc.db is None:
                raise SessionStoreUnavailable(
                    "This session has no database and holds more than an anonymous session "
                    f"without a secret may ({', '.join(sorted(PUBLIC_RECORD_KEYS))}): it "
                    "cannot be stored unless ormcache_redis_secret is set."
                ) from None
            raise SessionStoreUnavailable(
                f"HTTP sessions of database {exc.db!r} cannot be stored: no secret is known "
                "to authenticate them (its database.secret cannot be read; "
                "ormcache_redis_secret would give one secret to every database)."
            ) from None
        except (TypeError, ValueError) as exc:
            raise SessionValueError(
                f"This session holds a value that is not JSON ({exc}); Odoo "
                f"{self.rules.major} sessions must be JSON-clean."
            ) from None

    def _write_commands(self, sid: str, data: dict[str, Any]) -> list[tuple[Any, ...]]:
        key, field = self._address(sid)
        ttl = self._ttl_for(data)
        return [("HSET", key, field, self._encode(sid, data, ttl)), ("PEXPIRE", key, ttl * 1000)]

    def _transaction(self, commands: list[tuple[Any, ...]], action: str) -> None:
        # MULTI/EXEC: the record and its expiry land together or not at all,
        # so no session can ever be left without a TTL.
        if not commands:
            return
        with self._redis(action):
            for part in self._single_slot_parts(commands):
                self.client.pipeline(part, transaction=True)

    def _single_slot_parts(self, commands: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
        """The commands as one transaction, except on a Redis Cluster when
        they touch several sessions' hashes (a hard rotation: old and new
        identifier), which lie in different slots: there each hash gets its
        own transaction, writes before deletions, so that the session
        always exists under one of its ids."""
        if getattr(self.client, "topology", "single") != "cluster":
            return [commands]
        by_key: dict[Any, list[tuple[Any, ...]]] = {}
        for command in commands:
            by_key.setdefault(command[1], []).append(command)
        if len(by_key) == 1:
            return [commands]
        return sorted(
            by_key.values(),
            key=lambda part: all(command[0] in ("HDEL", "DEL") for command in part),
        )

    def save(self, session: SessionLike) -> None:
        sid = self._checked_sid(session.sid)
        data = dict(session)
        if carries_nothing(data):
            if not session.is_new:
                key, field = self._address(sid)
                with self._redis("delete a session"):
                    self.client.execute("HDEL", key, field)
            return
        self._transaction(self._write_commands(sid, data), "save a session")
        with self._saved_lock:
            self.saved += 1

    def save_if_modified(self, session: SessionLike) -> None:
        if getattr(session, "is_dirty", False) or getattr(session, "should_save", False):
            self.save(session)

    def delete(self, session: SessionLike) -> None:
        key, field = self._address(self._checked_sid(session.sid))
        with self._redis("delete a session"):
            self.client.execute("HDEL", key, field)

    def rotate(self, session: SessionLike, env: Any, soft: bool = False) -> None:
        """Give the session a new id (Odoo: on login, logout, and in 19 every
        3 hours). Hard rotation replaces the id; 19's soft rotation keeps the
        42-character identifier, and leaves ``next_sid`` and ``deletion_time``
        on the old session so concurrent requests with the old cookie follow
        the new one for ``deletion_timer`` seconds. Every variant is one
        MULTI/EXEC: no instant where neither the old nor the new session exists.
        """
        commands: list[tuple[Any, ...]] = []
        if soft and self.rules.soft_rotation:
            old_sid = self._checked_sid(session.sid)
            recent = self.get(old_sid)
            next_sid = recent.get("next_sid")
            if (
                self.is_valid_key(next_sid)
                and next_sid[:IDENTIFIER_LENGTH] == old_sid[:IDENTIFIER_LENGTH]
            ):
                # A concurrent request already rotated: follow it. Odoo then
                # sends the new id as cookie, without saving.
                session.sid = next_sid
                return
            next_sid = old_sid[:IDENTIFIER_LENGTH] + self.generate_key()[IDENTIFIER_LENGTH:]
            rotated_away = dict(session)
            rotated_away["next_sid"] = next_sid
            rotated_away["deletion_time"] = time.time() + self.deletion_timer
            commands += self._write_commands(old_sid, rotated_away)
            session["gc_previous_sessions"] = True
            session.sid = next_sid
        else:
            key, field = self._address(self._checked_sid(session.sid))
            commands.append(("HDEL", key, field))
            session.sid = self.generate_key()
        if session.get("uid"):
            if self.rules.rotation_needs_env:
                assert env, "saving this session requires an environment"
            if env:
                session["session_token"] = self._compute_session_token(session, env)
        session.should_rotate = False
        if self.rules.stamps_create_time:
            session["create_time"] = time.time()
        data = dict(session)
        if not carries_nothing(data):
            commands += self._write_commands(session.sid, data)
        self._transaction(commands, "rotate a session")

    def delete_old_sessions(self, session: SessionLike) -> None:
        """Odoo 19: once ``deletion_timer`` has passed since a soft rotation,
        drop the rotated-away sessions of this identifier. Odoo deletes the
        identifier then saves the session again; here both are one
        transaction, so a concurrent request never finds the session gone."""
        if "gc_previous_sessions" not in session:
            return
        if session.get("create_time", 0) + self.deletion_timer >= time.time():
            return
        sid = self._checked_sid(session.sid)
        del session["gc_previous_sessions"]
        key, _field = self._address(sid)
        self._transaction(
            [("DEL", key), *self._write_commands(sid, dict(session))],
            "clean up rotated sessions",
        )

    # ------------------------------------------------------------------ identifiers

    def delete_from_identifiers(self, identifiers: Iterable[str]) -> None:
        """Delete every session whose id starts with one of the 42-character
        identifiers (device revocation): one DEL per identifier, pipelined."""
        keys = [hash_key(self.prefix, i) for i in self.rules.valid_identifiers(identifiers)]
        for start in range(0, len(keys), MISSING_IDENTIFIERS_BATCH):
            batch = keys[start : start + MISSING_IDENTIFIERS_BATCH]
            with self._redis("delete sessions"):
                self.client.pipeline([("DEL", key) for key in batch])

    def get_missing_session_identifiers(self, identifiers: Iterable[str]) -> set[str]:
        """The identifiers without any stored session (the autovacuum cron marks
        their devices revoked). Raises when Redis is down rather than
        answering "all missing", which would revoke every device."""
        wanted = set(identifiers)
        valid = sorted(
            i for i in wanted if isinstance(i, str) and IDENTIFIER_PATTERN.match(i) is not None
        )
        missing = wanted - set(valid)  # a malformed identifier has no session
        for start in range(0, len(valid), MISSING_IDENTIFIERS_BATCH):
            batch = valid[start : start + MISSING_IDENTIFIERS_BATCH]
            with self._redis("check sessions"):
                replies = self.client.pipeline(
                    [("EXISTS", hash_key(self.prefix, i)) for i in batch]
                )
            missing.update(i for i, exists in zip(batch, replies, strict=True) if not exists)
        return missing

    def vacuum(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: Redis expires sessions itself (Odoo's cron calls
        this with ``max_lifetime=``)."""
