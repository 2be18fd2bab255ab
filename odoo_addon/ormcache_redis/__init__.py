import logging

from . import controllers, models
from .decorator import ormcache

_logger = logging.getLogger(__name__)


def post_load():
    # Runs once in the process that loads server-wide modules, before any
    # registry is built and before workers fork.
    from odoo.tools import config

    from ormcache_redis.addon.metrics_access import load_metrics_access
    from ormcache_redis.config import ConfigError, OptionSource

    from . import metrics, registry_patch
    from .session_store import install_session_store

    registry_patch.install()
    try:
        session_store = install_session_store(OptionSource(config.get))
        metrics.install(load_metrics_access(OptionSource(config.get)), session_store)
    except ConfigError as error:
        # Sessions configured for Redis must not silently fall back to files,
        # nor metrics open to addresses nobody meant.
        _logger.critical("%s", error)
        raise SystemExit(f"ormcache_redis: {error}") from None
