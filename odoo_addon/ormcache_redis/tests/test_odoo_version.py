"""The record of the running Odoo (odoo_version.ODOO) says what this Odoo
does: each field checked against Odoo itself, the way the addon used to
find it out at run time."""

import importlib
import inspect

import odoo.release
from odoo import http, models
from odoo.tests import TransactionCase, tagged
from odoo.tools.cache import get_cache_key_counter

from ..odoo_version import ODOO, SUPPORTED, odoo_cache


@tagged("post_install", "-at_install")
class TestOdooVersion(TransactionCase):
    def test_the_record_is_the_running_version(self):
        self.assertEqual(ODOO.major, odoo.release.version_info[0])
        self.assertIs(SUPPORTED[ODOO.major], ODOO)

    def test_registry_module_and_set_up_hook(self):
        module = ODOO.registry_module()
        self.assertIs(module.Registry, type(self.registry))
        self.assertIn("default", module._CACHES_BY_KEY)
        self.assertTrue(callable(getattr(module.Registry, ODOO.setup_hook)))

    def test_signaling_in_test_mode(self):
        original = inspect.unwrap(ODOO.registry_module().Registry.check_signaling)
        skips = "in_test_mode()" in inspect.getsource(original)
        self.assertEqual(ODOO.signaling_skipped_in_test_mode, skips)

    def test_lookup_signature_counters_and_transaction_statistics(self):
        parameters = list(inspect.signature(odoo_cache.ormcache.lookup).parameters)
        self.assertEqual(ODOO.lookup_takes_method, parameters[1:2] == ["method"])
        source = inspect.getsource(odoo_cache.ormcache.lookup)
        self.assertEqual(ODOO.transaction_statistics, "_ormcache_lookups" in source)
        self.assertIs(ODOO.counters, vars(odoo_cache)[ODOO.counters_name])
        data = self.env["ir.model.data"]
        _cache, _key, counter = get_cache_key_counter(data._xmlid_lookup, "base.user_admin")
        method = data._xmlid_lookup.__cache__.method
        key = (
            (self.env.cr.dbname, data._name, method)
            if ODOO.counters_by_model
            else (self.env.cr.dbname, method)
        )
        self.assertIs(ODOO.counters[key], counter)

    def test_session_store_descriptor(self):
        # The addon may have put its own there: always of Odoo's kind.
        descriptor = ODOO.session_store_descriptor(lambda self: None, http.Application, "x")
        self.assertIs(type(descriptor), type(http.Application.__dict__["session_store"]))

    def test_lru_snapshot(self):
        registries = ODOO.registry_module().Registry.registries
        self.assertIs(ODOO.lru_snapshot(registries)[self.env.cr.dbname], self.registry)
        lru = importlib.import_module("odoo.tools.lru").LRU(4)
        lru["key"] = "value"
        self.assertEqual(ODOO.lru_snapshot(lru), {"key": "value"})

    def test_value_types_flush_and_statistics_handler(self):
        res_lang = importlib.import_module("odoo.addons.base.models.res_lang")
        self.assertEqual(ODOO.has_lang_data, hasattr(res_lang, "LangData"))
        self.assertEqual(ODOO.flush_writes_multi, "_write_multi" in vars(models.BaseModel))
        tools = importlib.import_module("odoo.tools")
        self.assertEqual(
            "odoo.tools" in ODOO.stats_handler_modules, hasattr(tools, "log_ormcache_stats")
        )
        for name in ODOO.stats_handler_modules:
            handler = importlib.import_module(name).log_ormcache_stats
            self.assertIs(handler, odoo_cache.log_ormcache_stats, name)
