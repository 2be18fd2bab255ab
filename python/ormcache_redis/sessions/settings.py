"""The ``session_store*`` options (odoo.conf or the environment).

Parsed and checked in the engine (``src/settings/``), like the cache's
options: every rule, default and error sentence lives there.
"""

from __future__ import annotations

from ormcache_redis._native import SessionSettings
from ormcache_redis.config import OptionSource

SessionStoreSettings = SessionSettings


def session_store_settings(options: OptionSource) -> SessionSettings | None:
    """The settings when ``session_store = redis``, ``None`` for Odoo's
    filesystem store; raises ``ConfigError`` (one sentence) on bad values."""
    return SessionSettings.parse(options, options.labels)
