"""What a session holds, as the store sees it: which keys authenticate
someone, all a record under the public key may hold, what Odoo refills on
every request (a session holding only that is not stored), and how long
a session lives without activity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ormcache_redis.config import OPTIONS

# The session options' defaults live with their rules (src/settings/).
DEFAULT_ANONYMOUS_TTL: int = round(OPTIONS["session_store_anonymous_ttl"].default)
DEFAULT_SESSION_LIFETIME = 7 * 24 * 3600
"""Odoo's ``SESSION_LIFETIME`` (default ``sessions.max_inactivity_seconds``)."""


AUTHENTICATING_KEYS = frozenset(
    {
        # Who the session belongs to: get_default_session() in odoo/http.py (17, 18, 19).
        "uid",
        "login",
        "session_token",
        # A login waiting for its second factor: Session.authenticate/finalize.
        "pre_uid",
        "pre_login",
        # The password was re-entered recently: res.users' check_identity.
        "identity-check-last",
        # Odoo 19's soft rotation: where the old cookie is sent, and when it dies.
        "next_sid",
        "deletion_time",
        "gc_previous_sessions",
    }
)
"""Session keys that authenticate someone or steer a rotation: a session
holding one is never written under the public key."""

PUBLIC_RECORD_KEYS = frozenset({"db", "debug", "context", "create_time"})
"""All that a record under the public key may hold, each of one shape:
``db`` (the record's database, checked against its header), ``debug`` (a
short string), ``context`` (only ``lang`` and ``tz``, short strings) and 19's
``create_time`` (a number). Odoo refills every other key of a fresh session
(``get_default_session``) on each request. Anything else (``uid``,
``sale_order_id``...) is someone's own state, which only a secret may vouch
for."""

_PUBLIC_CONTEXT_KEYS = ("lang", "tz")
_PUBLIC_TEXT_LENGTH = 64

# Keys that Odoo's get_default_session() fills on every request: a session
# holding only these, at their defaults, carries nothing the next request
# would miss.
_DEFAULT_SESSION_VALUES: dict[str, Any] = {
    "db": None,
    "debug": "",
    "login": None,
    "uid": None,
    "session_token": None,
    "_trace": [],
}


def carries_nothing(data: Mapping[str, Any]) -> bool:
    """True for an anonymous session holding only what Odoo rebuilds on every
    request (defaults, the language, 19's ``create_time``): storing it would
    cost a write and memory for nothing."""
    for name, value in data.items():
        if name == "create_time":
            continue
        if name == "context":
            if not isinstance(value, dict) or set(value) - {"lang"}:
                return False
            continue
        if name not in _DEFAULT_SESSION_VALUES or value != _DEFAULT_SESSION_VALUES[name]:
            return False
    return True


def authenticates_someone(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` holds a value under one of :data:`AUTHENTICATING_KEYS`."""
    return any(data.get(name) not in (None, "", False) for name in AUTHENTICATING_KEYS)


def _public_text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= _PUBLIC_TEXT_LENGTH


def _public_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def public_part(data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """What of ``data`` a record under the public key may hold
    (:data:`PUBLIC_RECORD_KEYS`), and whether anything else was there: a
    key outside the list with another value than Odoo's default for it, or
    a listed key of another shape."""
    kept: dict[str, Any] = {}
    more = False
    for name, value in data.items():
        if name == "db":
            kept[name] = value  # the record's database: checked by its reader
        elif name == "debug" and _public_text(value):
            kept[name] = value
        elif name == "create_time" and _public_number(value):
            kept[name] = value
        elif name == "context" and isinstance(value, dict):
            context = {k: value[k] for k in _PUBLIC_CONTEXT_KEYS if _public_text(value.get(k))}
            more = more or len(context) != len(value)
            kept[name] = context
        elif name not in _DEFAULT_SESSION_VALUES or value != _DEFAULT_SESSION_VALUES[name]:
            # At its default, a key is Odoo's (refilled on every request),
            # not the session's own.
            more = True
    return kept, more


def record_ttl(data: Mapping[str, Any], lifetime: int, anonymous_ttl: int) -> int:
    """Seconds a session lives without activity: Odoo's lifetime once logged
    in, the shorter anonymous TTL (never above the lifetime) before."""
    lifetime = max(1, int(lifetime))
    if data.get("uid"):
        return lifetime
    return max(1, min(int(anonymous_ttl), lifetime))
