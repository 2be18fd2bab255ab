"""The ``session_store*`` options (odoo.conf or the environment)."""

from __future__ import annotations

from dataclasses import dataclass

from ormcache_redis.config import ConfigError, OptionSource, parse_redis_url, parse_seconds
from ormcache_redis.sessions.records import DEFAULT_ANONYMOUS_TTL, DEFAULT_PREFIX

DEFAULT_TIMEOUT = 1.0


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
