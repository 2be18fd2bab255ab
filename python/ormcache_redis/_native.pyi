"""Type stubs for the Rust engine, ``ormcache_redis._native``."""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, final

from typing_extensions import Self, disjoint_base

_K = TypeVar("_K")
_V = TypeVar("_V")

__version__: str
__all__ = [
    "CODEC_FORMAT_VERSION",
    "KEY_FORMAT_VERSION",
    "LRU",
    "CacheSettings",
    "CachedMethod",
    "Codec",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "FormatVersionError",
    "HitCounter",
    "MetricsSettings",
    "OdooLookup",
    "OptionSpec",
    "RedisClient",
    "RedisReplyError",
    "RedisUnavailable",
    "SessionSettings",
    "TwoTierCache",
    "UnitOfWork",
    "__version__",
    "canonical_key",
    "check_redis_url",
    "flush_all_writers",
    "key_digest",
    "key_method",
    "l1_memory",
    "option_specs",
    "qualified_name",
    "redact_url",
    "register_key_type",
    "set_l1_max_bytes",
    "set_single_flight",
    "url_credentials",
]

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

# --------------------------------------------------------------------------- crypto
# Private: the primitives behind authenticated entries and session records,
# for the package's own modules only (SECURITY.md).

def _derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` derived from ``secret`` (HKDF-SHA-256)."""

def _mac_tag(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under a 32-byte ``key``."""

def _mac_verify(key: bytes, data: bytes, tag: bytes) -> bool:
    """Whether ``tag`` authenticates ``data``, compared in constant time."""

def _aead_seal(key: bytes, plaintext: bytes, associated: bytes = ...) -> bytes:
    """``nonce | ciphertext | tag`` (ChaCha20-Poly1305, random nonce);
    ``associated`` is empty by default."""

def _aead_open(key: bytes, sealed: bytes, associated: bytes = ...) -> bytes | None:
    """The plaintext of :func:`_aead_seal`, or None if anything was altered."""

# --------------------------------------------------------------------------- codec

@final
class Codec:
    """Safe closed-type codec: Python value <-> bytes. Never pickle.

    Decoding stays within the limits whatever the bytes say (``DecodeError``
    past one); encoding refuses what decoding would refuse (``EncodeError``).
    """

    def __new__(
        cls,
        compress_threshold: int = ...,
        max_depth: int = ...,
        max_decoded_bytes: int = ...,
        max_decoded_memory: int = ...,
        max_objects: int = ...,
        max_hash_collisions: int = ...,
    ) -> Self:
        """Defaults: compress_threshold 4096 bytes, max_depth 128,
        max_decoded_bytes and max_decoded_memory 32 MiB, max_objects
        1,000,000, max_hash_collisions 256."""
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

def register_key_type(cls: type, name: str, to_state: Callable[[Any], object]) -> None:
    """Teach the key encoder a type: instances of ``cls`` (subclasses too) are
    encoded as ``name`` and ``to_state(obj)``; an exception keeps the key local.
    Every process sharing entries must register the same types."""

def key_digest(namespace: bytes, canonical: bytes) -> bytes:
    """SHA-256 of the namespace and the canonical key (32 bytes)."""

# --------------------------------------------------------------------------- L1

@disjoint_base
class LRU(Generic[_K, _V]):
    """Thread-safe LRU mapping with Odoo's LRU protocol (17, 18 and 19)."""

    def __new__(
        cls,
        count: int,
        pairs: Iterable[tuple[_K, _V]] | None = None,
        *,
        max_bytes: int = 0,
        ttl: float | None = None,
    ) -> Self: ...
    @property
    def count(self) -> int: ...
    @property
    def max_bytes(self) -> int:
        """Its own bound on its entries' bytes (0: only the process's)."""
    @property
    def total_bytes(self) -> int:
        """The bytes its entries hold (see ``l1_memory``)."""
    def __getitem__(self, key: _K, /) -> _V: ...
    def __setitem__(self, key: _K, value: _V, /) -> None: ...
    def __delitem__(self, key: _K, /) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> Iterator[_K]: ...
    def set(self, key: _K, value: _V, ttl: float | None = None) -> None: ...
    def get(self, key: _K, default: _V | None = None) -> _V | None: ...
    def pop(self, key: _K, *default: _V) -> _V: ...
    def clear(self) -> None: ...
    def keys(self) -> list[_K]: ...
    def values(self) -> list[_V]: ...
    def items(self) -> list[tuple[_K, _V]]: ...
    @property
    def snapshot(self) -> dict[_K, _V]:
        """A copy, least recently used first (Odoo 19)."""
    @property
    def d(self) -> dict[_K, _V]:
        """Same as ``snapshot``; Odoo 17/18 read ``cache.d``."""
    def stats(self) -> dict[str, int]:
        """entries, max_entries, bytes, max_bytes, hits, misses, sets,
        evictions (byte_evictions of them for a byte bound), too_large
        (values larger than a bound, not kept), expirations, and the
        process's process_bytes and process_max_bytes."""
    def reset_stats(self) -> None: ...

def l1_memory() -> dict[str, int]:
    """Every L1 of the process together: ``bytes`` held, ``max_bytes`` (the
    bound), ``byte_evictions`` (least recently used entries evicted for
    it), ``too_large`` (values larger than a bound, not kept), ``caches``."""

def set_l1_max_bytes(max_bytes: int) -> None:
    """Bounds every L1 of the process together; entries beyond the new
    bound go at once, least recently used first. ValueError below 1."""

# --------------------------------------------------------------------------- Redis

@final
class RedisClient:
    """Per-process Redis connection pool: one deadline per call, circuit
    breaker with a background probe, fork safety, and a background writer
    (write-behind) with a queue bounded by count and by bytes.

    Time bounds: every call made for a request (``execute``, ``pipeline``,
    ``ping``, cache lookups) ends within ``socket_timeout`` of its start,
    connecting included (TCP, TLS, AUTH/HELLO/SELECT) and including one retry
    on a fresh connection when a pooled one turns out closed by the server
    before it answered. ``connect_timeout`` bounds background work only: a
    probe opening its connection, and each write-behind batch (plus time
    for its bytes). While the circuit is open, calls raise at once without
    contacting Redis; a background probe PINGs a fresh connection every
    ``retry_initial`` for the first 10 s of an outage, then backs off to
    ``retry_max``, and closes the circuit when Redis answers."""

    def __new__(
        cls,
        url: str,
        *,
        connect_timeout: float = ...,
        socket_timeout: float = ...,
        max_idle: int = 8,
        write_queue: int = ...,
        write_queue_bytes: int = ...,
        failure_threshold: int = 2,
        retry_initial: float = 0.25,
        retry_max: float = 30.0,
        tls_ca_file: str | os.PathLike[str] | None = None,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
        max_value_bytes: int = ...,
    ) -> Self:
        """``url``: one server (``redis://``, ``rediss://``, ``unix://``,
        ``valkey://``), a Sentinel set-up
        (``redis+sentinel://[user:pw@]h1:26379,h2:26379/SERVICE[/DB]``: the
        master the sentinels name, asked again after a failure) or a Redis
        Cluster (``redis+cluster://[user:pw@]h1:7000,h2:7001``, database 0).
        ``rediss://`` trusts the system store (and ``SSL_CERT_FILE``) unless
        ``tls_ca_file`` names a private CA; cert and key files enable mutual TLS.
        The defaults of ``connect_timeout``, ``socket_timeout``,
        ``write_queue``, ``write_queue_bytes`` and ``max_value_bytes`` are
        those of the ``ormcache_redis_*`` options (``config.OPTIONS``; MiB
        there, bytes here).
        ``write_queue`` and ``write_queue_bytes`` bound the write-behind queue
        (commands, and bytes of their arguments); a write that does not fit is
        dropped and counted in ``stats()["writes_dropped_full"]``.
        ``max_value_bytes`` (1 KiB to 512 MiB) bounds what one call may
        receive: a reply announcing a larger value is refused on its length
        prefix, unread (RedisReplyError naming the option; the connection is
        dropped, the circuit does not move), and counted in
        ``stats()["oversized_replies"]``."""
    @property
    def address(self) -> str:
        """Server address without credentials."""
    @property
    def topology(self) -> str:
        """'single', 'sentinel' or 'cluster'."""
    @property
    def healthy(self) -> bool:
        """False while the circuit breaker is open."""
    @property
    def state(self) -> str:
        """Breaker state: 'closed' or 'open'."""
    def execute(self, *args: bytes | str | int | float) -> Any:
        """Run one command synchronously (GIL released). Replies: None, int,
        bytes, str (status), list, float, bool. Raises RedisUnavailable or
        RedisReplyError. A command is sent twice only when the server closed
        a pooled connection as it left, before any reply byte (then it almost
        surely did not run); see docs/outages.md."""
    def pipeline(
        self, commands: Sequence[Sequence[bytes | str | int | float]], *, transaction: bool = False
    ) -> list[Any]:
        """Run several commands in one round trip (MULTI/EXEC when transaction).
        An error reply to any command raises RedisReplyError for the whole batch."""
    def begin_unit_budget(self, seconds: float | None = None) -> None:
        """A unit of work (a request, a job) starts on this thread: its calls on
        this client may spend ``seconds`` together (default ``socket_timeout``);
        once spent they raise RedisUnavailable at once, without contacting
        Redis, until ``end_unit_budget``. Replaces a unit that never ended."""
    def end_unit_budget(self) -> tuple[float, int] | None:
        """Ends this thread's unit: (seconds spent on Redis, calls not made
        because the budget was spent), or None when none was open."""
    def enqueue(self, *args: bytes | str | int | float) -> bool:
        """Queue a write for the background writer; False when dropped."""
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write was sent (or dropped)."""
    def ping(self) -> float:
        """Round-trip time in seconds."""
    def stats(self) -> dict[str, Any]:
        """Counters of this process: calls, errors, skipped_open (refused while
        open), connects, retries, discarded_idle, probes, outages, latency,
        budget_skips (calls not made, or cut, because a lookup's or unit's
        budget was spent), oversized_replies, max_value_bytes,
        and the writer's writes_queued/sent/dropped_full/dropped_unavailable/
        failed, write_batches and write_queue_bytes (queued now). ``node``:
        the server in use (Sentinel: the master now; None for a cluster);
        ``failovers``: masters newly named by the sentinels, or MOVED/ASK
        redirects of a cluster; ``node_replies`` (cluster): replies per node."""
    def close(self) -> None:
        """Close this process's idle connections (new ones open on demand)."""

def flush_all_writers(timeout: float = 2.0) -> bool:
    """Flush every write-behind queue of this process (registered with atexit);
    logs one warning (``ormcache_redis.redis``) with how many queued writes
    were not sent: dropped (Redis unavailable or refusing) or still queued."""

# --------------------------------------------------------------------------- L1 + L2

@final
class UnitOfWork:
    """The shared-tier writes of one request or job, sent only once it commits.

    Built over the caches it may write (their namespaces are remembered: a
    cache whose namespace moved meanwhile gets none of its writes); a gate
    returns it, the engine keeps sealed entries in it (at most 2000 per cache).
    """

    def __new__(cls, caches: Iterable[TwoTierCache[Any, Any]] | None = None) -> Self: ...
    def pending(self) -> dict[str, int]:
        """Writes waiting, per cache name."""
    @property
    def overflow(self) -> int:
        """Writes refused because a cache had 2000 waiting."""
    def discard(self, cache_name: str) -> int:
        """Drop the cache's waiting writes; returns how many."""
    def discard_all(self) -> int:
        """Drop every waiting write; returns how many."""
    def commit(self, cache: TwoTierCache[Any, Any]) -> tuple[int, int, int]:
        """Queue the cache's waiting writes: ``(queued, dropped, raced)``."""

@final
class TwoTierCache(LRU[_K, _V]):
    """L1 (this process) in front of L2 (Redis, shared by every process).

    Lookup: L1, then (when shared and Redis healthy) Redis, else KeyError.
    Store: L1, plus a queued Redis write when the value is encodable.

    ``gate`` (optional) is called on every L2 access: it returns False/None
    (this access stays local), True (read and write Redis now), or a
    :class:`UnitOfWork` (read Redis; writes wait in the unit until the caller
    commits or discards them).
    """

    def __new__(
        cls,
        name: str,
        count: int,
        *,
        client: RedisClient | None,
        codec: Codec,
        namespace: bytes | None = None,
        prefix: str = ...,
        hash_tag: str | None = None,
        ttl: int = ...,
        local_methods: Iterable[str] | None = None,
        secret_markers: Iterable[str] | None = None,
        gate: Callable[[], bool | UnitOfWork | None] | None = None,
        max_bytes: int = 0,
        secret: str | bytes | None = None,
        single_flight_after: float | None = ...,
        single_flight_wait: float = 5.0,
        follow_clears: float | None = ...,
    ) -> Self:
        """``prefix`` and ``ttl`` default to ``ormcache_redis_prefix`` and
        ``ormcache_redis_expire``'s defaults (``config.OPTIONS``).

        ``secret`` keys the HMAC that authenticates every entry in Redis;
        all processes sharing entries need the same one. Without it entries
        are only checked for corruption (one warning per process).

        ``hash_tag`` puts the generations hash in the Redis Cluster slot of
        ``{hash_tag}``, so that ``clear_method(with_commands=...)`` can move
        keys of the same tag in one MULTI/EXEC; entries are never tagged.

        Single flight: on a shared miss of a method whose measured compute
        time is at least ``single_flight_after`` seconds (0.02 by default; None: only methods
        switched on with ``set_single_flight``), one process computes while
        the others wait for its value, at most ``single_flight_wait`` seconds
        (then they compute themselves).

        ``follow_clears`` (seconds, 0.025 by default): a thread polls whether another process
        cleared a method, and the next lookup drops the stale L1 copies first,
        so a clear reaches this process within about that interval while Redis
        is up. None when the owner calls ``sync_generations`` itself (the Odoo
        addon does, per request)."""
    @property
    def name(self) -> str: ...
    namespace: bytes
    """Part of every Redis key (e.g. database, registry and cache generation);
    changing it is the O(1) clear of the shared tier."""
    shared: bool
    """Master switch of the shared tier for this cache."""
    ttl: int
    @property
    def local_methods(self) -> list[str]:
        """Qualified names (``module.Class.method``) whose entries never leave
        the process, sorted."""
    @local_methods.setter
    def local_methods(self, names: Iterable[str]) -> None: ...
    @property
    def secret_markers(self) -> list[str]:
        """Lower-case fragments: a key whose string argument contains one stays
        local (e.g. ``_get_param('database.secret')``)."""
    @secret_markers.setter
    def secret_markers(self, markers: Iterable[str]) -> None: ...
    @property
    def authenticated(self) -> bool:
        """Whether entries are authenticated with a secret."""
    @property
    def secret(self) -> None:
        """Write-only: sets the secret that authenticates entries."""
    @secret.setter
    def secret(self, secret: str | bytes) -> None: ...
    def clear_method(
        self,
        method: Callable[..., Any] | str,
        *,
        with_commands: Sequence[Sequence[bytes]] | None = None,
    ) -> int:
        """Drop the method's entries here and give it a fresh random generation
        token in Redis, so every process misses its old shared entries;
        ``with_commands`` run in the same MULTI/EXEC. Returns the number of
        local entries dropped. When the master has replicas (its ``ROLE``),
        one must confirm the clear (``WAIT``) before the deadline, otherwise
        ``RedisReplyError``: the clear ran on the master, but a failover
        could lose it (the addon then signals the cache through the
        database). ``RedisUnavailable`` when Redis cannot be reached."""
    def evict_method(self, method: Callable[..., Any] | str) -> int:
        """Drop the method's entries from L1 only."""
    def method_generations(self) -> dict[str, int]:
        """The per-method generation tokens stored in Redis."""
    def sync_generations(self) -> list[str]:
        """Drop this process's copies of every method cleared elsewhere since the
        last sync (token changed or vanished in Redis, or differing from the one
        the copies were computed under); returns those methods. Raises
        RedisUnavailable when Redis cannot tell. From then on the owner is
        taken to sync at the start of every unit of work: a shared read of a
        method whose token is known is one GET (see ``mark_unsynced``)."""
    def mark_unsynced(self) -> None:
        """The owner could not sync: until the next ``sync_generations``, every
        shared read asks Redis for the method's token along with the entry."""
    @property
    def client(self) -> RedisClient | None: ...
    @property
    def prefix(self) -> str: ...
    @property
    def hash_tag(self) -> str | None: ...
    @property
    def generations_key(self) -> bytes:
        """The Redis hash of this namespace's method generation tokens."""
    gate: Callable[[], bool | UnitOfWork | None] | None
    """Called on every L2 access: False/None (local), True, or a UnitOfWork."""
    def set(self, key: _K, value: _V, ttl: float | None = None) -> None:
        """Stores with a TTL (seconds) for both tiers; None: the cache's TTL in Redis."""
    def stats(self) -> dict[str, Any]:  # type: ignore[override]
        """Lookups: ``hits`` (a value from either tier) and ``misses`` (nothing);
        ``l1_hits``/``l1_misses`` of the LRU; ``l2_hits``/``l2_misses`` of the
        lookups Redis answered (a miss: absent, ``rejected_entries`` or
        ``forged_entries``), ``l2_errors`` (failed), ``l2_skipped`` (circuit
        open), ``gated``. Stores: ``writes_queued``/``deferred``/``dropped``,
        ``unencodable_values``/``keys``, ``secret_keys``, ``bytes_read``/
        ``written``. Also the LRU's entries, bytes, sets, evictions and
        expirations, Redis latency quantiles, ``shared``, ``redis_healthy``,
        and ``methods``: per method name l1_hits, l2_hits, misses, errors,
        redis_errors, rejected_entries, forged_entries, local_only,
        bytes_read, bytes_written, computations and compute_us (values
        computed after a Redis miss, and their compute time), hit_ratio,
        latency quantiles, ``redis_latency_buckets_us`` (``(upper bound,
        count)`` of each non-empty bucket of the latency histogram) and
        ``redis_latency_sum_us``."""

# --------------------------------------------------------------------------- decorator

@final
class CachedMethod:
    """The native hit path of ``ormcache_redis.ormcache``; see that function."""

    def __new__(
        cls,
        method: Callable[..., Any],
        key: Callable[..., tuple[Any, ...]],
        cache_name: str = "default",
        ttl: float | None = None,
        on_unhashable: Callable[[Any, Any, BaseException], object] | None = None,
        *,
        key_parts: list[tuple[int, list[str], str | None]] | None = None,
        defaults: list[Any] | None = None,
    ) -> Self: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def planned(self) -> bool:
        """Whether calls build their key from ``key_parts`` (see
        ``ormcache_redis.key_plan``) instead of calling ``key``."""
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

@disjoint_base
class HitCounter:
    """The base of the addon's ``@ormcache`` statistics counters: ``hit``
    and ``tx_hit`` held natively, so that ``OdooLookup`` adds a hit without
    a Python int; the addon's subclass takes Odoo's other slots,
    ``__init__`` and properties (``hit_counters.py``)."""

    def __new__(cls) -> Self: ...
    hit: int
    tx_hit: int

@final
class OdooLookup:
    """Odoo's ``@ormcache`` wrapper in one native call: the same key,
    counters (19 ``_COUNTERS`` and ``env.cr.cache['_ormcache_lookups']``,
    17.0/18.0 ``STAT``) and mapping; ``miss(ormcache, cache, key, counter,
    first, args, error)`` runs Odoo's miss and error paths, and calls with
    keywords go through ``wrapper``. The version's rules come from the
    caller: the counters keyed ``(db_name, model_name, method)``
    (``counters_by_model``) or ``(db_name, method)``, and the transaction's
    ``tx_*`` statistics (``transaction_statistics``). ``id_field``: Odoo's
    ``Id`` field class, whose ``record.id`` a key expression then reads
    without its Python ``__get__`` (same result, same errors). Installed by
    the addon (``native_lookup.py``, with ``odoo_version.py``'s record); it
    keeps the wrapper's attributes."""

    def __new__(
        cls,
        wrapper: Callable[..., Any],
        key_parts: Sequence[tuple[int, Sequence[str], str | None]],
        defaults: Sequence[Any],
        counters: Any,
        miss: Callable[..., Any],
        *,
        counters_by_model: bool,
        transaction_statistics: bool,
        id_field: type | None = None,
        counter_class: type[HitCounter] | None = None,
    ) -> Self: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def wrapper(self) -> Callable[..., Any]:
        """Odoo's wrapper this replaces."""
    __cache__: Any

# --------------------------------------------------------------------------- naming

def set_single_flight(method: Callable[..., Any] | str, enabled: bool | None) -> None:
    """Single flight for one method in every cache of this process: always
    (True), never (False), or by measured compute time (None)."""

def qualified_name(obj: object) -> str | None:
    """``module.qualname`` of a function, bound method or class: its name in every process."""

def key_method(key: object) -> Callable[..., Any] | None:
    """The method of an Odoo cache key ``(model_name, method, *args)``, if it is one."""

# --------------------------------------------------------------------------- Redis URLs

def check_redis_url(option: str, url: str) -> str:
    """``url`` when it is a valid Redis URL; else ConfigError, one sentence naming ``option``."""

def redact_url(url: str) -> str:
    """``url`` without its credentials, for logs, reprs and error messages: the
    user part, every credential parameter's value (``?pass=***``), a port that
    is not a number and a fragment other than ``#insecure`` become ``***``."""

def url_credentials(url: str) -> tuple[bool, list[str]]:
    """Whether the client sends a password for ``url``, and the credential-like
    parts it does not read (e.g. ``["?password="]``); ConfigError when invalid."""

# --------------------------------------------------------------------------- options

class _Options(Protocol):
    """Where the parsers read raw option strings: a mapping of name -> str
    or None, or ``ormcache_redis.config.OptionSource``."""

    def get(self, name: str, /) -> str | None: ...

@final
class OptionSpec:
    """One option (src/settings/options.rs): its name, default and rule."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str:
        """url, text, prefix, names, seconds, whole, switch, choice, secret,
        token or networks."""
    @property
    def group(self) -> str:
        """Which reader parses it: cache, secret, metrics or sessions."""
    @property
    def default(self) -> Any:
        """Its value when unset (None: unset means off, or required)."""
    @property
    def bounds(self) -> tuple[float, float] | None:
        """(above, at most] for seconds, [minimum, maximum] for whole numbers."""
    def parse(self, raw: str | None, label: str | None = None) -> Any:
        """``raw`` checked by the option's rule (None: the default); ConfigError,
        one sentence naming ``label`` (default: the option), when bad."""

def option_specs() -> list[OptionSpec]:
    """Every option the project reads, by group."""

@final
class CacheSettings:
    """The addon's ``ormcache_redis_*`` options, checked (src/settings/)."""

    @staticmethod
    def parse(
        options: _Options, known_caches: list[str], memory_soft_limit: int | None = None
    ) -> CacheSettings:
        """``memory_soft_limit``: Odoo's ``limit_memory_soft`` (bytes), from
        which the L1 bound derives when ``ormcache_redis_l1_max_mb`` is unset.
        Raises ConfigError, one sentence naming the option, on a bad value."""
    @property
    def url(self) -> str | None: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def expire(self) -> int: ...
    @property
    def prefix(self) -> str: ...
    @property
    def shared_caches(self) -> list[str]: ...
    @property
    def local_methods(self) -> list[str]:
        """The built-in secret-keyed methods, then ``ormcache_redis_local_methods``."""
    @property
    def connect_timeout(self) -> float: ...
    @property
    def socket_timeout(self) -> float: ...
    @property
    def write_queue(self) -> int: ...
    @property
    def write_queue_bytes(self) -> int: ...
    @property
    def max_value_bytes(self) -> int: ...
    @property
    def l1_max_bytes(self) -> int:
        """Every L1 of the process together: the option, else a quarter of
        ``limit_memory_soft``, else 512 MiB."""
    @property
    def l1_max_bytes_from(self) -> str:
        """``ormcache_redis_l1_max_mb``, ``limit_memory_soft`` or ``default``."""
    @property
    def native_lookup(self) -> bool:
        """Cached methods' hit path in Rust (``ormcache_redis_native_lookup``)."""

@final
class MetricsSettings:
    """The ``ormcache_redis_metrics_*`` options, checked (src/settings/)."""

    @staticmethod
    def parse(options: _Options) -> MetricsSettings:
        """Raises ConfigError, one sentence naming the option, on a bad value."""
    @property
    def allow(self) -> list[str]:
        """Networks allowed to read the route, as ``address/prefix length``."""
    @property
    def token(self) -> str | None: ...
    @property
    def interval(self) -> float: ...

@final
class SessionSettings:
    """The ``session_store*`` options, checked (src/settings/)."""

    def __new__(
        cls,
        url: str,
        *,
        prefix: str = ...,
        anonymous_ttl: int = ...,
        timeout: float = ...,
        secret: str | None = None,
    ) -> Self:
        """Defaults: those of ``session_store_prefix``,
        ``session_store_anonymous_ttl`` and ``session_store_timeout``."""
    @staticmethod
    def parse(options: _Options, labels: Mapping[str, str] | None = None) -> SessionSettings | None:
        """None for Odoo's filesystem store; ConfigError naming the option on a
        bad value (``labels``: option -> the command-line flag that gave it)."""
    @property
    def url(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def anonymous_ttl(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def secret(self) -> str | None: ...
