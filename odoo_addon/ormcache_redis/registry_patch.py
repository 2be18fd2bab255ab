"""Connects the engine to Odoo's registry (17.0, 18.0, 19.0).

``install()`` runs once, from the manifest's ``post_load`` hook, in the
process that loads server-wide modules (the master, before workers fork).
It also makes every later ``ormcache`` decoration give the method a
``clear_cache`` (method_clear.patch_ormcache). It wraps six Registry
methods; each wrapper calls Odoo's original first or last and only adds the
shared-tier bookkeeping, so Odoo's behaviour (what is
cleared, what is signaled, when) is unchanged:

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
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from ormcache_redis._native import Codec, RedisClient, TwoTierCache, qualified_name
from ormcache_redis.addon import settings, shared_tier, value_types
from ormcache_redis.config import ConfigError, OptionSource
from ormcache_redis.server_check import eviction_warning

from . import deployment_keys, method_clear, native_lookup
from .odoo_version import ODOO

_logger = logging.getLogger("odoo.addons.ormcache_redis")

TIER_ATTRIBUTE = "_ormcache_redis_tier"

_installed: dict[str, Any] = {}


def tier_of(registry: Any) -> shared_tier.SharedTier | None:
    return registry.__dict__.get(TIER_ATTRIBUTE) if registry is not None else None


def installed_settings() -> settings.Settings | None:
    return _installed.get("settings")


def client() -> RedisClient | None:
    return _installed.get("client")


def set_metrics_publisher(publisher: Any) -> None:
    """Started by every process's first unit of work (see check_signaling)."""
    _installed["metrics_publisher"] = publisher


def loaded_registries() -> list[tuple[str, Any]]:
    """``(database, registry)`` of every registry loaded in this process."""
    registries = ODOO.registry_module().Registry.registries
    return sorted(ODOO.lru_snapshot(registries).items())


def build_codec() -> Codec:
    from markupsafe import Markup
    from odoo.tools import frozendict
    from odoo.tools.misc import OrderedSet

    res_lang = importlib.import_module("odoo.addons.base.models.res_lang")
    codec = Codec()
    value_types.register_value_types(
        codec,
        frozendict=frozendict,
        markup=Markup,
        lang_data=res_lang.LangData if ODOO.has_lang_data else None,
        lang_data_dict=res_lang.LangDataDict if ODOO.has_lang_data else None,
        ordered_set=OrderedSet,
    )
    value_types.register_recordset_keys(importlib.import_module("odoo.models").BaseModel)
    return codec


def install() -> None:
    """The ``post_load`` hook. Idempotent."""
    if _installed:
        return
    from odoo.tools import config

    module = ODOO.registry_module()
    try:
        options = settings.load_settings(OptionSource(config.get), module._REGISTRY_CACHES)
        secrets = deployment_keys.deployment_secrets()
        redis_client = (
            RedisClient(
                options.url,
                connect_timeout=options.connect_timeout,
                socket_timeout=options.socket_timeout,
                write_queue=options.write_queue,
                write_queue_bytes=options.write_queue_bytes,
                max_value_bytes=options.max_value_bytes,
            )
            if options.enabled
            else None
        )
    except ConfigError as error:
        # Odoo only logs exceptions of server-wide modules and goes on; a
        # cache that silently runs without its configuration is worse than
        # not starting.
        _logger.critical("%s", error)
        raise SystemExit(f"ormcache_redis: {error}") from None
    try:
        _installed.update(
            settings=options, client=redis_client, codec=build_codec(), secrets=secrets
        )
        _patch_registry(module)
        method_clear.patch_ormcache()
        from . import dependencies, stats_signal  # they read this module's registries

        stats_signal.install()
        dependencies.install()
    except Exception as error:
        # Half-installed registry_patch would be worse than no start at all.
        _logger.critical("cannot install (%s)", error, exc_info=True)
        raise SystemExit(f"ormcache_redis: cannot install: {error}") from error
    if redis_client is None:
        _logger.info(
            "ormcache_redis_url (or ORMCACHE_REDIS_URL, REDIS_URL) is not set, "
            "caches run in this process only (L1)"
        )
    else:
        _logger.info(
            "shared caches %s on %s (expire %ss)",
            ",".join(options.shared_caches),
            redis_client.address,
            options.expire,
        )
        warning = eviction_warning(redis_client, "cache")
        if warning:
            _logger.warning("%s", warning)


# --------------------------------------------------------------------------- registry


def _patch_registry(module: Any) -> None:
    from . import dependencies  # it reads this module's tiers

    Registry = module.Registry
    caches_by_key = module._CACHES_BY_KEY
    # 17/18 skip the database in test mode (setup/check_signaling return
    # early, signal_changes guesses); 19 reads it through the test cursor.
    test_mode = ODOO.in_test_mode

    original_init = Registry.init
    original_new = Registry.__dict__["new"].__func__
    original_check = Registry.check_signaling
    original_signal = Registry.signal_changes
    original_reset = Registry.reset_changes

    @functools.wraps(original_init)
    def init(self, db_name, *args, **kwargs):
        original_init(self, db_name, *args, **kwargs)
        _attach(self, caches_by_key)

    @functools.wraps(original_new)
    def new(cls, db_name, *args, **kwargs):
        registry = original_new(cls, db_name, *args, **kwargs)
        dependencies.index_registry(registry)  # warns of bad depends_on at start-up
        for _model_name, _attribute, function in _cached_methods(registry):
            # Core methods were decorated before the post_load hook patched
            # ormcache: they get their clear_cache here.
            method_clear.give_clear_cache(function)
        try:
            warn_cached_computes(registry)
        except Exception:
            # A diagnostic must never keep a registry from loading.
            _logger.debug("cannot check compute methods", exc_info=True)
        tier = tier_of(registry)
        if tier is not None and not tier.ready:
            _set_local_methods(registry, tier)
            # Without the key, nothing this process wrote would be accepted
            # and nothing it read could be trusted: stay in the process.
            tier.ready = _key_shared_caches(registry, tier)
            if tier.ready and not registry.registry_invalidated and not test_mode(registry):
                _adopt_if_confirmed(registry, tier, caches_by_key)
        return registry

    if _installed["settings"].native_lookup:
        original_setup = getattr(Registry, ODOO.setup_hook)

        # After each setup of the models (every module loaded, every
        # registry): methods of new classes hit natively from then on,
        # Odoo's tests of each module included.
        @functools.wraps(original_setup)
        def setup_models(self, *args, **kwargs):
            original_setup(self, *args, **kwargs)
            native_lookup.install(self)

        setattr(Registry, ODOO.setup_hook, setup_models)

    @functools.wraps(original_check)
    def check_signaling(self, *args, **kwargs):
        registry = original_check(self, *args, **kwargs)
        publisher = _installed.get("metrics_publisher")
        if publisher is not None:
            publisher.start()  # once per process; forked workers start their own
        tier = tier_of(registry)
        if tier is not None and tier.ready:
            tier.begin_budget()
            if not test_mode(registry):
                changed = tier.adopt(registry.registry_sequence, registry.cache_sequences)
                caches = registry._Registry__caches
                for name in changed:
                    # Another thread may have filled L1 from the previous
                    # namespace between Odoo's clear and the switch.
                    caches[name].clear()
            tier.begin_unit(tier.sync_methods())
        return registry

    @functools.wraps(original_signal)
    def signal_changes(self):
        tier = tier_of(self)
        if tier is None or not tier.ready:
            return original_signal(self)
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

    @functools.wraps(original_reset)
    def reset_changes(self):
        tier = tier_of(self)
        if tier is not None:
            tier.rollback_unit()
        return original_reset(self)

    Registry.init = init
    Registry.new = classmethod(new)
    Registry.check_signaling = check_signaling
    Registry.signal_changes = signal_changes
    Registry.reset_changes = reset_changes


def _attach(registry: Any, caches_by_key: dict) -> None:
    """Replaces every cache of the registry with an engine cache."""
    options: settings.Settings = _installed["settings"]
    redis_client = _installed["client"]
    codec = _installed["codec"]
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
        invalidated_names=lambda: registry.cache_invalidated,
        client=redis_client,
        prefix=options.prefix,
        testing=_odoo_test_running,
    )
    registry.__dict__[TIER_ATTRIBUTE] = tier


def _key_shared_caches(registry: Any, tier: shared_tier.SharedTier) -> bool:
    """Gives the shared caches the secret that authenticates their entries;
    False when there is none (they then stay in the process)."""
    if not tier.shared_caches:
        return True
    secret = _installed["secrets"].for_database(registry.db_name)
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
    tier = tier_of(registry)
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


def _cached_methods(registry: Any) -> Iterator[tuple[str, str, Any]]:
    """``(model name, attribute, function)`` of every ``@ormcache`` method
    of the registry's model classes, each defining class once (under the
    first model that has it)."""
    seen: set[int] = set()
    for model_name, model_class in registry.models.items():
        for klass in model_class.__mro__:
            if id(klass) in seen:
                continue
            seen.add(id(klass))
            for attribute, value in vars(klass).items():
                function = getattr(value, "__func__", value)
                if getattr(getattr(function, "__cache__", None), "method", None) is not None:
                    yield model_name, attribute, function


def _set_local_methods(registry: Any, tier: shared_tier.SharedTier) -> None:
    """Every cached method keyed on a secret, or listed in the options,
    stays in the process (all overrides of it, in every module)."""
    options: settings.Settings = _installed["settings"]
    listed = set(options.local_methods)
    local = set()
    for model_name, attribute, function in _cached_methods(registry):
        cache = function.__cache__
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


# module.qualname of the compute methods already reported by
# warn_cached_computes: each is reported once per process.
WARNED_COMPUTES: set[str] = set()


def warn_cached_computes(registry: Any, warned: set[str] = WARNED_COMPUTES) -> None:
    """Warns about compute methods decorated with ``@ormcache``: on a cache
    hit the method body does not run, so nothing is assigned to the field."""
    fields_by_method: dict[str, tuple[Any, str, list[str]]] = {}
    for model_name, model_class in registry.models.items():
        for field in model_class._fields.values():
            compute = field.compute
            if not compute:
                continue
            function = getattr(model_class, compute, None) if isinstance(compute, str) else compute
            function = getattr(function, "__func__", function)
            cache = getattr(function, "__cache__", None)
            if getattr(cache, "method", None) is None:
                continue
            name = qualified_name(cache.method)
            if name in warned:
                continue
            attribute = compute if isinstance(compute, str) else cache.method.__name__
            first_model, _attribute, field_names = fields_by_method.setdefault(
                name, (model_name, attribute, [])
            )
            if first_model == model_name:
                field_names.append(field.name)
    for name, (model_name, attribute, field_names) in fields_by_method.items():
        warned.add(name)
        _logger.warning(
            "%s.%s (%s) computes field(s) %s but is decorated with @ormcache: on a cache hit "
            "it does not run, so the field gets no value. Cache a helper method that returns "
            "the value and assign it in the compute method instead.",
            model_name,
            attribute,
            name,
            ", ".join(field_names),
        )
