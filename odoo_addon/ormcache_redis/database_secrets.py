"""The process's one ``DeploymentSecrets``, reading Odoo's databases.

See ``ormcache_redis.odoo_support.deployment_secrets`` for where the keys come from.
"""

from __future__ import annotations

import functools
from contextlib import closing

from ormcache_redis.config import OptionSource
from ormcache_redis.odoo_support.deployment_secrets import DeploymentSecrets, configured_secret


def read_database_secret(db_name: str) -> str | None:
    """``database.secret`` of ``db_name``, read on the primary with SQL (not
    through the cached ``get_param``, whose entry must never be shared)."""
    import odoo.sql_db

    with closing(odoo.sql_db.db_connect(db_name).cursor()) as cr:
        cr.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.secret'")
        row = cr.fetchone()
    return row[0] if row else None


@functools.cache
def deployment_secrets() -> DeploymentSecrets:
    """Shared by the caches and the session store: each database's secret
    is read once per process. Raises ConfigError for a bad
    ``ormcache_redis_secret``."""
    from odoo.tools import config

    return DeploymentSecrets(configured_secret(OptionSource(config.get)), read_database_secret)
