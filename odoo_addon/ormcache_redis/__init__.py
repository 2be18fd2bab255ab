import logging

from . import controllers, wizards
from .ormcache_with_ttl import ormcache

_logger = logging.getLogger(__name__)


def post_load():
    # Runs once in the process that loads server-wide modules, before any
    # registry is built and before workers fork.
    from odoo.tools import config

    from ormcache_redis.config import ConfigError, OptionSource
    from ormcache_redis.odoo_support.metrics_access import load_metrics_access

    from . import metrics_publishing
    from .session_store import install_session_store

    install_cache()
    try:
        session_store = install_session_store(OptionSource(config.get))
        metrics_publishing.install(load_metrics_access(OptionSource(config.get)), session_store)
    except ConfigError as error:
        # Sessions configured for Redis must not silently fall back to files,
        # nor metrics open to addresses nobody meant.
        _logger.critical("%s", error)
        raise SystemExit(f"ormcache_redis: {error}") from None


def install_cache() -> None:
    """Connects the engine to Odoo (17.0, 18.0, 19.0). Idempotent.

    Reads the options into the process's state (runtime), wraps the Registry
    (registry_hooks), gives every later ``ormcache`` decoration a
    ``clear_cache`` (method_clear), extends SIGUSR1 (stats_signal) and hooks
    the ORM's writes for ``depends_on=`` (dependencies)."""
    from ormcache_redis.config import ConfigError
    from ormcache_redis.odoo_support.settings import l1_bound_text
    from ormcache_redis.server_check import eviction_warning

    from . import dependencies, method_clear, registry_hooks, runtime, stats_signal

    if runtime.installed():
        return
    try:
        options, secrets, redis_client = runtime.read_options()
    except ConfigError as error:
        # Odoo only logs exceptions of server-wide modules and goes on; a
        # cache that silently runs without its configuration is worse than
        # not starting.
        _logger.critical("%s", error)
        raise SystemExit(f"ormcache_redis: {error}") from None
    try:
        runtime.install(options, secrets, redis_client)
        registry_hooks.install()
        method_clear.patch_ormcache()
        stats_signal.install()
        dependencies.install()
    except Exception as error:
        # Half-installed hooks would be worse than no start at all.
        _logger.critical("cannot install (%s)", error, exc_info=True)
        raise SystemExit(f"ormcache_redis: cannot install: {error}") from error
    _logger.info(
        "every process's caches hold at most %s in L1",
        l1_bound_text(options.l1_max_bytes, options.l1_max_bytes_from),
    )
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
