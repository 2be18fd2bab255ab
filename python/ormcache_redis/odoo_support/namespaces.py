"""What names one registry's cache state in Redis, and the two records
that move it: the namespace hashed into every key of a cache (database,
registry, signaling numbers, flush epoch), the database's flush epochs
(moved by ``ormcache-redis flush``) and its methods version (moved by
every method clear and flush). Their keys, the flush's commands, and how
the epochs and the version are read back from Redis, untrusted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

# Seconds the method-clear version lives in Redis after the last clear. When
# it expires every process re-reads the generations once: nothing is lost.
METHODS_VERSION_TTL = 7 * 86400


def build_namespace(
    db_name: str,
    registry_sequence: int,
    cache_name: str,
    generations: Iterable[int],
    flush_epoch: str | None = None,
) -> bytes:
    """What names one state of one cache: the engine hashes it into every
    Redis key. Database names cannot hold ':' (Odoo's db name filter), so the
    fields cannot run into each other. ``flush_epoch`` is the cache's epoch
    from ``ormcache-redis flush`` (see ``SharedTier.read_flush_epochs``)."""
    generation = ".".join(str(int(number)) for number in generations)
    namespace = f"{db_name}:r{int(registry_sequence)}:{cache_name}:g{generation}"
    if flush_epoch is not None:
        namespace += f":f{flush_epoch}"
    return namespace.encode()


def methods_version_key(prefix: str, db_name: str) -> str:
    """Moves with every method clear and flush of the database: each process
    reads it once per unit of work and re-syncs when it moved. The database
    name is its Redis Cluster hash tag, as for the database's generations
    hashes (TwoTierCache ``hash_tag``) and flush epochs: the transactions
    that move them together stay in one slot."""
    return f"{prefix}{{{db_name}}}:methods-version"


def flush_epochs_key(prefix: str, db_name: str) -> str:
    """Hash of the database's flush epochs: field ``*`` (every cache) and one
    per flushed cache, each a random token that is part of the namespace."""
    return f"{prefix}{{{db_name}}}:flush"


# What a flush epoch read from Redis may look like (anything else is ignored).
_EPOCH = re.compile(rb"[0-9a-f]{1,32}")
_EPOCH_FIELD = re.compile(rb"\*|[A-Za-z0-9_.-]{1,64}")


def flush_commands(prefix: str, db_name: str, cache_name: str | None) -> list[tuple[Any, ...]]:
    """The O(1) flush of one database's shared caches (or one of them): a
    new epoch (a new namespace: every entry of the old one becomes
    unreachable and expires by its TTL) and a new methods version, so every
    process re-reads the epochs, and drops its L1, at its next unit of work.
    Run them in one MULTI/EXEC."""
    return [
        ("HSET", flush_epochs_key(prefix, db_name), cache_name or "*", secrets.token_hex(8)),
        (
            "SET",
            methods_version_key(prefix, db_name),
            secrets.token_hex(8),
            "EX",
            METHODS_VERSION_TTL,
        ),
    ]


def signal_sources(caches_by_key: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """For each cache, the signaling names whose invalidation clears it.

    Odoo signals names (``default``, ``stable``...) and clears caches by
    cascade (19: ``stable`` clears ``default`` too), so the generation of the
    ``default`` cache is the pair of numbers (default, stable).
    """
    sources: dict[str, list[str]] = {}
    for signal_name, cache_names in caches_by_key.items():
        for cache_name in cache_names:
            sources.setdefault(cache_name, []).append(signal_name)
    return {name: tuple(names) for name, names in sources.items()}


def read_flush_epochs(client: Any, key: str) -> dict[str, str] | None:
    """The flush epochs in the hash at ``key``; None when Redis cannot be
    asked. A missing ``*`` epoch (never flushed, evicted, lost in a
    failover) is replaced by a fresh random one, never taken as empty:
    losing the hash must not bring back the namespace of before a flush.
    Fields that are not ``*`` or a cache name are ignored, and a value
    that is not what ``flush_commands`` writes is hashed (Redis is
    untrusted; every process still reads the same epoch)."""
    try:
        reply = client.execute("HGETALL", key)
        epochs = _epoch_pairs(reply)
        if "*" not in epochs:
            _created, reply = client.pipeline(
                [("HSETNX", key, "*", secrets.token_hex(8)), ("HGETALL", key)]
            )
            epochs = _epoch_pairs(reply)
    except Exception:
        return None
    return epochs if "*" in epochs else None


def read_methods_version(client: Any, key: bytes) -> bytes | None:
    """The methods version at ``key``; None when Redis could not be asked.

    A missing version (never set, expired, evicted) is replaced by a
    fresh random one, never read as a constant: a process that
    remembers the version from before the loss then sees it move and
    re-reads the generations, so no clear goes unnoticed."""
    try:
        value = client.execute("GET", key)
        if value is None:
            _created, value = client.pipeline(
                [
                    ("SET", key, secrets.token_hex(8), "NX", "EX", METHODS_VERSION_TTL),
                    ("GET", key),
                ]
            )
    except Exception:
        return None
    return value if isinstance(value, bytes) else None


def _epoch_pairs(reply: object) -> dict[str, str]:
    """HGETALL's reply (a flat list, or a map in RESP3), keeping only the
    fields and values ``flush_commands`` writes."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    elif isinstance(reply, list) and len(reply) % 2 == 0:
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    else:
        return {}
    return {
        field.decode(): _epoch_text(value)
        for field, value in pairs[:256]
        if isinstance(field, bytes) and isinstance(value, bytes) and _EPOCH_FIELD.fullmatch(field)
    }


def _epoch_text(value: bytes) -> str:
    # Another value (written by hand, or by someone who can write to Redis)
    # still names one epoch, the same in every process.
    if _EPOCH.fullmatch(value):
        return value.decode()
    return hashlib.sha256(value).hexdigest()[:32]
