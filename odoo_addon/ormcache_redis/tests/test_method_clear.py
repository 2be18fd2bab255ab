"""Methods decorated with Odoo's plain ``odoo.tools.ormcache`` get
``clear_cache`` (test_workers.py shows it reaching another process)."""

import uuid

from odoo.tests import TransactionCase, tagged
from odoo.tools import ormcache, ormcache_context
from odoo.tools.cache import get_cache_key_counter

from ormcache_redis import qualified_name

from .. import cached_methods
from ..odoo_version import ODOO
from .common import SharedTierCase

PROBE = "test.ormcache.redis.probe"
CACHED_COMPUTE = "test.ormcache.redis.cached.compute"


def require_test_models(env):
    if PROBE not in env:
        raise RuntimeError("these tests need the test_ormcache_redis addon installed")


class Routing:
    """Quacks like a model for Odoo's ormcache; its method is cached in
    ``routing``, a cache that never goes to Redis."""

    _name = "ormcache_redis.routing_probe"

    def __init__(self, env):
        self.env = env
        self.pool = env.registry

    @ormcache("key", cache="routing")
    def lookup(self, key):
        return key


class TestPlainOrmcacheClearCache(SharedTierCase):
    def setUp(self):
        super().setUp()
        require_test_models(self.env)
        self.probe = self.env[PROBE]
        self.key = f"ormcache_redis.test.{uuid.uuid4().hex}"
        # SQL, not set_param: set_param would signal the whole cache.
        self.env.cr.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES (%s, 'v0')", [self.key]
        )

    def update(self, value):
        self.env.cr.execute(
            "UPDATE ir_config_parameter SET value = %s WHERE key = %s", [value, self.key]
        )

    def test_every_plain_ormcache_method_has_clear_cache(self):
        # Decorated after the post_load hook (a custom addon's model).
        self.assertTrue(callable(self.probe._read_param.clear_cache))
        # Decorated before it (base is imported first): given at registry set-up.
        self.assertTrue(callable(self.env["ir.model.data"]._xmlid_lookup.clear_cache))

        class own_ormcache(ormcache):
            pass

        class Subclassed:
            @own_ormcache("key")
            def lookup(self, key):
                return key

        self.assertTrue(callable(Subclassed.lookup.clear_cache))
        if ODOO.major < 19:  # 19.0's ormcache_context cannot decorate

            class InContext:
                @ormcache_context("key", keys=("lang",))
                def lookup(self, key, context=None):
                    return key

            self.assertTrue(callable(InContext.lookup.clear_cache))

    def test_clear_cache_clears_that_method_only(self):
        self.assertEqual(self.probe._read_param(self.key), "v0")
        self.assertEqual(self.probe._read_param_too(self.key), "v0")
        xmlid = self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        self.update("v1")
        self.probe._read_param.clear_cache(self.probe)
        self.assertEqual(self.probe._read_param(self.key), "v1")
        self.assertEqual(self.probe._read_param_too(self.key), "v0")
        cache = self.caches["default"]
        _cache, key, _counter = get_cache_key_counter(
            self.env["ir.model.data"]._xmlid_lookup, "base.user_admin"
        )
        self.assertEqual(cache[key], xmlid)
        # A method clear, not Odoo's signaling of the whole cache: it is
        # published when the transaction commits.
        self.assertNotIn("default", self.registry.cache_invalidated)
        method = self.probe._read_param.__cache__.method
        self.assertEqual(
            [(name, qualified_name(m)) for name, m in self.tier._thread().method_clears],
            [("default", qualified_name(method))],
        )

    def test_core_method_clear_cache(self):
        xmlid_lookup = self.env["ir.model.data"]._xmlid_lookup
        xmlid_lookup("base.user_admin")
        self.probe._read_param(self.key)
        xmlid_lookup.clear_cache(self.env["ir.model.data"])
        cache = self.caches["default"]
        names = {qualified_name(key[1]) for key in cache.keys() if len(key) > 1}
        self.assertNotIn(qualified_name(xmlid_lookup.__cache__.method), names)
        self.assertIn(qualified_name(self.probe._read_param.__cache__.method), names)

    def test_cache_not_shared_falls_back_to_odoo_signaling(self):
        probe = Routing(self.env)
        self.assertNotIn("routing", self.tier.shared_caches)
        probe.lookup("a")
        probe.lookup.clear_cache(probe)
        self.assertIn("routing", self.registry.cache_invalidated)


@tagged("post_install", "-at_install")
class TestCachedComputeWarning(TransactionCase):
    def setUp(self):
        super().setUp()
        require_test_models(self.env)
        self.method_name = qualified_name(
            type(self.env[CACHED_COMPUTE])._compute_doubled_id.__cache__.method
        )

    def test_reported_once_at_registry_set_up(self):
        self.assertIn(self.method_name, cached_methods.WARNED_COMPUTES)
        warned = set()
        with self.assertLogs("odoo.addons.ormcache_redis", "WARNING") as logs:
            cached_methods.warn_cached_computes(self.registry, warned)
        lines = [line for line in logs.output if self.method_name in line]
        self.assertEqual(len(lines), 1, logs.output)
        for expected in (CACHED_COMPUTE, "doubled_id", "_compute_doubled_id", "helper"):
            self.assertIn(expected, lines[0])
        with self.assertNoLogs("odoo.addons.ormcache_redis", "WARNING"):
            cached_methods.warn_cached_computes(self.registry, warned)
