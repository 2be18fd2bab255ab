"""Odoo HTTP sessions in Redis: the part that touches Odoo.

``install_session_store(options)`` is called by the addon's ``post_load`` hook
(the addon is a server-wide module, so this runs at start-up, before the first
request and before workers fork). With ``session_store = redis`` it replaces
``odoo.http.root.session_store`` with a ``RedisSessionStore``; otherwise
Odoo's filesystem store stays.

The store itself, its Redis layout and record format need no Odoo: they are
``ormcache_redis.sessions`` in the package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ormcache_redis import RedisClient, RedisReplyError, RedisUnavailable
from ormcache_redis.config import OptionSource, redact_url
from ormcache_redis.server_check import eviction_warning
from ormcache_redis.sessions.settings import session_store_settings
from ormcache_redis.sessions.store import RedisSessionStore

from .odoo_version import ODOO

_logger = logging.getLogger(__name__)


def _odoo_session_lifetime() -> int:
    """Odoo's own ``get_session_max_inactivity`` on the current request's env
    (``sessions.max_inactivity_seconds``, default 7 days)."""
    from odoo import http

    try:
        request = http.request
        env = request.env if request else None
        return int(http.get_session_max_inactivity(env))
    except Exception:
        return int(http.SESSION_LIFETIME)


def _replace_application_session_store(http_module: Any, store: RedisSessionStore) -> None:
    """Make ``root.session_store`` our store in this process and every fork.

    Odoo declares it with a non-data descriptor caching the value in the
    instance ``__dict__`` (``ODOO.session_store_descriptor``: 17/18
    ``lazy_property``, 19 ``functools.cached_property``). We put a descriptor
    of the same kind on the class (so a reset, ``del root.session_store`` or
    ``lazy_property.reset_all(root)``, rebuilds our store, never a filesystem
    one; and tests patching ``Application.session_store`` still can), and
    replace any value already cached on ``root``.
    """
    application = http_module.Application

    def session_store(self: Any) -> RedisSessionStore:
        return store

    application.session_store = ODOO.session_store_descriptor(
        session_store, application, "session_store"
    )
    vars(http_module.root)["session_store"] = store


def install_session_store(
    option_source: OptionSource, *, client_factory: Callable[..., RedisClient] = RedisClient
) -> RedisSessionStore | None:
    """Install the Redis session store when configured; ``None`` when Odoo's
    filesystem store stays. Raises ``ConfigError`` on invalid options: a
    server configured for Redis sessions must not start on files."""
    settings = session_store_settings(option_source)
    if settings is None:
        return None
    from odoo import http
    from odoo.service import security

    from .database_secrets import deployment_secrets

    client = client_factory(
        settings.url, connect_timeout=settings.timeout, socket_timeout=settings.timeout
    )
    store = RedisSessionStore(
        client,
        session_class=http.Session,
        odoo_major=ODOO.major,
        compute_session_token=security.compute_session_token,
        record_secret_for=deployment_secrets().for_database,
        lifetime=_odoo_session_lifetime,
        prefix=settings.prefix,
        anonymous_ttl=settings.anonymous_ttl,
        secret=settings.secret,
    )
    _replace_application_session_store(http, store)
    _logger.info(
        "HTTP sessions are stored in Redis at %s (prefix %r, anonymous sessions kept %ss).",
        redact_url(settings.url),
        settings.prefix,
        settings.anonymous_ttl,
    )
    try:
        client.ping()
    except (RedisUnavailable, RedisReplyError) as exc:
        _logger.warning(
            "Redis for HTTP sessions at %s does not answer yet (%s): requests that need a "
            "session get 503 until it does.",
            redact_url(settings.url),
            exc,
        )
    else:
        warning = eviction_warning(client, "sessions")
        if warning:
            _logger.warning("%s", warning)
    return store
