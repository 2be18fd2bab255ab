"""What differs between the session stores of Odoo 17, 18 and 19.

One :class:`OdooSessionRules` per version, chosen once when a store is built
(:func:`rules_for`); the store asks it instead of testing the version. Each
field names an Odoo behaviour; the references are to ``odoo/http.py``'s
``FilesystemSessionStore`` and ``Session`` of that version.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ormcache_redis.config import ConfigError
from ormcache_redis.sessions.records import FORMAT_CODEC, FORMAT_JSON
from ormcache_redis.sessions.redis_layout import IDENTIFIER_PATTERN

SID_PATTERN_HEX40 = re.compile(r"^[a-f0-9]{40}\Z")
"""Odoo 17 session ids (werkzeug's ``_sha1_re``)."""
SID_PATTERN_B64_84 = re.compile(r"^[A-Za-z0-9_-]{84}\Z")
"""Odoo 18/19 session ids."""


def _hex40_sid() -> str:
    return secrets.token_hex(20)  # werkzeug's format


def _base64_84_sid() -> str:
    # 63 random bytes: 84 urlsafe-base64 characters without padding.
    return base64.urlsafe_b64encode(secrets.token_bytes(63)).decode()


@dataclass(frozen=True)
class OdooSessionRules:
    """One Odoo version's session store, where versions differ. The
    switches default to what 17 and 18 do; 19 turns them on."""

    major: int
    sid_pattern: re.Pattern[str]
    """The session ids ``is_valid_key`` accepts."""
    new_sid: Callable[[], str]
    """``generate_key``: a fresh session id of that shape."""
    record_format: bytes
    """17 sessions may hold any picklable value (tuples, sets, dates): the
    engine's closed-type codec; 18 and 19 sessions are JSON-clean."""
    soft_rotation: bool = False
    """19: ``rotate(soft=True)`` keeps the 42-character identifier and lets
    the old cookie follow the new id for a while (``delete_old_sessions``
    cleans up after it); before 19 every rotation replaces the id."""
    rotation_needs_env: bool = False
    """19 asserts an environment when rotating a logged-in session, to
    compute its ``session_token``; 17 and 18 keep the old token without one."""
    stamps_create_time: bool = False
    """19 records when a session id was made (``create_time``), its soft
    rotation counts from it."""
    refuses_malformed_identifiers: bool = False
    """``delete_from_identifiers``: 19 raises ``ValueError`` on a malformed
    identifier, 18 skips it."""

    def is_valid_sid(self, sid: object) -> bool:
        return isinstance(sid, str) and self.sid_pattern.match(sid) is not None

    def valid_identifiers(self, identifiers: Iterable[object]) -> list[str]:
        """The well-formed 42-character identifiers, in order."""
        valid = []
        for identifier in identifiers:
            if isinstance(identifier, str) and IDENTIFIER_PATTERN.match(identifier):
                valid.append(identifier)
            elif self.refuses_malformed_identifiers:
                raise ValueError(
                    "Identifier format incorrect, did you pass in a string instead of a list?"
                )
            # Skipped: it may come from a crafted res.device.log and must not
            # reach another database's sessions.
        return valid


ODOO_17 = OdooSessionRules(17, SID_PATTERN_HEX40, _hex40_sid, FORMAT_CODEC)
ODOO_18 = OdooSessionRules(18, SID_PATTERN_B64_84, _base64_84_sid, FORMAT_JSON)
ODOO_19 = replace(
    ODOO_18,
    major=19,
    soft_rotation=True,
    rotation_needs_env=True,
    stamps_create_time=True,
    refuses_malformed_identifiers=True,
)
SUPPORTED = {rules.major: rules for rules in (ODOO_17, ODOO_18, ODOO_19)}


def rules_for(odoo_major: int) -> OdooSessionRules:
    try:
        return SUPPORTED[odoo_major]
    except KeyError:
        raise ConfigError(
            f"The Redis session store supports Odoo 17.0, 18.0 and 19.0, not {odoo_major}."
        ) from None


def record_format_of(sid: str) -> bytes | None:
    """The record format of the Odoo version whose ids look like ``sid``
    (a session file says no more about its version than its name)."""
    for rules in SUPPORTED.values():
        if rules.is_valid_sid(sid):
            return rules.record_format
    return None
