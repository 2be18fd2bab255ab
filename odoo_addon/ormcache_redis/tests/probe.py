"""A stand-in model for the decorator tests: a name, a pool and an env is
all Odoo's ormcache needs. ``read_param`` reads a row with SQL, so only a
method-level clear (not Odoo's signaling) makes the cache see a change;
``category_colors`` declares what it reads and is cleared by the ORM's
writes. It lives in a module (not in a function) so that its methods have
the same name in every process."""

from ..ormcache_with_ttl import ormcache


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

    computed = 0

    @ormcache("active_test", depends_on={"res.partner.category": ["color"]})
    def category_colors(self, active_test=False):
        type(self).computed += 1
        categories = (
            self.env["res.partner.category"]
            .with_context(active_test=active_test)
            .search([], order="id")
        )
        return {category.id: category.color for category in categories}
