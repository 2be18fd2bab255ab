"""Type stubs for the Rust engine, ``ormcache_redis._native``."""

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, final

K = TypeVar("K")
V = TypeVar("V")

__version__: str

class EncodeError(TypeError):
    """A value (or key) is outside the codec's closed set of types."""

class DecodeError(ValueError):
    """Bytes are not a valid encoding (garbage, truncated, other format version)."""

class FormatVersionError(DecodeError):
    """Bytes written by another codec format version (a miss for caches)."""

CODEC_FORMAT_VERSION: int
KEY_FORMAT_VERSION: int

class RedisUnavailable(ConnectionError):
    """Redis is unreachable, timed out, or the circuit breaker is open."""

class RedisReplyError(Exception):
    """Redis answered a command with an error reply."""

class ConfigError(ValueError):
    """A configuration value (URL, timeout, size) is invalid."""

# --------------------------------------------------------------------------- codec

@final
class Codec:
    """Safe closed-type codec: Python value <-> bytes. Never pickle.

    Decoding stays within the limits whatever the bytes say (``DecodeError``
    past one); encoding refuses what decoding would refuse (``EncodeError``).
    """

    def __init__(
        self,
        compress_threshold: int = 4096,
        max_depth: int = 128,
        max_decoded_bytes: int = 32 * 1024 * 1024,
        max_decoded_memory: int = 32 * 1024 * 1024,
        max_objects: int = 1_000_000,
        max_hash_collisions: int = 256,
    ) -> None: ...
    @property
    def compress_threshold(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def max_decoded_bytes(self) -> int: ...
    @property
    def max_decoded_memory(self) -> int: ...
    @property
    def max_objects(self) -> int: ...
    @property
    def max_hash_collisions(self) -> int: ...
    def dumps(self, obj: object) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...
    def register_type(
        self,
        cls: type,
        tag: str,
        to_state: Callable[[Any], object],
        from_state: Callable[[Any], object],
    ) -> None:
        """Make ``cls`` (exact type) encodable as ``to_state(obj)``, decoded by ``from_state``."""
    def registered_tags(self) -> list[str]: ...

def canonical_key(key: object) -> bytes:
    """Deterministic encoding of a cache key, equal across processes and runs."""

def key_digest(namespace: bytes, canonical: bytes) -> bytes:
    """SHA-256 of the namespace and the canonical key (32 bytes)."""

# --------------------------------------------------------------------------- L1

class LRU(Generic[K, V]):
    """Thread-safe LRU mapping with Odoo's LRU protocol (17, 18 and 19)."""

    def __init__(
        self,
        count: int,
        pairs: Iterable[tuple[K, V]] | None = None,
        *,
        max_bytes: int = 0,
        ttl: float | None = None,
    ) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    def __getitem__(self, key: K) -> V: ...
    def __setitem__(self, key: K, value: V) -> None: ...
    def __delitem__(self, key: K) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> Iterator[K]: ...
    def set(self, key: K, value: V, ttl: float | None = None) -> None: ...
    def get(self, key: K, default: V | None = None) -> V | None: ...
    def pop(self, key: K, *default: V) -> V: ...
    def clear(self) -> None: ...
    def keys(self) -> list[K]: ...
    def values(self) -> list[V]: ...
    def items(self) -> list[tuple[K, V]]: ...
    @property
    def snapshot(self) -> dict[K, V]:
        """A copy, least recently used first (Odoo 19)."""
    @property
    def d(self) -> dict[K, V]:
        """Same as ``snapshot``; Odoo 17/18 read ``cache.d``."""
    def stats(self) -> dict[str, int]: ...
    def reset_stats(self) -> None: ...

# --------------------------------------------------------------------------- Redis

@final
class RedisClient:
    """Per-process Redis connection pool: timeouts, circuit breaker, fork safety,
    and a background writer (write-behind) with a bounded queue."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 1.0,
        socket_timeout: float = 0.25,
        max_idle: int = 8,
        write_queue: int = 10000,
        failure_threshold: int = 2,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        tls_ca_file: str | os.PathLike[str] | None = None,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``rediss://`` trusts the system store (and ``SSL_CERT_FILE``) unless
        ``tls_ca_file`` names a private CA; cert and key files enable mutual TLS."""
    @property
    def address(self) -> str:
        """Server address without credentials."""
    @property
    def healthy(self) -> bool:
        """False while the circuit breaker is open."""
    @property
    def state(self) -> str:
        """Breaker state: 'closed', 'open' or 'half-open'."""
    def execute(self, *args: bytes | str | int | float) -> Any:
        """Run one command synchronously (GIL released). Replies: None, int,
        bytes, str (status), list, float, bool. Raises RedisUnavailable or
        RedisReplyError."""
    def pipeline(
        self, commands: Sequence[Sequence[bytes | str | int | float]], *, transaction: bool = False
    ) -> list[Any]:
        """Run several commands in one round trip (MULTI/EXEC when transaction).
        An error reply to any command raises RedisReplyError for the whole batch."""
    def enqueue(self, *args: bytes | str | int | float) -> bool:
        """Queue a write for the background writer; False when dropped."""
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write was sent (or dropped)."""
    def ping(self) -> float:
        """Round-trip time in seconds."""
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...

def flush_all_writers(timeout: float = 2.0) -> bool:
    """Flush every write-behind queue of this process (registered with atexit)."""

# --------------------------------------------------------------------------- L1 + L2

class TwoTierCache(LRU[K, V]):
    """L1 (this process) in front of L2 (Redis, shared by every process).

    Lookup: L1, then (when shared and Redis healthy) Redis, else KeyError.
    Store: L1, plus a queued Redis write when the value is encodable.

    ``gate`` (optional) is called on every L2 access: it returns False/None
    (this access stays local), True (read and write Redis now), or a list
    (read Redis; writes are appended to the list as ``(redis_key, payload,
    ttl)`` tuples for the caller to send later with ``commit_writes``).
    """

    def __init__(
        self,
        name: str,
        count: int,
        *,
        client: RedisClient | None,
        codec: Codec,
        namespace: bytes = b"",
        prefix: str = "ormcache:",
        ttl: int = 3600,
        local_methods: Iterable[str] = (),
        secret_markers: Iterable[str] = (),
        gate: Callable[[], bool | list[tuple[bytes, bytes, int]] | None] | None = None,
        max_bytes: int = 0,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    namespace: bytes
    """Part of every Redis key (e.g. database, registry and cache generation);
    changing it is the O(1) clear of the shared tier."""
    shared: bool
    """Master switch of the shared tier for this cache."""
    ttl: int
    local_methods: frozenset[str]
    """Qualified names (``module.Class.method``) whose entries never leave the process."""
    secret_markers: list[str]
    """Lower-case fragments: a key whose string argument contains one stays local
    (e.g. ``_get_param('database.secret')``)."""
    def clear_method(self, method: Callable[..., Any] | str) -> int:
        """Drop the method's entries here and bump its generation in Redis
        (one HINCRBY), so every process misses its old shared entries.
        Returns the number of local entries dropped."""
    def evict_method(self, method: Callable[..., Any] | str) -> int:
        """Drop the method's entries from L1 only."""
    def method_generations(self) -> dict[str, int]:
        """The per-method generations stored in Redis (for cross-process L1 sync)."""
    def commit_writes(self, writes: Sequence[tuple[bytes, bytes, int]]) -> int:
        """Queue deferred writes collected by a gate list; returns how many were queued."""
    @property
    def client(self) -> RedisClient | None: ...
    @property
    def prefix(self) -> str: ...
    gate: Callable[[], bool | list[tuple[bytes, bytes, int]] | None] | None
    def set(self, key: K, value: V, ttl: float | None = None) -> None:
        """Stores with a TTL (seconds) for both tiers; None: the cache's TTL in Redis."""
    def stats(self) -> dict[str, Any]: ...  # type: ignore[override]

# --------------------------------------------------------------------------- decorator

class CachedMethod:
    """The native hit path of ``ormcache_redis.ormcache``; see that function."""

    def __init__(
        self,
        method: Callable[..., Any],
        key: Callable[..., tuple[Any, ...]],
        cache_name: str = "default",
        ttl: float | None = None,
        on_unhashable: Callable[[Any, Any, BaseException], object] | None = None,
    ) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...
    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def method(self) -> Callable[..., Any]: ...
    @property
    def key(self) -> Callable[..., tuple[Any, ...]]: ...
    @property
    def cache_name(self) -> str: ...
    @property
    def ttl(self) -> float | None: ...
    def cache_for(self, obj: Any) -> Any: ...
    def counters(self) -> dict[str, int]: ...
    clear_cache: Callable[[Any], int]
