import signal

from markupsafe import Markup
from odoo.tools import frozendict

from ormcache_redis import TwoTierCache, UnitOfWork, qualified_name
from ormcache_redis.odoo_support import namespaces

from .. import runtime, stats_signal
from ..odoo_version import ODOO, odoo_cache
from .common import SharedTierCase


class TestRegistryPatch(SharedTierCase):
    def test_every_registry_cache_is_two_tier(self):
        self.assertTrue(self.caches)
        for name, cache in self.caches.items():
            self.assertIsInstance(cache, TwoTierCache, name)
            self.assertEqual(cache.name, name)

    def test_shared_and_local_caches(self):
        shared = set(runtime.installed_settings().shared_caches)
        self.assertIn("default", shared)
        for name, cache in self.caches.items():
            if name in shared:
                self.assertIsNotNone(cache.client, name)
                self.assertTrue(cache.shared, name)
            else:
                # routing* and templates.cached_values hold process-bound objects.
                self.assertIsNone(cache.client, name)

    def test_namespace_is_the_database_signaling(self):
        with self.registry.cursor() as cr:
            registry_sequence, sequences = self.registry.get_sequences(cr)
        sources = namespaces.signal_sources(ODOO.registry_module()._CACHES_BY_KEY)
        for name in runtime.installed_settings().shared_caches:
            expected = namespaces.build_namespace(
                self.env.cr.dbname,
                registry_sequence,
                name,
                [sequences[source] for source in sources[name]],
                self.tier._flush_epoch(name),  # ormcache-redis flush's epoch
            )
            self.assertEqual(self.caches[name].namespace, expected)
            self.assertIn(self.env.cr.dbname.encode(), expected)

    def test_flush_moves_the_namespace_and_drops_l1_at_the_next_unit(self):
        # What `ormcache-redis flush --db NAME` sends, from another process.
        self.env["ir.model.data"]._xmlid_lookup("base.main_company")
        default = self.caches["default"]
        before = default.namespace
        self.assertTrue(len(default))
        options = runtime.installed_settings()
        runtime.client().pipeline(
            namespaces.flush_commands(options.prefix, self.env.cr.dbname, None), transaction=True
        )
        self.tier.begin_unit(self.tier.sync_methods())  # what the next request does
        self.assertNotEqual(default.namespace, before)
        self.assertEqual(len(default), 0)
        self.assertTrue(default.shared)

    def test_secret_keyed_methods_stay_in_the_process(self):
        Users = self.env["res.users"]
        local = set(self.caches["default"].local_methods)
        for attribute in ("check", "_check_uid_passwd", "_compute_session_token"):
            method = getattr(type(Users), attribute, None)
            if method is None:
                continue
            cached = getattr(method, "__func__", method).__cache__.method
            self.assertIn(qualified_name(cached), local, attribute)
        # And a real computation is counted as local only.
        name = qualified_name(type(Users)._compute_session_token.__cache__.method)
        cache = self.caches["default"]
        before = cache.stats()["methods"].get(name, {}).get("local_only", 0)
        self.env.user._compute_session_token("0" * 40)
        after = cache.stats()["methods"][name]["local_only"]
        self.assertEqual(after, before + 1)

    def test_secret_parameters_stay_in_the_process(self):
        # `database.secret` signs session tokens: its cached value must not
        # be copied to Redis, even though `_get_param` is otherwise shared.
        Params = self.env["ir.config_parameter"].sudo()
        secret = Params.get_param("database.secret")
        self.assertTrue(secret)
        stable = self.caches.get("stable") or self.caches["default"]  # 17.0 has no 'stable'
        before = stable.stats()["secret_keys"]
        unit = self.tier._thread().unit
        pending_before = unit.pending().get(stable.name, 0)
        stable.clear()
        self.assertEqual(Params.get_param("database.secret"), secret)
        self.assertGreater(stable.stats()["secret_keys"], before)
        self.assertEqual(unit.pending().get(stable.name, 0), pending_before)

    def test_clear_cache_keeps_odoo_meaning_and_stops_sharing_in_this_transaction(self):
        default = self.caches["default"]
        self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        self.assertTrue(len(default))
        self.assertIsInstance(default.gate(), UnitOfWork)
        self.registry.clear_cache("default")
        self.assertEqual(len(default), 0)
        self.assertIn("default", self.registry.cache_invalidated)
        self.assertIs(default.gate(), False)
        # Other caches are not affected.
        self.assertIsInstance(self.caches["assets"].gate(), UnitOfWork)
        # Values computed now stay in L1.
        before = default.stats()["writes_deferred"]
        self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        self.assertEqual(default.stats()["writes_deferred"], before)
        self.assertTrue(len(default))

    def test_cascade_of_invalidations(self):
        cascade = ODOO.registry_module()._CACHES_BY_KEY
        for name, targets in cascade.items():
            for target in targets:
                if target in self.caches and self.caches[target].gate is not None:
                    self.registry.cache_invalidated.clear()
                    self.registry.cache_invalidated.add(name)
                    self.assertIs(self.caches[target].gate(), False, f"{name} -> {target}")
        self.registry.cache_invalidated.clear()

    def test_rollback_discards_values_computed_in_the_transaction(self):
        default = self.caches["default"]
        default.clear()  # L1 only: the lookup below must compute
        self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        pending = self.tier._thread().unit.pending().get("default")
        self.assertTrue(pending, "the value waits for the commit")
        before = self.tier.counters["pending_dropped_rollback"]
        self.registry.reset_changes()
        self.assertFalse(any(self.tier._thread().unit.pending().values()))
        self.assertGreater(self.tier.counters["pending_dropped_rollback"], before)

    def test_value_types_round_trip_as_themselves(self):
        codec = runtime.codec()
        value = frozendict({"html": Markup("<b>x</b>"), "ids": (1, 2)})
        back = codec.loads(codec.dumps(value))
        self.assertIs(type(back), frozendict)
        self.assertIs(type(back["html"]), Markup)
        if ODOO.has_lang_data:
            lang_data = self.env["res.lang"]._get_data(code="en_US")
            back = codec.loads(codec.dumps(lang_data))
            self.assertIs(type(back), type(lang_data))
            self.assertEqual(back.code, "en_US")

    def test_usr1_stats_include_the_shared_tier(self):
        self.assertIsNot(odoo_cache.log_ormcache_stats.__wrapped__, None)
        self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        text = "\n".join(stats_signal.stats_lines(self.registry))
        self.assertIn("default", text)
        self.assertIn("_xmlid_lookup", text)
        self.assertIn("L2", text)
        stats_signal.log_shared_stats()  # what the signal handler's thread runs
        # The handler Odoo installed for SIGUSR1 runs Odoo's table and ours.
        odoo_cache.log_ormcache_stats(signal.SIGUSR1, None)

    def test_stats_screen(self):
        screen = self.env["ormcache.redis.stats"].create({})
        self.assertIn("default", screen.report)
        self.assertIn("healthy", screen.redis_health)
        screen.cache_to_clear = "default"
        screen.action_clear_cache()
        self.assertIn("default", self.registry.cache_invalidated)
