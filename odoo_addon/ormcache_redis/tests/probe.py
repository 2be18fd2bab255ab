"""A stand-in model for the decorator tests: a name, a pool and an env is
all Odoo's ormcache needs. Its cached method reads a row with SQL, so only
a method-level clear (not Odoo's signaling) makes the cache see a change.
It lives in a module (not in a function) so that its method has the same
name in every process."""

from ..decorator import ormcache


class Probe:
    _name = "ormcache_redis.probe"

    def __init__(self, env):
        self.env = env
        self.pool = env.registry

    @ormcache("key")
    def read_param(self, key):
        self.env.cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", [key])
        row = self.env.cr.fetchone()
        return row[0] if row else None
