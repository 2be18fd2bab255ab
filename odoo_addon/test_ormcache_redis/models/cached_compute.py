"""The misuse ormcache_redis warns about: a compute method under
``@ormcache`` assigns nothing to the field on a cache hit."""

from odoo import fields, models
from odoo.tools import ormcache


class TestOrmcacheRedisCachedCompute(models.AbstractModel):
    _name = "test.ormcache.redis.cached.compute"
    _description = "ormcache_redis test: a compute method under @ormcache"

    doubled_id = fields.Integer(compute="_compute_doubled_id")

    @ormcache("self.id")
    def _compute_doubled_id(self):
        for record in self:
            record.doubled_id = record.id * 2
