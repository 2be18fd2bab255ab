"""Methods cached with Odoo's plain ``odoo.tools.ormcache``, as guides
teach it: ormcache_redis gives them ``clear_cache``; and one with the
addon's own decorator and a time to live."""

from odoo import api, models
from odoo.addons.ormcache_redis import ormcache as ormcache_with_ttl
from odoo.tools import ormcache


class TestOrmcacheRedisProbe(models.AbstractModel):
    _name = "test.ormcache.redis.probe"
    _description = "ormcache_redis test: plain ormcache methods"

    @api.model
    @ormcache("key")
    def _read_param(self, key):
        # SQL behind Odoo's back: only a clear makes the cache see a change.
        self.env.cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", [key])
        row = self.env.cr.fetchone()
        return row[0] if row else None

    @api.model
    @ormcache("key")
    def _read_param_too(self, key):
        self.env.cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", [key])
        row = self.env.cr.fetchone()
        return row[0] if row else None

    @api.model
    @ormcache("key", "suffix", "self.env.uid")
    def _echo(self, key, suffix="!"):
        """Keyed on parameters, a default and an attribute path: the shapes
        the native lookup of Odoo 19 covers."""
        return f"{key}{suffix}:{self.env.uid}"

    @api.model
    @ormcache_with_ttl("key", ttl=1)
    def _echo_for_a_second(self, key):
        """The addon's decorator: the native path, entries living 1 s."""
        self.env.cr.execute("SELECT clock_timestamp()")
        return (key, self.env.cr.fetchone()[0])
