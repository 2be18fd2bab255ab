"""The Registry hooks: the wrappers of six Registry methods (17.0, 18.0,
19.0), installed once by ``post_load`` (``install``). Each calls Odoo's
original first or last and only adds the shared-tier bookkeeping, so
Odoo's behaviour (what is cleared, what is signaled, when) is unchanged:

* ``init``: the registry's caches become engine ``TwoTierCache`` objects (so
  core methods decorated before this addon loaded use them too);
* ``new``: once the registry is loaded, gives core cached methods their
  ``clear_cache`` (see method_clear), warns about cached compute methods,
  finds the methods that must never leave the process and turns the shared
  tier on if the database confirms the signaling numbers;
* the set-up of the models (``odoo_version.ODOO.setup_hook``): moves the
  hit path of cached methods to Rust (see native_lookup);
* ``check_signaling``: adopts the numbers Odoo just read as namespaces,
  syncs method clears made by other processes, starts a unit of work;
* ``signal_changes`` (after commit): publishes method clears, checks that
  the numbers Odoo set locally are the database's, sends deferred writes;
* ``reset_changes`` (rollback): discards deferred writes.

17/18 skip the database in test mode (setup/check_signaling return early,
signal_changes guesses); 19 reads it through the test cursor
(``ODOO.in_test_mode``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import weakref
from contextlib import closing
from typing import Any

from ormcache_redis import TwoTierCache, qualified_name
from ormcache_redis.odoo_support import settings, shared_tier

from . import cached_methods, dependencies, method_clear, native_lookup, runtime
from .odoo_version import ODOO

_logger = logging.getLogger("odoo.addons.ormcache_redis")

# Odoo's Registry methods, by name, as they were before install().
_original: dict[str, Any] = {}


def _caches_by_key() -> dict:
    return ODOO.registry_module()._CACHES_BY_KEY


def install() -> None:
    """Wraps the Registry's methods (once, from post_load)."""
    Registry = ODOO.registry_module().Registry
    _original.update(
        init=Registry.init,
        new=Registry.__dict__["new"].__func__,
        check_signaling=Registry.check_signaling,
        signal_changes=Registry.signal_changes,
        reset_changes=Registry.reset_changes,
    )
    if runtime.installed_settings().native_lookup:
        _original["setup_models"] = getattr(Registry, ODOO.setup_hook)
        setattr(Registry, ODOO.setup_hook, _wrapping(setup_models, "setup_models"))
    Registry.init = _wrapping(init, "init")
    Registry.new = classmethod(_wrapping(new, "new"))
    Registry.check_signaling = _wrapping(check_signaling, "check_signaling")
    Registry.signal_changes = _wrapping(signal_changes, "signal_changes")
    Registry.reset_changes = _wrapping(reset_changes, "reset_changes")


def _wrapping(hook: Any, name: str) -> Any:
    """``hook`` under the name, documentation and ``__wrapped__`` of Odoo's
    method, as ``functools.wraps`` gives them."""

    @functools.wraps(_original[name])
    def wrapper(*args, **kwargs):
        return hook(*args, **kwargs)

    return wrapper


def init(self, db_name, *args, **kwargs):
    _original["init"](self, db_name, *args, **kwargs)
    _attach(self, _caches_by_key())


def new(cls, db_name, *args, **kwargs):
    registry = _original["new"](cls, db_name, *args, **kwargs)
    dependencies.index_registry(registry)  # warns of bad depends_on at start-up
    for _model_name, _attribute, function in cached_methods.cached_methods(registry):
        # Core methods were decorated before the post_load hook patched
        # ormcache: they get their clear_cache here.
        method_clear.give_clear_cache(function)
    try:
        cached_methods.warn_cached_computes(registry)
    except Exception:
        # A diagnostic must never keep a registry from loading.
        _logger.debug("cannot check compute methods", exc_info=True)
    tier = runtime.tier_of(registry)
    if tier is not None and not tier.ready:
        _set_local_methods(registry, tier)
        # Without the key, nothing this process wrote would be accepted
        # and nothing it read could be trusted: stay in the process.
        tier.ready = _key_shared_caches(registry, tier)
        if tier.ready and not registry.registry_invalidated and not ODOO.in_test_mode(registry):
            _adopt_if_confirmed(registry, tier, _caches_by_key())
    return registry


def setup_models(self, *args, **kwargs):
    # After each setup of the models (every module loaded, every
    # registry): methods of new classes hit natively from then on,
    # Odoo's tests of each module included.
    _original["setup_models"](self, *args, **kwargs)
    native_lookup.install(self)


def check_signaling(self, *args, **kwargs):
    registry = _original["check_signaling"](self, *args, **kwargs)
    publisher = runtime.metrics_publisher()
    if publisher is not None:
        publisher.start()  # once per process; forked workers start their own
    tier = runtime.tier_of(registry)
    if tier is not None and tier.ready:
        tier.begin_budget()
        if not ODOO.in_test_mode(registry):
            changed = tier.adopt(registry.registry_sequence, registry.cache_sequences)
            caches = registry._Registry__caches
            for name in changed:
                # Another thread may have filled L1 from the previous
                # namespace between Odoo's clear and the switch.
                caches[name].clear()
        tier.begin_unit(tier.sync_methods())
    return registry


def signal_changes(self):
    original_signal = _original["signal_changes"]
    tier = runtime.tier_of(self)
    if tier is None or not tier.ready:
        return original_signal(self)
    test_mode = ODOO.in_test_mode
    caches_by_key = _caches_by_key()
    if tier.has_method_clears:
        if test_mode(self):
            fallback = tier.publish_method_clears(None, None)
        else:
            registry_sequence, sequences = _read_sequences(self)
            fallback = tier.publish_method_clears(registry_sequence, sequences)
        names = [name for name in fallback if name in caches_by_key]
        if names:
            self.clear_cache(*names)
    invalidated = set(self.cache_invalidated)
    registry_invalidated = bool(self.registry_invalidated)
    registry_before = self.registry_sequence
    sequences_before = dict(self.cache_sequences)
    original_signal(self)
    if registry_invalidated:
        tier.suspend(None)
        if not test_mode(self):
            _adopt_if_confirmed(self, tier, caches_by_key, registry_before + 1)
    elif invalidated:
        if test_mode(self):
            tier.suspend(invalidated)
        else:
            _confirm_signal(self, tier, invalidated, sequences_before)
    tier.commit_unit(invalidated, registry_invalidated)


def reset_changes(self):
    tier = runtime.tier_of(self)
    if tier is not None:
        tier.rollback_unit()
    return _original["reset_changes"](self)


def _attach(registry: Any, caches_by_key: dict) -> None:
    """Replaces every cache of the registry with an engine cache."""
    options: settings.Settings = runtime.installed_settings()
    redis_client = runtime.client()
    codec = runtime.codec()
    caches = registry._Registry__caches
    two_tier = {}
    for name, lru in caches.items():
        shared = redis_client is not None and name in options.shared_caches
        two_tier[name] = TwoTierCache(
            name,
            lru.count,
            client=redis_client if shared else None,
            codec=codec,
            prefix=options.prefix,
            # Redis Cluster: the database's generations hashes share a slot
            # with its methods-version key (one MULTI/EXEC moves both).
            hash_tag=registry.db_name,
            ttl=options.expire,
            secret_markers=settings.SECRET_KEY_MARKERS,
            # Synced at each request's check_signaling (shared_tier).
            follow_clears=None,
        )
    caches.update(two_tier)
    tier = shared_tier.SharedTier(
        db_name=registry.db_name,
        caches=caches,
        caches_by_key=caches_by_key,
        shared_caches=options.shared_caches if redis_client is not None else (),
        # Weakly: the caches' gates hold the tier, and a registry that is
        # gone must not be kept by them.
        invalidated_names=functools.partial(_invalidated_names, weakref.ref(registry)),
        client=redis_client,
        prefix=options.prefix,
        testing=_odoo_test_running,
    )
    registry.__dict__[runtime.TIER_ATTRIBUTE] = tier


def _invalidated_names(registry_ref: weakref.ref) -> set:
    """The registry's caches invalidated in this thread (none once it is gone)."""
    registry = registry_ref()
    return set() if registry is None else registry.cache_invalidated


def _key_shared_caches(registry: Any, tier: shared_tier.SharedTier) -> bool:
    """Gives the shared caches the secret that authenticates their entries;
    False when there is none (they then stay in the process)."""
    if not tier.shared_caches:
        return True
    secret = runtime.secrets().for_database(registry.db_name)
    if secret is None:
        _logger.warning(
            "database %r has no database.secret and ormcache_redis_secret is not set: "
            "its caches stay in this process",
            registry.db_name,
        )
        return False
    caches = registry._Registry__caches
    for name in tier.shared_caches:
        caches[name].secret = secret
    return True


def _odoo_test_running() -> bool:
    """Odoo's own marker, set by its test runner for the duration of each
    test (17.0, 18.0, 19.0); always false in a server that runs no test."""
    return bool(_odoo_module_module().current_test)


@functools.cache
def _odoo_module_module() -> Any:
    return importlib.import_module("odoo.modules.module")


def adopt_from_database(registry: Any) -> bool:
    """What check_signaling does for the shared tier, without Odoo's part:
    turns sharing on if the database holds the numbers the registry has.
    (Tests use it: in 17.0 the registry of a test run is never signaled.)"""
    tier = runtime.tier_of(registry)
    if tier is None or not tier.ready:
        return False
    return _adopt_if_confirmed(registry, tier, ODOO.registry_module()._CACHES_BY_KEY)


def _read_sequences(registry: Any) -> tuple[int, dict[str, int]]:
    # The primary, not a replica: a lagging replica would give old numbers.
    with closing(registry.cursor()) as cr:
        return registry.get_sequences(cr)


def _adopt_if_confirmed(
    registry: Any,
    tier: shared_tier.SharedTier,
    caches_by_key: dict,
    expected_registry: int | None = None,
) -> bool:
    """Turns sharing on when the database holds the numbers Odoo has."""
    try:
        registry_sequence, sequences = _read_sequences(registry)
    except Exception:
        _logger.debug("cannot read signaling numbers", exc_info=True)
        return False
    local = registry.cache_sequences
    if (
        registry_sequence == registry.registry_sequence
        and (expected_registry is None or registry_sequence == expected_registry)
        and all(sequences.get(name) == local.get(name) for name in caches_by_key)
    ):
        tier.adopt(registry_sequence, sequences)
        return True
    return False


def _confirm_signal(
    registry: Any, tier: shared_tier.SharedTier, invalidated: set[str], before: dict[str, int]
) -> None:
    """After Odoo signaled ``invalidated``: keep sharing those caches only
    if the numbers Odoo now holds are the database's and nobody else
    signaled in between; otherwise they stay local until check_signaling."""
    try:
        registry_sequence, sequences = _read_sequences(registry)
    except Exception:
        tier.suspend(invalidated)
        return
    local = registry.cache_sequences
    confirmed = registry_sequence == tier.registry_sequence and all(
        sequences.get(name) == local.get(name) == before.get(name, -2) + 1 for name in invalidated
    )
    if confirmed:
        numbers = dict(tier.sequences)
        numbers.update({name: sequences[name] for name in invalidated})
        tier.adopt(registry_sequence, numbers)
    else:
        tier.suspend(invalidated)


def _set_local_methods(registry: Any, tier: shared_tier.SharedTier) -> None:
    """Every cached method keyed on a secret, or listed in the options,
    stays in the process (all overrides of it, in every module)."""
    options: settings.Settings = runtime.installed_settings()
    listed = set(options.local_methods)
    local = set()
    for model_name, attribute, function in cached_methods.cached_methods(registry):
        cache = cached_methods.ormcache_of(function)
        method = cache.method
        name = qualified_name(method)
        exprs = [*getattr(cache, "args", ()), *map(str, getattr(cache, "keys", ()) or ())]
        try:
            parameters = list(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            parameters = []
        if (
            f"{model_name}.{attribute}" in listed
            or name in listed
            or settings.looks_secret(exprs, parameters[1:])
        ):
            local.add(name)
    frozen = frozenset(local)
    for cache in registry._Registry__caches.values():
        cache.local_methods = frozen
    tier.local_method_names = sorted(frozen)
