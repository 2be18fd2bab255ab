"""What the session tests share: stand-ins for Odoo's ``Session`` and
``security.compute_session_token``, each database's secret, and a store
built as the addon builds one, on the suite's real redis-server."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

from ormcache_redis._native import RedisClient
from ormcache_redis.sessions.store import RedisSessionStore

# --------------------------------------------------------------------------- stand-ins


class StandInSession(MutableMapping):
    """Behaves like ``odoo.http.Session`` for what a store touches."""

    __slots__ = ("_data", "can_save", "is_dirty", "is_new", "should_rotate", "sid")
    json_clean = True  # 18/19: Session.__setitem__ round-trips values through JSON

    def __init__(self, data: dict[str, Any], sid: str, new: bool = False) -> None:
        self.can_save = True
        self._data: dict[str, Any] = {}
        self.update(data)
        self.is_dirty = False
        self.is_new = new
        self.should_rotate = False
        self.sid = sid

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        value = json.loads(json.dumps(value)) if self.json_clean else copy.deepcopy(value)
        if key not in self._data or self._data[key] != value:
            self.is_dirty = True
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.is_dirty = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class StandInSession17(StandInSession):
    __slots__ = ()
    json_clean = False  # 17 pickles: any value


TOKEN_SECRET = b"stand-in database secret"

DATABASE_SECRETS = {
    "db1": "database.secret of db1, 36 chars long",
    "db2": "database.secret of db2, 36 chars long",
}
"""What ``DeploymentSecrets.for_database`` answers in these tests: each
database's own secret, nothing for no database (no ``ormcache_redis_secret``)."""
PREFIX = "test:session:"


def database_secrets(secrets: dict[str, str] | None = None, configured: str | None = None) -> Any:
    """A ``record_secret_for`` callable, like the addon's ``DeploymentSecrets``."""
    found = DATABASE_SECRETS if secrets is None else secrets

    def for_database(db: str | None) -> str | None:
        if configured is not None:
            return configured
        return found.get(db) if db else None

    return for_database


def stand_in_session_token(session: Any, env: Any) -> str:
    """Like res.users._compute_session_token: bound to the session id."""
    message = f"{session['uid']}:{session.sid}".encode()
    return hmac.new(TOKEN_SECRET, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- redis


def make_store(
    url: str, odoo_major: int = 18, client: RedisClient | None = None, **options: Any
) -> Any:
    options.setdefault("lifetime", lambda: 3600)
    options.setdefault("record_secret_for", database_secrets())
    options.setdefault("prefix", PREFIX)
    return RedisSessionStore(
        client or RedisClient(url, socket_timeout=0.5),
        session_class=StandInSession17 if odoo_major == 17 else StandInSession,
        odoo_major=odoo_major,
        compute_session_token=stand_in_session_token,
        **options,
    )


CONFIGURED_SECRET = "an ormcache_redis_secret of 40 characters"


def configured_store(url: str, odoo_major: int, **options: Any) -> Any:
    """A store of a deployment that sets ormcache_redis_secret."""
    return make_store(
        url, odoo_major, record_secret_for=database_secrets(configured=CONFIGURED_SECRET), **options
    )


def logged_in(store: Any, uid: int = 2) -> Any:
    session = store.new()
    session.update(
        {
            "db": "db1",
            "login": "admin",
            "uid": uid,
            "context": {"lang": "en_US", "tz": "Europe/Brussels"},
            "debug": "",
            "_trace": [],
        }
    )
    session["session_token"] = stand_in_session_token(session, None)
    return session


def all_keys(raw: RedisClient) -> list[bytes]:
    return raw.execute("KEYS", "*")


def command_calls(raw: RedisClient, command: str) -> int:
    info = raw.execute("INFO", "commandstats")
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


VERSIONS = [17, 18, 19]


def user_data(uid: int = 2) -> dict[str, Any]:
    return {"db": "db1", "uid": uid, "login": "admin", "session_token": "t",
            "context": {"lang": "en_US"}, "debug": ""}  # fmt: skip
