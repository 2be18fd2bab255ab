"""Reading and validating ormcache_redis options.

Options come from Odoo's configuration (``odoo.conf`` ``[options]``) first and
from the environment second (``ormcache_redis_url`` -> ``ORMCACHE_REDIS_URL``),
so containers can configure everything without a config file. Every parser
raises :class:`ConfigError` with one sentence that names the option, which is
what start-up shows to the operator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ormcache_redis._native import ConfigError

__all__ = [
    "ConfigError",
    "OptionSource",
    "parse_bool",
    "parse_int",
    "parse_names",
    "parse_redis_url",
    "parse_seconds",
    "redact_url",
]

REDIS_SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class OptionSource:
    """Looks options up in a config getter, then in the environment.

    ``config_get`` is e.g. ``odoo.tools.config.get``; values Odoo leaves unset
    (``None``, ``False`` or ``''``) fall through to the environment variable
    of the upper-cased name.
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
        value = self._environ.get(name.upper())
        if value is None or value.strip() == "":
            return None
        return value.strip()


def redact_url(url: str) -> str:
    """The URL without its user and password, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()


def parse_redis_url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL: {redact_url(value)!r}.") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{name} must be a redis://, rediss:// or unix:// URL, got {redact_url(value)!r}."
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{name} has no host: {redact_url(value)!r}.")
    try:
        parts.port  # noqa: B018  (validates the port number)
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {redact_url(value)!r}.") from None
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(
            f"{name} must name the database by number (e.g. /0), got {redact_url(value)!r}."
        )
    return value


def parse_seconds(
    name: str, value: str | None, default: float, *, minimum: float = 0.0, maximum: float = 10**9
) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}.") from None
    if not math.isfinite(seconds) or not minimum < seconds <= maximum:
        raise ConfigError(
            f"{name} must be a number of seconds above {minimum:g} and at most {maximum:g}, "
            f"got {value!r}."
        )
    return seconds


def parse_int(
    name: str, value: str | None, default: int, *, minimum: int = 0, maximum: int = 2**31
) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}.") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value!r}.")
    return number


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}.")


def parse_names(name: str, value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of names (cache names, method names)."""
    if value is None:
        return default
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    for item in names:
        if any(ch.isspace() for ch in item):
            raise ConfigError(f"{name} must be a comma-separated list of names, got {value!r}.")
    return names
