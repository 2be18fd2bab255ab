"""One registry's shared tier: its namespaces, the gate, units of work and
method clears (what names a cache's state in Redis, and the flush epochs
and methods version that move it, are :mod:`.namespaces`).

Plain Python on top of the engine, tested without Odoo
(tests/test_shared_tier.py); the addon's ``registry_hooks`` connects it to
Odoo's registry.

Why the shared tier is safe (the rules the code below implements):

* A Redis entry is only reachable through its namespace: database name,
  registry number and the signaling numbers of the cache, all read from the
  database's own signaling, never guessed. A number Odoo guessed locally
  (``signal_changes`` does ``+= 1`` in 19, and may skip a concurrent signal in
  17/18) suspends the shared tier of that cache until the numbers are read
  back from the database.
* A transaction that invalidated a cache (Odoo's thread-local
  ``registry.cache_invalidated``, with the ``_CACHES_BY_KEY`` cascade) or one
  of its methods neither reads nor writes that cache in Redis.
* Values computed in a transaction are kept in the engine's unit of work and sent only
  when Odoo signals the end of that unit of work (``signal_changes``, which
  runs after commit), minus those of caches the transaction invalidated at
  any point; ``reset_changes`` (rollback) discards them.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ormcache_redis._native import UnitOfWork, qualified_name
from ormcache_redis.config import CACHE_PREFIX
from ormcache_redis.odoo_support.namespaces import (
    METHODS_VERSION_TTL,
    build_namespace,
    flush_epochs_key,
    methods_version_key,
    read_flush_epochs,
    read_methods_version,
    signal_sources,
)

_logger = logging.getLogger("odoo.addons.ormcache_redis")

# (cache name, module.qualname) of every method decorated with this addon's
# ormcache: the only ones another process can clear one by one, so the ones
# whose L1 entries are dropped when the clears cannot be read from Redis.
DECORATED_METHODS: set[tuple[str, str]] = set()


class SharedTier:
    """Shared-tier state of one registry: namespaces, gates, deferred writes
    and method clears. One per registry; the registry's caches are engine
    ``TwoTierCache`` objects (or anything with the same attributes).

    ``invalidated_names`` returns the current thread's set of invalidated
    signaling names (Odoo's ``registry.cache_invalidated``).
    """

    def __init__(
        self,
        *,
        db_name: str,
        caches: Mapping[str, Any],
        caches_by_key: Mapping[str, Iterable[str]],
        shared_caches: Iterable[str],
        invalidated_names: Callable[[], set],
        client: Any = None,
        prefix: str = CACHE_PREFIX,
        testing: Callable[[], Any] | None = None,
    ) -> None:
        self.db_name = db_name
        # True while Odoo runs a test in this process (see _make_gate).
        self.testing = testing
        self.caches = dict(caches)
        self.sources = signal_sources(caches_by_key)
        self.shared_caches = tuple(name for name in shared_caches if name in self.caches)
        self.invalidated_names = invalidated_names
        self.client = client
        self.prefix = prefix
        # Verified numbers (read from the database); None = unknown.
        self.registry_sequence: int | None = None
        self.sequences: dict[str, int] = {}
        # Names whose local number is a guess: their caches stay local.
        self.unverified: set[str] = set()
        self.ready = False
        self._local = threading.local()
        self._lock = threading.Lock()
        # Method-generation sync (see sync_methods).
        self.methods_version: bytes | None = None
        self.clearable_methods: set[tuple[str, str]] = set()
        self.local_method_names: list[str] = []
        # Flush epochs by field ('*' and cache names), read from Redis; None
        # until read: shared caches wait for them (see namespace).
        self.flush_epochs: dict[str, str] | None = None
        self.counters = {
            "pending_dropped_invalidated": 0,
            "pending_dropped_rollback": 0,
            "pending_dropped_overflow": 0,
            "pending_dropped_raced": 0,
            "writes_committed": 0,
            "method_clears": 0,
            "method_clear_fallbacks": 0,
            "suspensions": 0,
            "sync_failures": 0,
            # Units of work that spent their time budget on Redis, and the
            # calls they then did not make (see begin_budget).
            "units_out_of_budget": 0,
            "calls_skipped_out_of_budget": 0,
        }
        self._gates = {name: self._make_gate(name) for name in self.shared_caches}
        for name, cache in self.caches.items():
            cache.shared = False
            if name in self._gates:
                cache.gate = self._gates[name]

    @property
    def methods_version_key(self) -> bytes:
        return methods_version_key(self.prefix, self.db_name).encode()

    # ----------------------------------------------------------------- thread state

    def _thread(self) -> Any:
        state = self._local
        if not hasattr(state, "unit"):
            # Writes before the first begin_unit are never sent: their
            # unit knows no namespace to check them against.
            state.unit = UnitOfWork()
            state.method_clears = []  # [(cache name, method)]
            state.blocked = set()  # cache names with a method cleared in this unit
            state.methods_version = None  # version seen when this unit started
            state.shared_in_tests = False  # see share_in_tests
        return state

    def share_in_tests(self, enabled: bool = True) -> None:
        """Lets the current thread use Redis while a test runs (the addon's
        own shared-tier tests, which drive units of work themselves)."""
        self._thread().shared_in_tests = enabled

    def _make_gate(self, cache_name: str) -> Callable[[], Any]:
        sources = frozenset(self.sources.get(cache_name, (cache_name,)))
        testing = self.testing

        def gate() -> Any:
            # Called by the engine on every access of the shared tier (L1
            # misses and stores), in the thread doing the access.
            invalidated = self.invalidated_names()
            state = self._thread()
            if (
                (invalidated and not sources.isdisjoint(invalidated))
                or cache_name in state.blocked
                # While a test runs, every thread works in the test's one
                # uncommitted transaction (HttpCase requests share its
                # cursor but not the thread-local invalidation flags, and
                # 17.0 runs their signal_changes): Redis would serve them
                # values the test changed and receive values it rolls back.
                or (testing is not None and not state.shared_in_tests and testing())
            ):
                self.counters["pending_dropped_invalidated"] += state.unit.discard(cache_name)
                return False
            return state.unit

        gate.__qualname__ = f"SharedTier.gate[{cache_name}]"
        return gate

    # ----------------------------------------------------------------- generations

    def namespace(self, cache_name: str) -> bytes | None:
        """The namespace of a cache, or None while a number is unknown/guessed."""
        if self.registry_sequence is None:
            return None
        names = self.sources.get(cache_name, (cache_name,))
        if any(name in self.unverified or name not in self.sequences for name in names):
            return None
        if self.client is not None and self.flush_epochs is None:
            return None
        return build_namespace(
            self.db_name,
            self.registry_sequence,
            cache_name,
            (self.sequences[name] for name in names),
            self._flush_epoch(cache_name),
        )

    def _flush_epoch(self, cache_name: str) -> str | None:
        if self.client is None or self.flush_epochs is None:
            return None
        return f"{self.flush_epochs.get('*', '')}.{self.flush_epochs.get(cache_name, '')}"

    def read_flush_epochs(self) -> dict[str, str] | None:
        """The database's flush epochs in Redis (see
        :func:`.namespaces.read_flush_epochs`); None when Redis cannot be asked."""
        if self.client is None:
            return {}
        return read_flush_epochs(self.client, flush_epochs_key(self.prefix, self.db_name))

    def adopt(self, registry_sequence: int, sequences: Mapping[str, int]) -> list[str]:
        """Numbers just read from the database's signaling become the
        namespaces; returns the caches whose namespace changed."""
        if self.flush_epochs is None and self.shared_caches:
            self.flush_epochs = self.read_flush_epochs()
        with self._lock:
            self.registry_sequence = int(registry_sequence)
            self.sequences = {name: int(number) for name, number in sequences.items()}
            self.unverified.clear()
            return self._apply()

    def suspend(self, names: Iterable[str] | None = None) -> None:
        """Local numbers are guesses: stop sharing the affected caches (all
        of them when ``names`` is None) until ``adopt`` reads real numbers."""
        with self._lock:
            self.counters["suspensions"] += 1
            if names is None:
                self.registry_sequence = None
            else:
                self.unverified.update(names)
            self._apply()

    def _apply(self) -> list[str]:
        changed = []
        for name in self.shared_caches:
            cache = self.caches[name]
            namespace = self.namespace(name) if self.ready else None
            if namespace is None:
                cache.shared = False
                continue
            if cache.namespace != namespace:
                cache.namespace = namespace
                changed.append(name)
            cache.shared = True
        return changed

    # ----------------------------------------------------------------- unit of work

    def _new_unit(self) -> UnitOfWork:
        """A unit checking its writes against the namespaces of now."""
        return UnitOfWork([self.caches[name] for name in self.shared_caches])

    def _end_unit(self, state: Any) -> UnitOfWork:
        unit, state.unit = state.unit, self._new_unit()
        self.counters["pending_dropped_overflow"] += unit.overflow
        return unit

    def begin_budget(self) -> None:
        """A request/cron job starts: its Redis calls on this thread share one
        ``socket_timeout`` from now on (the engine's unit budget); once it is
        spent, the unit goes on with L1 and its own computations."""
        if self.client is not None:
            self.client.begin_unit_budget()

    def _end_budget(self) -> None:
        if self.client is None:
            return
        spent = self.client.end_unit_budget()
        if spent is not None and spent[1]:
            self.counters["units_out_of_budget"] += 1
            self.counters["calls_skipped_out_of_budget"] += spent[1]

    def begin_unit(self, methods_version: bytes | None) -> None:
        """A request/cron job starts (Odoo's check_signaling)."""
        state = self._thread()
        state.methods_version = methods_version
        # Writes of a unit that never ended (no commit, no rollback) are not
        # known to be committed: never sent.
        self.counters["pending_dropped_raced"] += self._end_unit(state).discard_all()

    def request_method_clear(self, cache_name: str, method: Callable[..., Any]) -> bool:
        """``method.clear_cache(record)``: drop this process's entries now,
        keep the cache out of Redis for the rest of the transaction, and bump
        the method's generation in Redis when the transaction is committed.

        Returns False when this cache is not shared through Redis: the caller
        then uses Odoo's own (whole cache, database-signaled) invalidation.
        """
        cache = self.caches.get(cache_name)
        if cache is None or cache_name not in self.shared_caches or self.client is None:
            return False
        cache.evict_method(method)
        state = self._thread()
        state.method_clears.append((cache_name, method))
        state.blocked.add(cache_name)
        self.counters["pending_dropped_invalidated"] += state.unit.discard(cache_name)
        self.clearable_methods.add((cache_name, qualified_name(method)))
        return True

    def has_method_clear(self, cache_name: str, method: Callable[..., Any]) -> bool:
        """Whether this unit of work already asked to clear the method."""
        return (cache_name, method) in self._thread().method_clears

    @property
    def has_method_clears(self) -> bool:
        return bool(self._thread().method_clears)

    def publish_method_clears(
        self, registry_sequence: int | None, sequences: Mapping[str, int] | None
    ) -> set[str]:
        """After commit: bump the generations in Redis. ``registry_sequence``
        and ``sequences`` are the numbers just read from the database: a
        generation lives in the namespace of the cache, so it is only bumped
        when this process's namespace is the current one.

        Returns the cache names that must fall back to Odoo's database
        signaling (Redis failed, or this process is behind), so that no
        process keeps serving the old values.
        """
        state = self._thread()
        clears, state.method_clears = state.method_clears, []
        fallback: set[str] = set()
        if not clears:
            return fallback
        current = []
        for cache_name, method in clears:
            cache = self.caches[cache_name]
            names = self.sources.get(cache_name, (cache_name,))
            expected = (
                None
                if registry_sequence is None or sequences is None
                else build_namespace(
                    self.db_name,
                    registry_sequence,
                    cache_name,
                    (sequences.get(name, -1) for name in names),
                    self._flush_epoch(cache_name),
                )
            )
            if cache.shared and expected is not None and cache.namespace == expected:
                current.append((cache_name, method))
            else:
                fallback.add(cache_name)
        try:
            for cache_name, method in current:
                # The version moves with the generation, atomically: a
                # process that read the new generation during its
                # transaction sees the new version when it publishes (see
                # commit_unit), and one that syncs on the new version reads
                # the new generation. A fresh random version, like the
                # generation tokens: a lost key never brings back a version
                # some process remembers.
                move_version = (
                    b"SET",
                    self.methods_version_key,
                    secrets.token_hex(8).encode(),
                    b"EX",
                    str(METHODS_VERSION_TTL).encode(),
                )
                self.caches[cache_name].clear_method(method, with_commands=[move_version])
                self.counters["method_clears"] += 1
        except Exception as error:
            fallback.update(cache_name for cache_name, _method in current)
            _logger.warning(
                "ormcache_redis: cannot clear %d method(s) in Redis (%s); "
                "signaling cache(s) %s through the database instead",
                len(current),
                error,
                ", ".join(sorted(fallback)),
            )
        if fallback:
            self.counters["method_clear_fallbacks"] += 1
        return fallback

    def commit_unit(self, invalidated: Iterable[str], registry_invalidated: bool) -> int:
        """Odoo's signal_changes ran (after commit): send the values computed
        in this unit, except those of caches it invalidated. Returns how many
        writes were queued."""
        try:
            return self._commit_writes(invalidated, registry_invalidated)
        finally:
            self._end_budget()

    def _commit_writes(self, invalidated: Iterable[str], registry_invalidated: bool) -> int:
        state = self._thread()
        unit = self._end_unit(state)
        blocked, state.blocked = state.blocked, set()
        start_version = state.methods_version
        pending = {name: count for name, count in unit.pending().items() if count}
        if not pending:
            return 0
        if registry_invalidated:
            self.counters["pending_dropped_invalidated"] += unit.discard_all()
            return 0
        invalidated = set(invalidated)
        if start_version is None or self.read_methods_version() != start_version:
            # A method was cleared while this unit ran (or we cannot tell):
            # values it computed may predate that clear yet carry the new
            # method generation the engine read during the transaction.
            self.counters["pending_dropped_raced"] += unit.discard_all()
            return 0
        queued = 0
        for cache_name in pending:
            sources = self.sources.get(cache_name, (cache_name,))
            if cache_name in blocked or not invalidated.isdisjoint(sources):
                self.counters["pending_dropped_invalidated"] += unit.discard(cache_name)
                continue
            # The unit drops the writes of a cache whose namespace moved
            # while it ran (another thread of this process committed a
            # change of it): they may carry the newer namespace.
            sent, _dropped, raced = unit.commit(self.caches[cache_name])
            queued += sent
            self.counters["pending_dropped_raced"] += raced
        self.counters["writes_committed"] += queued
        return queued

    def rollback_unit(self) -> None:
        """Odoo's reset_changes: nothing computed in this unit reaches Redis."""
        self._end_budget()
        state = self._thread()
        self.counters["pending_dropped_rollback"] += self._end_unit(state).discard_all()
        clears, state.method_clears = state.method_clears, []
        for cache_name, method in clears:
            # L1 may hold values computed after the clear from the data that
            # was rolled back.
            self.caches[cache_name].evict_method(method)
        state.blocked = set()

    # ----------------------------------------------------------------- method sync

    def read_methods_version(self) -> bytes | None:
        """The current version (see :func:`.namespaces.read_methods_version`);
        None when Redis could not be asked."""
        if self.client is None:
            return None
        return read_methods_version(self.client, self.methods_version_key)

    def sync_methods(self) -> bytes | None:
        """Drops L1 entries of methods another process cleared; returns the
        version read (None when Redis could not be asked).

        One GET per unit of work; the per-method generations (one HGETALL
        per shared cache) are only read when the version moved.
        """
        if self.client is None or not self.shared_caches:
            return None
        version = self.read_methods_version()
        if version is None:
            self.counters["sync_failures"] += 1
            # Cannot know what was cleared elsewhere: drop what a clear
            # could have targeted (only methods of our decorator are).
            for cache_name, method_name in tuple(self.clearable_methods | DECORATED_METHODS):
                if cache_name in self.caches:
                    self.caches[cache_name].evict_method(method_name)
            for cache_name in self.shared_caches:
                self.caches[cache_name].mark_unsynced()
            self.methods_version = None
            return None
        if version == self.methods_version and self.flush_epochs is not None:
            return version
        epochs = self.read_flush_epochs()
        if epochs is None:
            # The version moved but the epochs cannot be read: a flush may
            # be unseen, so this is no sync (retried at the next unit).
            self.counters["sync_failures"] += 1
            for cache_name in self.shared_caches:
                self.caches[cache_name].mark_unsynced()
            return None
        if epochs != self.flush_epochs:
            with self._lock:
                known, self.flush_epochs = self.flush_epochs, epochs
                changed = self._apply()
            if known is not None:
                # Flushed elsewhere: this process's copies go too.
                for cache_name in changed:
                    self.caches[cache_name].clear()
        try:
            for cache_name in self.shared_caches:
                cache = self.caches[cache_name]
                if cache.shared:
                    cache.sync_generations()
        except Exception:
            self.counters["sync_failures"] += 1
            for cache_name in self.shared_caches:
                self.caches[cache_name].mark_unsynced()
            return None
        self.methods_version = version
        return version

    # ----------------------------------------------------------------- visibility

    def stats(self) -> dict[str, Any]:
        caches = {}
        for name, cache in self.caches.items():
            try:
                caches[name] = cache.stats()
            except Exception:
                caches[name] = {}
        return {
            "db": self.db_name,
            "registry_sequence": self.registry_sequence,
            "sequences": dict(self.sequences),
            "unverified": sorted(self.unverified),
            "counters": dict(self.counters),
            "caches": caches,
        }
