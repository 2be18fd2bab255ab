"""What the session store raises to Odoo, and the sentences that say why:
Redis could not serve a session (HTTP 503, never a logout), or a session
holds what cannot be stored."""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.exceptions import ServiceUnavailable

from ormcache_redis._native import Codec, EncodeError
from ormcache_redis.sessions.redis_layout import MAX_RECORD_BYTES

RETRY_AFTER_SECONDS = 5


class SessionStoreUnavailable(ServiceUnavailable):
    """Redis could not serve a session: the request answers 503.

    Odoo's ``Application.__call__`` logs an exception carrying ``loglevel``
    as one line (``exc_info`` None: no traceback) and then answers with
    ``exc.error_response``. Setting that attribute ourselves also stops
    ``_serve_db`` from replacing it with its own (for JSON routes, a 200
    with an error body). It is an ``HTTPException`` so ``ir.http._authenticate``
    re-raises it instead of turning it into ``AccessDenied``, and the store
    raises it instead of returning a fresh session: a Redis outage must never
    look like a logout.
    """

    loglevel = logging.ERROR
    exc_info = None

    def __init__(self, description: str) -> None:
        super().__init__(description=description, retry_after=RETRY_AFTER_SECONDS)
        self.error_response = self


class SessionValueError(TypeError):
    """A session value the safe codec cannot store (Odoo 17 allowed any picklable value)."""


def too_large_message(codec: Codec, data: dict[str, Any], size: int) -> str:
    """Why a session of ``size`` bytes cannot be stored, naming its biggest keys."""

    def length(value: Any) -> int:
        try:
            return len(codec.dumps(value))
        except EncodeError:
            return 0

    biggest = sorted(data, key=lambda name: length(data[name]), reverse=True)[:3]
    return (
        f"This session would take {size} bytes in Redis, more than the "
        f"{MAX_RECORD_BYTES} a session may (a session that big would read back as no "
        f"session): its biggest keys are {', '.join(map(repr, biggest))}. Keep large "
        "data in the database, not in the session."
    )


def unencodable_message(codec: Codec, data: dict[str, Any]) -> str:
    """Why a session holding a value the codec refuses cannot be stored,
    naming the first such key."""
    for name, value in data.items():
        try:
            codec.dumps(value)
        except EncodeError:
            return (
                f"Session key {name!r} holds a {type(value).__name__} value, which the "
                "Redis session store cannot serialize safely (it never pickles): store "
                "plain values (str, numbers, lists, dicts, dates) in the session."
            )
    return "The session holds a value the Redis session store cannot serialize safely."
