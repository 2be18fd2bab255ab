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
import time
from collections.abc import Callable

from ormcache_redis.config import OPTIONS, OptionSource

_logger = logging.getLogger("ormcache_redis.secrets")

# Its rule (at least 16 characters, never repeated) is the engine's.
_SECRET = OPTIONS["ormcache_redis_secret"]
SECRET_OPTION: str = _SECRET.name
# Databases remembered as unreadable at most (names come from session
# records, which anyone who can write to Redis chooses).
MAX_UNREADABLE = 1024


def check_secret(option: str, secret: str | None) -> str | None:
    """``secret`` when absent or long enough to be one; else ConfigError,
    one sentence naming ``option``."""
    return _SECRET.parse(secret, option)


def configured_secret(source: OptionSource) -> str | None:
    """``ormcache_redis_secret`` when set (checked by its rule)."""
    return source.value(SECRET_OPTION)


class DeploymentSecrets:
    """The secret that keys a database's shared data, per process.

    ``read_database_secret(db_name)`` returns the database's
    ``database.secret``, or None when it has none (``base`` not installed
    yet), and raises when the database cannot be read (it does not exist,
    PostgreSQL is down). Found secrets are kept for the life of the process
    (rotating ``database.secret`` takes a restart, see CONFIGURE.md); a
    database without one is asked again next time, since it may be
    installed since; one that could not be read is asked again after
    ``retry_after`` seconds: a session record naming databases that do not
    exist must not cost a PostgreSQL connection per request.
    """

    def __init__(
        self,
        configured: str | None,
        read_database_secret: Callable[[str], str | None],
        *,
        retry_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configured = configured
        self._read = read_database_secret
        self._retry_after = retry_after
        self._clock = clock
        self._found: dict[str, str] = {}
        self._unreadable: dict[str, float] = {}  # db name -> when to ask again
        self._warned_at: float | None = None
        self._lock = threading.Lock()

    def for_database(self, db_name: str | None) -> str | None:
        """The secret for ``db_name``; for no database, the configured secret
        or None (data of no database carries no user: see the session store)."""
        if self.configured is not None:
            return self.configured
        if not db_name:
            return None
        now = self._clock()
        with self._lock:
            found = self._found.get(db_name)
            if found is not None:
                return found
            if self._unreadable.get(db_name, now) > now:
                return None
        try:
            secret = self._read(db_name)
        except Exception as error:
            self._note_unreadable(db_name, now, error)
            return None
        if secret:
            with self._lock:
                self._found[db_name] = secret
        return secret or None

    def _note_unreadable(self, db_name: str, now: float, error: Exception) -> None:
        with self._lock:
            if len(self._unreadable) >= MAX_UNREADABLE:
                self._unreadable.clear()
            self._unreadable[db_name] = now + self._retry_after
            warn = self._warned_at is None or now - self._warned_at >= self._retry_after
            if warn:
                self._warned_at = now
        if warn:
            _logger.warning(
                "cannot read database.secret of %r (%s): its shared data stays unused "
                "(said once a minute at most)",
                db_name,
                type(error).__name__,
            )
