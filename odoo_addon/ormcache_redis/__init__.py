# Minimal package for the `sessions` branch only, so Odoo can load the addon
# and run its session tests. The addon's real __init__ (owned by the cache
# wiring branch) replaces this at merge; its post_load must call
# install_session_store() as below.


def post_load():
    from odoo.tools import config

    from ormcache_redis.config import OptionSource

    from .session_store import install_session_store

    install_session_store(OptionSource(config.get))
