"""Every L1 of the Odoo process together is bounded by a quarter of
``limit_memory_soft`` (or ``ormcache_redis_l1_max_mb``), and every cache
of the registry draws on that one bound."""

from unittest.mock import patch

import odoo
from odoo.tests import TransactionCase, tagged
from odoo.tools import config

from ormcache_redis import l1_memory
from ormcache_redis.config import OptionSource
from ormcache_redis.odoo_support import settings

from .. import runtime
from ..odoo_version import ODOO

MIB = 1 << 20


@tagged("post_install", "-at_install")
class TestL1Memory(TransactionCase):
    def bound_for(self, **options) -> tuple[int, str]:
        """The bound the addon derives from Odoo's options, as post_load does."""
        with patch.dict(config.options, options):
            derived = settings.load_settings(
                OptionSource(config.get, environ={}),
                ODOO.registry_module()._REGISTRY_CACHES,
                runtime.memory_soft_limit(),
            )
        return derived.l1_max_bytes, derived.l1_max_bytes_from

    def test_the_process_runs_with_the_bound_it_derived(self):
        installed = runtime.installed_settings()
        self.assertEqual(l1_memory()["max_bytes"], installed.l1_max_bytes)
        soft = config["limit_memory_soft"]
        if OptionSource(config.get).raw("ormcache_redis_l1_max_mb") is None and soft:
            self.assertEqual(installed.l1_max_bytes_from, "limit_memory_soft")
            self.assertEqual(installed.l1_max_bytes, soft // 4)

    def test_the_bound_is_a_quarter_of_limit_memory_soft(self):
        self.assertEqual(
            self.bound_for(limit_memory_soft=2048 * MIB, ormcache_redis_l1_max_mb=None),
            (512 * MIB, "limit_memory_soft"),
        )
        self.assertEqual(
            self.bound_for(limit_memory_soft=6144 * MIB, ormcache_redis_l1_max_mb=None),
            (1536 * MIB, "limit_memory_soft"),
        )
        # The option wins; Odoo's 0 ("no limit") leaves the default.
        self.assertEqual(
            self.bound_for(limit_memory_soft=2048 * MIB, ormcache_redis_l1_max_mb="100"),
            (100 * MIB, "ormcache_redis_l1_max_mb"),
        )
        self.assertEqual(
            self.bound_for(limit_memory_soft=0, ormcache_redis_l1_max_mb=None),
            (512 * MIB, "default"),
        )

    def test_the_gevent_process_takes_its_own_limit(self):
        with patch.object(odoo, "evented", True):
            self.assertEqual(
                self.bound_for(
                    limit_memory_soft=2048 * MIB,
                    limit_memory_soft_gevent=1024 * MIB,
                    ormcache_redis_l1_max_mb=None,
                ),
                (256 * MIB, "limit_memory_soft"),
            )
            self.assertEqual(
                self.bound_for(
                    limit_memory_soft=2048 * MIB,
                    limit_memory_soft_gevent=None,
                    ormcache_redis_l1_max_mb=None,
                ),
                (512 * MIB, "limit_memory_soft"),
            )

    def test_every_cache_of_the_registry_draws_on_the_bound(self):
        self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        caches = self.registry._Registry__caches
        memory = l1_memory()
        held = 0
        for name, cache in caches.items():
            stats = cache.stats()
            self.assertEqual(stats["process_max_bytes"], memory["max_bytes"], name)
            held += stats["bytes"]
        self.assertGreater(caches["default"].stats()["bytes"], 0)
        # Other registries of the process (and any other LRU) count too.
        self.assertGreaterEqual(l1_memory()["bytes"], held)
        self.assertLessEqual(l1_memory()["bytes"], memory["max_bytes"])
