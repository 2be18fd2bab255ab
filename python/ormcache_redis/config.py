"""Reading and validating ormcache_redis options.

Options come from Odoo's configuration (``odoo.conf`` ``[options]``) first and
from the environment second (``ormcache_redis_url`` -> ``ORMCACHE_REDIS_URL``),
so containers can configure everything without a config file. The Redis URLs
(``ormcache_redis_url``, ``session_store_url``) fall back last on
``REDIS_URL``, the name container platforms and add-ons commonly set.

Every option, its default and its rule live in the engine
(``src/settings/``): :data:`OPTIONS` is that table, and the engine's
parsers (``CacheSettings``, ``SessionSettings``, ``MetricsSettings``) read
an :class:`OptionSource` directly. Every check raises :class:`ConfigError`
with one sentence that names the option, which is what start-up shows to
the operator.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ormcache_redis._native import (
    ConfigError,
    OptionSpec,
    check_redis_url,
    option_specs,
    redact_url,
)

__all__ = [
    "CACHE_PREFIX",
    "OPTIONS",
    "REDIS_URL_FALLBACK",
    "SESSION_PREFIX",
    "ConfigError",
    "OptionSource",
    "odoo_conf_options",
    "parse_redis_url",
    "redact_url",
]

OPTIONS: Mapping[str, OptionSpec] = MappingProxyType({spec.name: spec for spec in option_specs()})
"""Every option the project reads, by name: its ``group``, ``kind``,
``default`` and rule (``parse``)."""

CACHE_PREFIX: str = OPTIONS["ormcache_redis_prefix"].default
SESSION_PREFIX: str = OPTIONS["session_store_prefix"].default

# The environment variable that every Redis URL option falls back on last:
# one Redis for the cache and the sessions unless an option says otherwise
# (their keys have different prefixes).
REDIS_URL_FALLBACK = "REDIS_URL"
URL_OPTIONS = frozenset(name for name, spec in OPTIONS.items() if spec.kind == "url")


class OptionSource:
    """Looks options up on a command line, in a config getter, then in the
    environment.

    ``config_get`` is e.g. ``odoo.tools.config.get``; values Odoo leaves unset
    (``None``, ``False`` or ``''``) fall through to the environment variable
    of the upper-cased name, and the Redis URL options then to ``REDIS_URL``.
    ``given`` maps an option to the ``(flag, value)`` a command line gave:
    a value that is not None wins, and error sentences name the flag.
    """

    def __init__(
        self,
        config_get: Callable[[str], object] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        given: Mapping[str, tuple[str, object]] | None = None,
    ) -> None:
        self._config_get = config_get
        self._environ = os.environ if environ is None else environ
        self._given = {
            name: (flag, str(value))
            for name, (flag, value) in (given or {}).items()
            if value is not None
        }

    @property
    def labels(self) -> dict[str, str]:
        """How error sentences name the options a command line gave."""
        return {name: flag for name, (flag, _value) in self._given.items()}

    def raw(self, name: str) -> str | None:
        if name in self._given:
            return self._given[name][1]
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

    # The engine's parsers read a source as a mapping.
    get = raw

    def value(self, name: str) -> Any:
        """The option ``name`` checked by its rule; its default when unset."""
        return OPTIONS[name].parse(self.raw(name), self.labels.get(name))

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


def odoo_conf_options(path: Path | None) -> dict[str, str]:
    """The ``[options]`` of the odoo.conf a command was given with
    ``--config`` (none: no options); a file that cannot be read is a
    :class:`ConfigError` naming the flag."""
    if path is None:
        return {}
    parser = configparser.RawConfigParser()
    if not parser.read(path):
        raise ConfigError(f"--config {path} cannot be read.")
    return dict(parser.items("options")) if parser.has_section("options") else {}
