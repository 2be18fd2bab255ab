"""Reading and validating ormcache_redis options.

Options come from Odoo's configuration (``odoo.conf`` ``[options]``) first and
from the environment second (``ormcache_redis_url`` -> ``ORMCACHE_REDIS_URL``),
so containers can configure everything without a config file. The Redis URLs
(``ormcache_redis_url``, ``session_store_url``) fall back last on
``REDIS_URL``, the name container platforms and add-ons commonly set. The rules and
their error sentences live in the engine (``src/settings.rs``,
``src/redis/url.rs``): every check raises :class:`ConfigError` with one
sentence that names the option, which is what start-up shows to the operator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ormcache_redis._native import ConfigError, check_redis_url, redact_url
from ormcache_redis._native import parse_seconds as native_parse_seconds

__all__ = [
    "REDIS_URL_FALLBACK",
    "ConfigError",
    "OptionSource",
    "parse_redis_url",
    "parse_seconds",
    "redact_url",
]


# The environment variable that every Redis URL option falls back on last:
# one Redis for the cache and the sessions unless an option says otherwise
# (their keys have different prefixes).
REDIS_URL_FALLBACK = "REDIS_URL"
URL_OPTIONS = frozenset({"ormcache_redis_url", "session_store_url"})


class OptionSource:
    """Looks options up in a config getter, then in the environment.

    ``config_get`` is e.g. ``odoo.tools.config.get``; values Odoo leaves unset
    (``None``, ``False`` or ``''``) fall through to the environment variable
    of the upper-cased name, and the Redis URL options then to ``REDIS_URL``.
    """

    def __init__(
        self,
        config_get: Callable[[str], object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config_get = config_get
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        if self._config_get is not None:
            value = self._config_get(name)
            if value not in (None, False, ""):
                return str(value).strip()
        value = self._from_environment(name.upper())
        if value is None and name in URL_OPTIONS:
            value = self._from_environment(REDIS_URL_FALLBACK)
            if value is not None:
                # Checked here so that a bad value names the variable the
                # operator set, not the option it stood in for.
                check_redis_url(REDIS_URL_FALLBACK, value)
        return value

    def _from_environment(self, variable: str) -> str | None:
        value = self._environ.get(variable)
        if value is None or value.strip() == "":
            return None
        return value.strip()


def parse_redis_url(name: str, value: str | None) -> str | None:
    """``value`` when it is a valid Redis URL (None when unset); the rules
    and their error sentences live in the engine, with ``RedisClient``'s."""
    if value is None:
        return None
    return check_redis_url(name, value)


def parse_seconds(
    name: str, value: str | None, default: float, *, minimum: float = 0.0, maximum: float = 10**9
) -> float:
    """Seconds above ``minimum`` and at most ``maximum`` (the engine's rule
    and sentence, shared with the cache options)."""
    return native_parse_seconds(name, value, default, above=minimum, at_most=maximum)
