"""The process's installed state: what ``post_load`` read and built once
(settings, Redis client, codec, deployment secrets), the shared tier each
registry carries, the metrics publisher. Every other module of the addon
reads it from here; this module imports none of them but ``odoo_version``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ormcache_redis import Codec, RedisClient, set_l1_max_bytes
from ormcache_redis.config import OptionSource
from ormcache_redis.odoo_support import settings, shared_tier, value_types
from ormcache_redis.odoo_support.deployment_secrets import DeploymentSecrets

from . import database_secrets
from .odoo_version import ODOO

TIER_ATTRIBUTE = "_ormcache_redis_tier"

_installed: dict[str, Any] = {}


def installed() -> bool:
    return bool(_installed)


def tier_of(registry: Any) -> shared_tier.SharedTier | None:
    return registry.__dict__.get(TIER_ATTRIBUTE) if registry is not None else None


def installed_settings() -> settings.Settings | None:
    return _installed.get("settings")


def client() -> RedisClient | None:
    return _installed.get("client")


def codec() -> Codec | None:
    return _installed.get("codec")


def secrets() -> DeploymentSecrets | None:
    return _installed.get("secrets")


def set_metrics_publisher(publisher: Any) -> None:
    """Started by every process's first unit of work (see check_signaling)."""
    _installed["metrics_publisher"] = publisher


def metrics_publisher() -> Any:
    return _installed.get("metrics_publisher")


def loaded_registries() -> list[tuple[str, Any]]:
    """``(database, registry)`` of every registry loaded in this process."""
    registries = ODOO.registry_module().Registry.registries
    return sorted(ODOO.lru_snapshot(registries).items())


def read_options() -> tuple[settings.Settings, DeploymentSecrets, RedisClient | None]:
    """The options, the secrets and the client they call for (raises
    ``ConfigError``)."""
    from odoo.tools import config

    module = ODOO.registry_module()
    options = settings.load_settings(
        OptionSource(config.get), module._REGISTRY_CACHES, memory_soft_limit()
    )
    secrets = database_secrets.deployment_secrets()
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
    return options, secrets, redis_client


def memory_soft_limit() -> int | None:
    """Odoo's ``limit_memory_soft`` for this process, in bytes (None: no
    limit): the virtual memory past which Odoo recycles a worker, or a
    threaded server restarts; the gevent process has its own when set
    (``limit_memory_soft_gevent``, 18.0 and 19.0)."""
    import odoo
    from odoo.tools import config

    limit = config.get("limit_memory_soft")
    if getattr(odoo, "evented", False):
        limit = config.get("limit_memory_soft_gevent") or limit
    return int(limit) if limit else None


def install(
    options: settings.Settings, secrets: DeploymentSecrets, redis_client: RedisClient | None
) -> None:
    """Records the process's state (the codec is built here) and bounds
    every L1 of the process together."""
    _installed.update(settings=options, client=redis_client, codec=build_codec(), secrets=secrets)
    set_l1_max_bytes(options.l1_max_bytes)


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
    if ODOO.domain_module_name is not None:
        value_types.register_domain_types(codec, importlib.import_module(ODOO.domain_module_name))
    if ODOO.set_definitions_module_name is not None:
        set_expression = importlib.import_module(ODOO.set_definitions_module_name)
        value_types.register_set_definitions(codec, set_expression)
    value_types.register_recordset_keys(importlib.import_module("odoo.models").BaseModel)
    return codec
