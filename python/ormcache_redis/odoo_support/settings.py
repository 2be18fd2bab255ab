"""The addon's options (``ormcache_redis_*`` in odoo.conf or the
environment), and what never leaves the process."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ormcache_redis._native import CacheSettings
from ormcache_redis.config import OptionSource

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


# Parsed and checked in the engine (src/settings/), with every rule and
# error sentence; the defaults (shared caches, secret-keyed methods) too.
Settings = CacheSettings


def load_settings(
    source: OptionSource, known_caches: Iterable[str], memory_soft_limit: int | None = None
) -> CacheSettings:
    """Reads every option; raises ConfigError (one sentence) on a bad value.
    ``memory_soft_limit``: Odoo's ``limit_memory_soft`` (bytes), the base of
    the L1 bound when ``ormcache_redis_l1_max_mb`` is unset."""
    return CacheSettings.parse(source, list(known_caches), memory_soft_limit)


_L1_BOUND_ORIGINS = {
    "ormcache_redis_l1_max_mb": "ormcache_redis_l1_max_mb",
    "limit_memory_soft": "a quarter of limit_memory_soft",
    "default": "the default: no limit_memory_soft",
}


def l1_bound_text(max_bytes: int, origin: str) -> str:
    """``512 MiB (a quarter of limit_memory_soft)``: the L1 bound
    (``CacheSettings.l1_max_bytes``) and where it comes from
    (``l1_max_bytes_from``), as the log and the statistics say it."""
    return f"{max_bytes / (1 << 20):.0f} MiB ({_L1_BOUND_ORIGINS.get(origin, origin)})"


def looks_secret(key_exprs: Iterable[str], parameter_names: Iterable[str]) -> bool:
    """Whether a cache key (its expressions, or the parameters it may use)
    looks like it holds a password, token or session id."""
    return any(SECRET_PATTERN.search(text) for text in (*key_exprs, *parameter_names))
