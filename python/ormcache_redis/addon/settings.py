"""The addon's options (``ormcache_redis_*`` in odoo.conf or the
environment), and what never leaves the process."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ormcache_redis.config import (
    ConfigError,
    OptionSource,
    parse_int,
    parse_names,
    parse_redis_url,
    parse_seconds,
)

# Caches whose values are plain data that every process computes alike.
# routing* (werkzeug maps, endpoints), templates* (compiled QWeb code) and
# groups (SetDefinitions) hold process-bound objects: they stay local.
DEFAULT_SHARED_CACHES = ("default", "stable", "assets")

# Methods keyed on secrets, in Odoo's own words (model.method): a cache key
# never leaves the process when it holds a password or a session id, hashed
# or not (a fast hash of a password is guessable offline). Methods whose
# key expressions or parameters look like secrets are added automatically
# (see looks_secret).
DEFAULT_LOCAL_METHODS = (
    "res.users.check",  # 17.0, 18.0: keyed on (uid, passwd)
    "res.users._check_uid_passwd",  # 19.0: keyed on (uid, passwd)
    "res.users._compute_session_token",  # keyed on the session id
    "res.users._crypt_context",  # a passlib CryptContext: process-bound
)

# The one list of what names a secret. A cache entry stays in the process
# when a string argument of its key contains one of these fragments
# (`ir.config_parameter._get_param('database.secret')` caches the secret that
# signs sessions); a method stays in the process when its key expressions or
# parameter names contain one, or one of the words below.
SECRET_KEY_MARKERS = ("secret", "passw", "token", "api_key", "apikey", "private_key", "credential")
SECRET_NAME_FRAGMENTS = (*SECRET_KEY_MARKERS, "session", "totp")
SECRET_NAME_WORDS = ("sid", "pin", "otp")

SECRET_PATTERN = re.compile(
    "|".join(
        [*map(re.escape, SECRET_NAME_FRAGMENTS), *(rf"\b{word}\b" for word in SECRET_NAME_WORDS)]
    ),
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Settings:
    url: str | None
    expire: int
    prefix: str
    shared_caches: tuple[str, ...]
    local_methods: tuple[str, ...]
    connect_timeout: float
    socket_timeout: float
    write_queue: int
    write_queue_bytes: int

    @property
    def enabled(self) -> bool:
        return self.url is not None


def load_settings(source: OptionSource, known_caches: Iterable[str]) -> Settings:
    """Reads every option; raises ConfigError (one sentence) on a bad value."""
    known = tuple(known_caches)
    url = parse_redis_url("ormcache_redis_url", source.raw("ormcache_redis_url"))
    expire = parse_int(
        "ormcache_redis_expire",
        source.raw("ormcache_redis_expire"),
        3600,
        minimum=1,
        maximum=365 * 86400,
    )
    prefix = source.raw("ormcache_redis_prefix") or "ormcache:"
    if any(ch.isspace() for ch in prefix) or len(prefix) > 64:
        raise ConfigError(
            f"ormcache_redis_prefix must be at most 64 characters without spaces, got {prefix!r}."
        )
    # The default names only those of this Odoo (17.0 has no 'stable');
    # a name the operator wrote must exist.
    shared = parse_names(
        "ormcache_redis_shared_caches",
        source.raw("ormcache_redis_shared_caches"),
        tuple(name for name in DEFAULT_SHARED_CACHES if name in known),
    )
    unknown = [name for name in shared if name not in known]
    if unknown:
        raise ConfigError(
            f"ormcache_redis_shared_caches names unknown cache {unknown[0]!r} "
            f"(this Odoo has: {', '.join(known)})."
        )
    # The built-in secret list always applies: an option can add methods,
    # never make a password-keyed method shared.
    extra_local = parse_names(
        "ormcache_redis_local_methods", source.raw("ormcache_redis_local_methods"), ()
    )
    # Bounds background work only (the probe's new connection, write
    # batches): a request never waits for it.
    connect_timeout = parse_seconds(
        "ormcache_redis_connect_timeout",
        source.raw("ormcache_redis_connect_timeout"),
        0.5,
        maximum=60,
    )
    socket_timeout = parse_seconds(
        "ormcache_redis_socket_timeout",
        source.raw("ormcache_redis_socket_timeout"),
        0.25,
        maximum=60,
    )
    write_queue = parse_int(
        "ormcache_redis_write_queue",
        source.raw("ormcache_redis_write_queue"),
        10000,
        minimum=1,
        maximum=10**7,
    )
    write_queue_mb = parse_int(
        "ormcache_redis_write_queue_mb",
        source.raw("ormcache_redis_write_queue_mb"),
        64,
        minimum=1,
        maximum=64 * 1024,
    )
    return Settings(
        url=url,
        expire=expire,
        prefix=prefix,
        shared_caches=shared,
        local_methods=(*DEFAULT_LOCAL_METHODS, *extra_local),
        connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        write_queue=write_queue,
        write_queue_bytes=write_queue_mb * 1024 * 1024,
    )


def looks_secret(key_exprs: Iterable[str], parameter_names: Iterable[str]) -> bool:
    """Whether a cache key (its expressions, or the parameters it may use)
    looks like it holds a password, token or session id."""
    return any(SECRET_PATTERN.search(text) for text in (*key_exprs, *parameter_names))
