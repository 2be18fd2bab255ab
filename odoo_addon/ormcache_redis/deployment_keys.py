"""Where the keys that authenticate shared data come from.

Whoever can write to Redis must not be able to change what Odoo serves or
who a session belongs to, so every cache entry and every session record is
authenticated (HMAC-SHA-256) under a key that Redis never sees. The key must
be the same on every server of a deployment, or entries would silently stop
being shared and users hopping between servers would be logged out, and it
should need no configuration.

What every server of a deployment shares is the PostgreSQL database, and
each Odoo database holds a random ``database.secret`` (created when ``base``
is installed; Odoo already signs session tokens with it). So by default the
secret of a database keys that database's cache entries and sessions. It is
read once per process with plain SQL, not through the cached ``get_param``
(whose own cache entry must never be shared).

``ormcache_redis_secret`` (odoo.conf, or ``ORMCACHE_REDIS_SECRET``) replaces
it with one secret for every database: for deployments that want to manage
the key themselves, or that share sessions of databases whose secrets differ.

Never derived from anything that differs per server (a file in a data_dir
that is not shared, the host name).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import closing

from ormcache_redis.config import ConfigError, OptionSource

_logger = logging.getLogger("odoo.addons.ormcache_redis")

SECRET_OPTION = "ormcache_redis_secret"
MIN_SECRET_LENGTH = 16


def configured_secret(source: OptionSource) -> str | None:
    """``ormcache_redis_secret`` when set; raises ConfigError when too short
    to be a secret (one sentence naming the option)."""
    secret = source.raw(SECRET_OPTION)
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{SECRET_OPTION} must be at least {MIN_SECRET_LENGTH} characters "
            f"(e.g. the output of 'openssl rand -hex 32'), got {len(secret)}."
        )
    return secret


class DeploymentSecrets:
    """The secret that keys a database's shared data, per process.

    ``read_database_secret(db_name)`` returns the database's
    ``database.secret`` or None (no such database, ``base`` not installed
    yet). Found secrets are kept for the life of the process (rotating
    ``database.secret`` takes a restart, see CONFIGURE.md); a database
    without one is asked again next time, since it may be installed since.
    """

    def __init__(
        self,
        configured: str | None,
        read_database_secret: Callable[[str], str | None],
    ) -> None:
        self.configured = configured
        self._read = read_database_secret
        self._found: dict[str, str] = {}
        self._lock = threading.Lock()

    def for_database(self, db_name: str | None) -> str | None:
        """The secret for ``db_name``; for no database, the configured secret
        or None (data of no database carries no user: see the session store)."""
        if self.configured is not None:
            return self.configured
        if not db_name:
            return None
        with self._lock:
            found = self._found.get(db_name)
        if found is not None:
            return found
        try:
            secret = self._read(db_name)
        except Exception as error:
            _logger.warning(
                "cannot read database.secret of %r (%s): its shared data stays unused",
                db_name,
                type(error).__name__,
            )
            return None
        if secret:
            with self._lock:
                self._found[db_name] = secret
        return secret or None


def read_database_secret(db_name: str) -> str | None:
    """``database.secret`` of ``db_name``, read on the primary with SQL."""
    import odoo.sql_db

    with closing(odoo.sql_db.db_connect(db_name).cursor()) as cr:
        cr.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.secret'")
        row = cr.fetchone()
    return row[0] if row else None
