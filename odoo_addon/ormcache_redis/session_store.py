"""Odoo HTTP sessions in Redis, shared by every worker and every server.

``install_session_store(options)`` is called by the addon's ``post_load`` hook
(the addon is a server-wide module, so this runs at start-up, before the first
request and before workers fork). With ``session_store = redis`` it replaces
``odoo.http.root.session_store``; otherwise Odoo's filesystem store stays.

The store speaks the interface Odoo 17, 18 and 19 call on
``root.session_store`` with each version's semantics (see
``RedisSessionStore``). Redis layout and record format are in
``ormcache_redis.session_records`` (shared with the migration command).

Nothing at module level imports Odoo: the store is unit-tested without it.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from werkzeug.exceptions import ServiceUnavailable

from ormcache_redis._native import (
    Codec,
    EncodeError,
    RedisClient,
    RedisReplyError,
    RedisUnavailable,
)
from ormcache_redis.config import (
    ConfigError,
    OptionSource,
    parse_redis_url,
    parse_seconds,
    redact_url,
)
from ormcache_redis.server_check import eviction_warning
from ormcache_redis.session_records import (
    DEFAULT_ANONYMOUS_TTL,
    DEFAULT_PREFIX,
    DEFAULT_SESSION_LIFETIME,
    FORMAT_CODEC,
    FORMAT_JSON,
    IDENTIFIER_LENGTH,
    IDENTIFIER_PATTERN,
    SID_PATTERN_B64_84,
    SID_PATTERN_HEX40,
    RecordError,
    RecordForged,
    RecordKeyMissing,
    SecretForDatabase,
    address_of,
    carries_nothing,
    decode_record,
    encode_record,
    hash_key,
    record_ttl,
    sid_key,
)

_logger = logging.getLogger(__name__)

SUPPORTED_ODOO_VERSIONS = (17, 18, 19)
DEFAULT_TIMEOUT = 1.0
SESSION_DELETION_TIMER = 120
"""Odoo 19's grace period for requests still carrying a soft-rotated-away id."""
RETRY_AFTER_SECONDS = 5
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


class SessionStoreUnavailable(ServiceUnavailable):
    """Redis could not serve a session: the request answers 503.

    Odoo's ``Application.__call__`` logs an exception carrying ``loglevel``
    as one line (``exc_info`` None: no traceback) and then answers with
    ``exc.error_response``. Setting that attribute ourselves also stops
    ``_serve_db`` from replacing it with its own (for JSON routes, a 200
    with an error body). It is an ``HTTPException`` so ``ir.http._authenticate``
    re-raises it instead of turning it into ``AccessDenied``, and the store
    raises it instead of returning a fresh session: a Redis outage must never
    look like a logout.
    """

    loglevel = logging.ERROR
    exc_info = None

    def __init__(self, description: str) -> None:
        super().__init__(description=description, retry_after=RETRY_AFTER_SECONDS)
        self.error_response = self


class SessionValueError(TypeError):
    """A session value the safe codec cannot store (Odoo 17 allowed any picklable value)."""


REFUSED_REPORT_INTERVAL = 60.0
"""Seconds between two warnings about refused session records, per process."""


class RefusedRecords:
    """Counts the session records a store refused, and says so in the log at
    most once per ``interval`` seconds (a flood of forged records must not
    flood the log), with what the refusals likely mean."""

    KINDS = ("forged", "no_key", "unreadable")

    def __init__(self, interval: float = REFUSED_REPORT_INTERVAL) -> None:
        self.interval = interval
        self.total = dict.fromkeys(self.KINDS, 0)
        self._unreported = dict.fromkeys(self.KINDS, 0)
        self._reported_at: float | None = None
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            self.total[kind] += 1
            self._unreported[kind] += 1
            now = time.monotonic()
            if self._reported_at is not None and now - self._reported_at < self.interval:
                return
            self._reported_at = now
            unreported, self._unreported = self._unreported, dict.fromkeys(self.KINDS, 0)
        _logger.warning("%s", self.describe(unreported))

    @staticmethod
    def describe(counts: dict[str, int]) -> str:
        parts, meanings = [], []
        if counts["forged"]:
            parts.append(f"{counts['forged']} whose authentication tag does not verify")
            meanings.append(
                "someone wrote to Redis, or the servers sharing it run with different "
                "secrets (a copy of the database with another database.secret, or "
                "ormcache_redis_secret set on some servers only)"
            )
        if counts["no_key"]:
            parts.append(f"{counts['no_key']} of a database whose secret cannot be read")
            meanings.append("a dropped database, or database.secret cannot be read")
        if counts["unreadable"]:
            parts.append(f"{counts['unreadable']} unreadable")
            meanings.append(
                "garbage under a session key, or records written before the upgrade to "
                "authenticated records (their users log in once more)"
            )
        return (
            "Refused session records from Redis (each request got a new session): "
            + ", ".join(parts)
            + ". Likely: "
            + "; ".join(meanings)
            + "."
        )


@dataclass(frozen=True)
class SessionStoreSettings:
    url: str
    prefix: str = DEFAULT_PREFIX
    anonymous_ttl: int = DEFAULT_ANONYMOUS_TTL
    timeout: float = DEFAULT_TIMEOUT
    secret: str | None = None

    @classmethod
    def from_options(cls, options: OptionSource) -> SessionStoreSettings | None:
        """The settings when ``session_store = redis``, ``None`` for Odoo's
        filesystem store; raises ``ConfigError`` (one sentence) on bad values."""
        kind = (options.raw("session_store") or "filesystem").lower()
        if kind in ("filesystem", "file", "files", "fs"):
            return None
        if kind != "redis":
            raise ConfigError(f"session_store must be 'redis' or 'filesystem', got {kind!r}.")
        url = parse_redis_url("session_store_url", options.raw("session_store_url"))
        if url is None:
            raise ConfigError(
                "session_store = redis needs session_store_url "
                "(e.g. redis://localhost:6379/0), in odoo.conf or SESSION_STORE_URL."
            )
        prefix = options.raw("session_store_prefix") or DEFAULT_PREFIX
        if any(ch.isspace() for ch in prefix):
            raise ConfigError(f"session_store_prefix must not contain spaces, got {prefix!r}.")
        anonymous_ttl = parse_seconds(
            "session_store_anonymous_ttl",
            options.raw("session_store_anonymous_ttl"),
            DEFAULT_ANONYMOUS_TTL,
            minimum=0,
        )
        timeout = parse_seconds(
            "session_store_timeout",
            options.raw("session_store_timeout"),
            DEFAULT_TIMEOUT,
            minimum=0,
            maximum=60,
        )
        return cls(
            url=url,
            prefix=prefix,
            anonymous_ttl=max(1, round(anonymous_ttl)),
            timeout=timeout,
            secret=options.raw("session_store_secret"),
        )


class RedisSessionStore:
    """Odoo's session store interface on Redis (see ``session_records`` for the layout).

    ``odoo_major`` selects the version's semantics: 17 uses 40-hex ids and the
    engine's codec (17 sessions may hold tuples, sets, dates...), 18/19 use
    84-character ids and JSON; 19 adds soft rotation and raises on malformed
    identifiers where 18 skips them.

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
        if odoo_major not in SUPPORTED_ODOO_VERSIONS:
            raise ConfigError(
                f"The Redis session store supports Odoo 17.0, 18.0 and 19.0, not {odoo_major}."
            )
        self.client = client
        self.session_class = session_class
        self.odoo_major = odoo_major
        self.prefix = prefix
        self.anonymous_ttl = anonymous_ttl
        self.deletion_timer = deletion_timer
        self._compute_session_token = compute_session_token
        self._record_secret_for = record_secret_for
        self.refused = RefusedRecords()
        self._lifetime = lifetime
        self._format = FORMAT_CODEC if odoo_major == 17 else FORMAT_JSON
        self._codec = (codec or Codec()) if odoo_major == 17 else None
        self._sid_key = sid_key(secret) if secret else None
        self._sid_pattern = SID_PATTERN_HEX40 if odoo_major == 17 else SID_PATTERN_B64_84

    def __repr__(self) -> str:
        return f"<RedisSessionStore {self.client.address} prefix={self.prefix!r}>"

    # ------------------------------------------------------------------ ids

    def generate_key(self, salt: object = None) -> str:
        if self.odoo_major == 17:
            return secrets.token_hex(20)  # 40 hex digits, werkzeug's format
        # 63 random bytes: 84 urlsafe-base64 characters without padding, as Odoo 18+.
        return base64.urlsafe_b64encode(secrets.token_bytes(63)).decode()

    def is_valid_key(self, key: object) -> bool:
        return isinstance(key, str) and self._sid_pattern.match(key) is not None

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
        with self._redis("read a session"):
            try:
                raw, remaining_ms = self.client.pipeline([("HGET", key, field), ("PTTL", key)])
            except RedisReplyError:
                # WRONGTYPE: something else lives under our key; no session.
                _logger.warning("A non-session value is stored under %s; ignoring it.", key)
                return self.new()
        if raw is None:
            return self.new()
        try:
            record = decode_record(
                raw,
                key=key,
                field=field,
                sid=sid,
                fmt=self._format,
                secret_for=self._record_secret_for,
                codec=self._codec,
                sealing_key=self._sid_key,
            )
        except RecordForged:
            self.refused.count("forged")
            return self.new()
        except RecordKeyMissing:
            self.refused.count("no_key")
            return self.new()
        except RecordError as exc:
            _logger.debug("Unreadable session record in Redis: %s.", exc)
            self.refused.count("unreadable")
            return self.new()
        if record.stripped:
            # Only the public key covered it, yet it names a user: never
            # written by a store (encode_record refuses to).
            self.refused.count("forged")
        self._slide_expiry(key, record.data, record.ttl, remaining_ms)
        return self.session_class(record.data, sid, False)

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
        try:
            return encode_record(
                data,
                sid,
                prefix=self.prefix,
                fmt=self._format,
                ttl=ttl,
                secret_for=self._record_secret_for,
                codec=self._codec,
                sealing_key=self._sid_key,
            )
        except EncodeError:
            raise SessionValueError(self._describe_unencodable(data)) from None
        except RecordKeyMissing as exc:
            raise SessionStoreUnavailable(
                f"HTTP sessions of database {exc.db!r} cannot be stored: no secret is known "
                "to authenticate them (its database.secret cannot be read; "
                "ormcache_redis_secret would give one secret to every database)."
            ) from None
        except (TypeError, ValueError) as exc:
            raise SessionValueError(
                f"This session holds a value that is not JSON ({exc}); Odoo "
                f"{self.odoo_major} sessions must be JSON-clean."
            ) from None

    def _describe_unencodable(self, data: dict[str, Any]) -> str:
        assert self._codec is not None
        for name, value in data.items():
            try:
                self._codec.dumps(value)
            except EncodeError:
                return (
                    f"Session key {name!r} holds a {type(value).__name__} value, which the "
                    "Redis session store cannot serialize safely (it never pickles): store "
                    "plain values (str, numbers, lists, dicts, dates) in the session."
                )
        return "The session holds a value the Redis session store cannot serialize safely."

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
            self.client.pipeline(commands, transaction=True)

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
        if soft and self.odoo_major >= 19:
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
            if self.odoo_major >= 19:
                assert env, "saving this session requires an environment"
            if env:
                session["session_token"] = self._compute_session_token(session, env)
        session.should_rotate = False
        if self.odoo_major >= 19:
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

    def _valid_identifiers(self, identifiers: Iterable[str]) -> list[str]:
        valid = []
        for identifier in identifiers:
            if isinstance(identifier, str) and IDENTIFIER_PATTERN.match(identifier):
                valid.append(identifier)
            elif self.odoo_major >= 19:
                raise ValueError(
                    "Identifier format incorrect, did you pass in a string instead of a list?"
                )
            # 18 skips malformed identifiers: they may come from a crafted
            # res.device.log and must not reach another database's sessions.
        return valid

    def delete_from_identifiers(self, identifiers: Iterable[str]) -> None:
        """Delete every session whose id starts with one of the 42-character
        identifiers (device revocation): one DEL per identifier, pipelined."""
        keys = [hash_key(self.prefix, i) for i in self._valid_identifiers(identifiers)]
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


# ---------------------------------------------------------------------- Odoo registry_patch


def _odoo_major_version() -> int:
    import odoo.release

    return int(odoo.release.version_info[0])


def _odoo_session_lifetime() -> int:
    """Odoo's own ``get_session_max_inactivity`` on the current request's env
    (``sessions.max_inactivity_seconds``, default 7 days)."""
    from odoo import http

    try:
        request = http.request
        env = request.env if request else None
        return int(http.get_session_max_inactivity(env))
    except Exception:
        return int(getattr(http, "SESSION_LIFETIME", DEFAULT_SESSION_LIFETIME))


def _replace_application_session_store(http_module: Any, store: RedisSessionStore) -> None:
    """Make ``root.session_store`` our store in this process and every fork.

    17/18 declare it with ``odoo.tools.func.lazy_property`` and 19 with
    ``functools.cached_property``: both are non-data descriptors caching the
    value in the instance ``__dict__``. We put a descriptor of the same kind on
    the class (so a reset, ``del root.session_store`` or
    ``lazy_property.reset_all(root)``, rebuilds our store, never a filesystem
    one; and tests patching ``Application.session_store`` still can), and
    replace any value already cached on ``root``.
    """
    application = http_module.Application
    original = application.__dict__.get("session_store")

    def session_store(self: Any) -> RedisSessionStore:
        return store

    descriptor: Any
    if isinstance(original, functools.cached_property):
        descriptor = functools.cached_property(session_store)
        descriptor.__set_name__(application, "session_store")
    else:
        from odoo.tools.func import lazy_property

        descriptor = lazy_property(session_store)
    application.session_store = descriptor
    vars(http_module.root)["session_store"] = store


def install_session_store(
    option_source: OptionSource, *, client_factory: Callable[..., RedisClient] = RedisClient
) -> RedisSessionStore | None:
    """Install the Redis session store when configured; ``None`` when Odoo's
    filesystem store stays. Raises ``ConfigError`` on invalid options: a
    server configured for Redis sessions must not start on files."""
    settings = SessionStoreSettings.from_options(option_source)
    if settings is None:
        return None
    from odoo import http
    from odoo.service import security

    from .deployment_keys import deployment_secrets

    client = client_factory(
        settings.url, connect_timeout=settings.timeout, socket_timeout=settings.timeout
    )
    store = RedisSessionStore(
        client,
        session_class=http.Session,
        odoo_major=_odoo_major_version(),
        compute_session_token=security.compute_session_token,
        record_secret_for=deployment_secrets().for_database,
        lifetime=_odoo_session_lifetime,
        prefix=settings.prefix,
        anonymous_ttl=settings.anonymous_ttl,
        secret=settings.secret,
    )
    _replace_application_session_store(http, store)
    _logger.info(
        "HTTP sessions are stored in Redis at %s (prefix %r, anonymous sessions kept %ss).",
        redact_url(settings.url),
        settings.prefix,
        settings.anonymous_ttl,
    )
    try:
        client.ping()
    except (RedisUnavailable, RedisReplyError) as exc:
        _logger.warning(
            "Redis for HTTP sessions at %s does not answer yet (%s): requests that need a "
            "session get 503 until it does.",
            redact_url(settings.url),
            exc,
        )
    else:
        warning = eviction_warning(client, "sessions")
        if warning:
            _logger.warning("%s", warning)
    return store
