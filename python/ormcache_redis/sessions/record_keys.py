"""The keys of session records: each derived from a secret for one
purpose (HKDF info), so no key ever serves two uses; and Odoo 19's
``next_sid``, sealed under a key derived from the session's own id, which
only a holder of the old cookie knows."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from typing import Any

from ormcache_redis._native import _aead_open, _aead_seal, _derive_key

SEALED_PREFIX = "ocr-sealed:2:"

PURPOSE_RECORD = "session-record/v2"
PURPOSE_SID = "session-id/v2"
PURPOSE_NEXT_SID = "session-next-sid/v2"
PUBLIC_SECRET = b"ormcache_redis: sessions without a database and without a secret"
"""Keys the tag of records no secret covers: known to everyone, it only
detects corruption (see :data:`.session_content.AUTHENTICATING_KEYS`)."""


SecretForDatabase = Callable[[str | None], str | bytes | None]
"""The secret of a database's session records (``None``: no database); returns
None when there is none (for no database: no ``ormcache_redis_secret``)."""


@functools.lru_cache(maxsize=256)
def _derived(secret: str | bytes, purpose: str) -> bytes:
    return _derive_key(secret, purpose)


def record_key(secret: str | bytes | None) -> bytes:
    """The key of record tags for a database's ``secret`` (None: the public key)."""
    return _derived(PUBLIC_SECRET if secret is None else secret, PURPOSE_RECORD)


def sid_key(session_store_secret: str | bytes) -> bytes:
    """The key sealing session ids into records, from ``session_store_secret``."""
    return _derived(session_store_secret, PURPOSE_SID)


def _next_sid_key(sid: str) -> bytes:
    return _derive_key(sid, PURPOSE_NEXT_SID)


def seal_next_sid(data: Mapping[str, Any], sid: str) -> dict[str, Any]:
    """``data`` with Odoo 19's ``next_sid`` sealed under a key derived from ``sid``."""
    out = dict(data)
    next_sid = out.get("next_sid")
    if isinstance(next_sid, str) and not next_sid.startswith(SEALED_PREFIX):
        sealed = _aead_seal(_next_sid_key(sid), next_sid.encode(), b"next_sid")
        out["next_sid"] = SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode()
    return out


def open_next_sid(data: dict[str, Any], sid: str | None) -> dict[str, Any]:
    """Reverse of :func:`seal_next_sid`; a ``next_sid`` that does not open
    (no ``sid``, another one, altered) is dropped: the old session then
    rotates again instead of following it."""
    next_sid = data.pop("next_sid", None)
    if sid is None or not isinstance(next_sid, str) or not next_sid.startswith(SEALED_PREFIX):
        return data
    try:
        sealed = base64.urlsafe_b64decode(next_sid[len(SEALED_PREFIX) :])
    except ValueError:
        return data
    opened = _aead_open(_next_sid_key(sid), sealed, b"next_sid")
    if opened is not None:
        data["next_sid"] = opened.decode("ascii", "replace")
    return data
