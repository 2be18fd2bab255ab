"""Start-up check of a Redis server's memory settings for one use.

Redis with ``maxmemory`` set does one of two things when it is full: it
evicts keys (``allkeys-*`` policies, or ``volatile-*`` for keys with a TTL),
or it refuses writes (``noeviction``). The cache wants the first (an evicted
entry is recomputed; ``allkeys-lru`` or ``allkeys-lfu`` is the recommended
setting), sessions the second or no limit at all: every session key has a
TTL, so even a ``volatile-*`` policy evicts sessions, and an evicted session
is a user logged out. :func:`eviction_warning` reads the settings and returns
one sentence for the log when they do not fit.
"""

from __future__ import annotations

import logging

from ormcache_redis._native import RedisClient, RedisReplyError, RedisUnavailable

__all__ = ["ROLES", "eviction_warning"]

_logger = logging.getLogger(__name__)

ROLES = ("cache", "sessions")


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _config_value(reply: object, name: str) -> str | None:
    """One value of a CONFIG GET reply: a [name, value] list (RESP2) or a
    {name: value} map (RESP3). Anything else is None: the reply is
    untrusted."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    elif isinstance(reply, list) and len(reply) == 2:
        pairs = [(reply[0], reply[1])]
    else:
        return None
    for key, value in pairs:
        if isinstance(key, bytes | str) and isinstance(value, bytes | str):
            key_text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
            if key_text.lower() == name:
                return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return None


def eviction_warning(client: RedisClient, role: str) -> str | None:
    """One sentence to log as a warning when the server's ``maxmemory`` and
    ``maxmemory-policy`` can evict this role's keys (``role="sessions"``:
    any ``allkeys-*`` or ``volatile-*`` policy with ``maxmemory`` set) or
    make its writes fail (``role="cache"``: ``noeviction`` with
    ``maxmemory`` set); None when the setting fits or cannot be read (an ACL
    refusing CONFIG, a renamed or disabled CONFIG command, Redis down: logged
    at debug level).
    """
    if role not in ROLES:
        raise ValueError(f"role must be 'cache' or 'sessions', got {role!r}")
    try:
        replies = client.pipeline(
            [["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "maxmemory-policy"]]
        )
    except (RedisReplyError, RedisUnavailable) as exc:
        _logger.debug("cannot read the memory settings of Redis %s: %s", client.address, exc)
        return None
    limit_text = _config_value(replies[0], "maxmemory") if len(replies) == 2 else None
    policy = _config_value(replies[1], "maxmemory-policy") if len(replies) == 2 else None
    if limit_text is None or policy is None or not limit_text.isdigit():
        _logger.debug("unexpected CONFIG GET replies from Redis %s", client.address)
        return None
    limit = int(limit_text)
    policy = policy.lower()
    if limit == 0:
        return None
    where = f"Redis {client.address} (maxmemory {_human_bytes(limit)}, maxmemory-policy {policy})"
    if role == "sessions" and policy.startswith(("allkeys-", "volatile-")):
        return (
            f"{where} evicts keys when full, sessions included (they have a TTL, so "
            f"volatile-* policies evict them too), which logs users out: keep sessions on a "
            f"Redis that evicts nothing (their own instance, or maxmemory-policy noeviction)."
        )
    if role == "cache" and policy == "noeviction":
        return (
            f"{where} refuses writes when full, so cache entries stop being shared: "
            f"use maxmemory-policy allkeys-lru or allkeys-lfu for the cache."
        )
    return None
