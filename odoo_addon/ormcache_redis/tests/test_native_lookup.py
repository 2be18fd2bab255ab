"""The ``@ormcache`` hit path in Rust (native_lookup.py): the same keys,
counters, transaction statistics (19) and errors as Odoo's own wrapper."""

import contextlib
import inspect
import time
import types
import uuid

from odoo.tests import TransactionCase, tagged
from odoo.tools.cache import get_cache_key_counter

from ormcache_redis.odoo_support.odoo_lookup import OdooLookup

from .. import hit_counters, native_lookup, runtime
from ..odoo_version import ODOO
from .test_method_clear import PROBE, require_test_models

# 19: tx_* counters and the transaction's set of keys.
ON_19 = ODOO.transaction_statistics


def figures(counter):
    # 17.0/18.0 counters have no transaction statistics.
    names = ("hit", "miss", "tx_hit", "tx_miss", "err")
    return tuple(getattr(counter, name, 0) for name in names)


def deltas(before, after):
    return tuple(b - a for a, b in zip(before, after, strict=True))


@contextlib.contextmanager
def _no_logs():
    yield


@tagged("post_install", "-at_install")
class TestNativeLookup(TransactionCase):
    def setUp(self):
        super().setUp()
        require_test_models(self.env)
        if not runtime.installed_settings().native_lookup:
            self.skipTest("ormcache_redis_native_lookup is False")
        self.probe = self.env[PROBE]

    def test_core_and_addon_methods_are_replaced_keeping_their_attributes(self):
        for model, attribute in (
            ("ir.model.data", "_xmlid_lookup"),
            ("ir.config_parameter", "_get_param"),
            (PROBE, "_echo"),
        ):
            function = getattr(type(self.env[model]), attribute)
            self.assertIsInstance(function, OdooLookup)
            self.assertIs(function.__wrapped__, function.__cache__.method)
            self.assertEqual(function.__name__, attribute)
            self.assertTrue(callable(function.clear_cache))
            self.assertEqual(
                inspect.signature(function), inspect.signature(function.__cache__.method)
            )
            self.assertIsInstance(getattr(self.env[model], attribute), types.MethodType)

    def test_keys_counters_and_transaction_statistics_are_odoos(self):
        wrapper = type(self.probe)._echo.wrapper
        lookups = self.env.cr.cache.setdefault("_ormcache_lookups", set())
        outcomes = []
        for call in (self.probe._echo, lambda *args: wrapper(self.probe, *args)):
            argument = uuid.uuid4().hex
            cache, key, counter = get_cache_key_counter(self.probe._echo, argument, "?")
            before = figures(counter)
            first = call(argument, "?")  # a miss, first in the transaction
            second = call(argument, "?")  # a hit, not the first
            self.assertEqual(first, second)
            self.assertEqual(first, f"{argument}?:{self.env.uid}")
            self.assertIn(key, cache)  # stored under Odoo's own key
            if ON_19:
                self.assertIn(key, lookups)
            outcomes.append(deltas(before, figures(counter)))
        native, odoo = outcomes
        self.assertEqual(native, (1, 1, 0, 1, 0) if ON_19 else (1, 1, 0, 0, 0))
        self.assertEqual(native, odoo)

    def test_repeated_and_equal_arguments_across_transactions_count_as_in_odoo(self):
        """The native path reuses the last key when the same objects come
        back: identical, equal-but-distinct and new arguments, across the
        end of a transaction, give Odoo's wrapper's figures."""
        wrapper = type(self.probe)._echo.wrapper
        outcomes = []
        for call in (self.probe._echo, lambda *args: wrapper(self.probe, *args)):
            argument = uuid.uuid4().hex
            equal = "".join(argument)  # equal, and another object
            _cache, _key, counter = get_cache_key_counter(self.probe._echo, argument, "!")
            before = figures(counter)
            answers = [call(argument), call(argument), call(equal), call(argument + "b")]
            # What commit and rollback do to the transaction's statistics.
            self.env.transaction.clear()
            answers += [call(argument), call(argument), call(equal)]
            self.assertEqual(len(set(answers)), 2)
            outcomes.append(deltas(before, figures(counter)))
        native, odoo = outcomes
        self.assertEqual(native, (5, 2, 1, 2, 0) if ON_19 else (5, 2, 0, 0, 0))
        self.assertEqual(native, odoo)

    def test_the_addons_decorator_takes_the_native_path_with_its_ttl(self):
        """``@ormcache(..., ttl=1)`` of this addon: replaced like Odoo's, the
        same figures as its own wrapper (the version's lookup with a time to
        live), and its entries expire."""
        native = type(self.probe)._echo_for_a_second
        self.assertIsInstance(native, OdooLookup)
        self.assertEqual(native.__cache__.ttl, 1)
        outcomes = []
        for call in (
            self.probe._echo_for_a_second,
            lambda *args: native.wrapper(self.probe, *args),
        ):
            argument = uuid.uuid4().hex
            cache, key, counter = get_cache_key_counter(self.probe._echo_for_a_second, argument)
            before = figures(counter)
            first = call(argument)
            self.assertEqual(call(argument), first)  # a hit
            self.assertIn(key, cache)
            outcomes.append((deltas(before, figures(counter)), first[0]))
        self.assertEqual(outcomes[0][0], outcomes[1][0])
        argument = uuid.uuid4().hex
        first = self.probe._echo_for_a_second(argument)
        time.sleep(1.2)
        self.assertNotEqual(self.probe._echo_for_a_second(argument), first)

    def test_defaults_keywords_and_attribute_paths(self):
        argument = uuid.uuid4().hex
        expected = f"{argument}!:{self.env.uid}"
        self.assertEqual(self.probe._echo(argument), expected)  # the default
        self.assertEqual(self.probe._echo(argument, "!"), expected)
        self.assertEqual(self.probe._echo(key=argument), expected)  # Odoo's wrapper
        self.assertEqual(self.probe._echo(argument, suffix="!"), expected)
        public = self.env.ref("base.public_user")
        self.assertEqual(self.probe.with_user(public)._echo(argument), f"{argument}!:{public.id}")
        with self.assertRaises(TypeError):
            self.probe._echo(argument, "!", "one too many")

    def test_unhashable_arguments_behave_as_in_odoo(self):
        """19 raises (its transaction set is asked first); 17.0 and 18.0 warn,
        count an error and compute without caching."""
        wrapper = type(self.probe)._echo.wrapper
        _cache, _key, counter = get_cache_key_counter(self.probe._echo, "any", "!")
        outcomes = []
        for call in (
            lambda: wrapper(self.probe, ["a", "list"]),
            lambda: self.probe._echo(["a", "list"]),
        ):
            before = figures(counter)
            try:
                with self.assertLogs("odoo.tools.cache", "WARNING") if not ON_19 else _no_logs():
                    outcome = call()
            except TypeError as error:
                outcome = ("TypeError", str(error))
            outcomes.append((outcome, deltas(before, figures(counter))))
        odoo, native = outcomes
        self.assertEqual(native, odoo)
        if ON_19:
            self.assertEqual(native[0][0], "TypeError")
        else:
            self.assertEqual(native, (f"['a', 'list']!:{self.env.uid}", (0, 0, 0, 0, 1)))

    def test_add_value_and_clear_cache_reach_the_native_path(self):
        data = self.env["ir.model.data"]
        xmlid = f"ormcache_redis.{uuid.uuid4().hex}"
        data._xmlid_lookup.__cache__.add_value(data, xmlid, cache_value=("res.partner", 1))
        self.assertEqual(data._xmlid_lookup(xmlid), ("res.partner", 1))
        argument = uuid.uuid4().hex
        cache, key, _counter = get_cache_key_counter(self.probe._echo, argument, "!")
        self.probe._echo(argument)
        self.assertIn(key, cache)
        self.probe._echo.clear_cache(self.probe)  # here now, elsewhere at commit
        self.assertNotIn(key, cache)

    def test_record_ids_in_keys_are_read_as_odoos_id_field_reads_them(self):
        """``@ormcache('self.id')`` (``res.users._get_company_ids``; on 18.0
        and 19 ``_get_group_ids``, under every ``has_group``): the key holds
        what ``record.id`` gives, read without the field's Python code (an
        id, False for no record), and several records give the field's own
        error, as through Odoo's wrapper."""
        users = self.env["res.users"]
        native = type(users)._get_company_ids
        self.assertIsInstance(native, OdooLookup)
        user = self.env.user
        for records, expected_id in ((user, user.id), (users, False)):
            cache, key, _counter = get_cache_key_counter(records._get_company_ids)
            self.assertIs(key[2], expected_id)
            self.assertEqual(records._get_company_ids(), native.wrapper(records))
            self.assertIn(key, cache)
        several = users.browse([user.id, self.env.ref("base.public_user").id])
        errors = []
        for call in (native.wrapper, lambda records: records._get_company_ids()):
            with self.assertRaises(ValueError) as caught:
                call(several)
            errors.append(str(caught.exception))
        self.assertEqual(errors[0], errors[1])
        groups = ("base.group_user", "base.group_system", "base.group_no_one", "base.group_public")
        answers = [[user.has_group(group) for group in groups]]
        self.addCleanup(native_lookup.install, self.registry)
        native_lookup.uninstall()
        answers.append([user.has_group(group) for group in groups])
        self.assertEqual(answers[0], answers[1])
        self.assertIn(True, answers[0])

    def test_counters_the_path_creates_count_hits_natively(self):
        """A method's counter made by the native path is Odoo's class with
        ``hit``/``tx_hit`` native: Odoo's code reads it (ratios, statistics,
        ``get_cache_key_counter``) and counts as it would; one Odoo made
        first is kept."""
        counters = ODOO.counters
        method = type(self.probe)._echo.__cache__.method
        key = (
            (self.env.cr.dbname, self.probe._name, method)
            if ODOO.counters_by_model
            else (self.env.cr.dbname, method)
        )
        kept = counters.pop(key, None)

        def restore():
            native_lookup.uninstall()
            counters.pop(key, None)
            if kept is not None:
                counters[key] = kept
            native_lookup.install(self.registry)

        self.addCleanup(restore)
        # Fresh wrappers: nothing remembers the counter taken out.
        native_lookup.uninstall()
        native_lookup.install(self.registry)
        argument = uuid.uuid4().hex
        for _ in range(3):
            self.probe._echo(argument)
        counter = counters[key]
        self.assertIs(type(counter), hit_counters.counter_class())
        self.assertIs(get_cache_key_counter(self.probe._echo, argument, "!")[2], counter)
        self.assertEqual((counter.hit, counter.miss), (2, 1))
        self.assertAlmostEqual(counter.ratio, 100 * 2 / 3)
        if ON_19:
            self.assertEqual((counter.tx_hit, counter.tx_miss, counter.tx_calls), (0, 1, 1))
            self.assertEqual(counter.cache_name, "default")
        type(self.probe)._echo.wrapper(self.probe, argument, "!")  # Odoo's own code
        self.assertEqual(counter.hit, 3)
        # A counter Odoo made first stays Odoo's, and counts.
        native_lookup.uninstall()
        counters.pop(key)
        odoo_counter = get_cache_key_counter(self.probe._echo, argument, "!")[2]
        native_lookup.install(self.registry)
        self.probe._echo(argument)
        self.assertIs(counters[key], odoo_counter)
        self.assertIs(type(odoo_counter), ODOO.counters.default_factory)
        self.assertEqual(odoo_counter.miss + odoo_counter.hit, 1)

    def test_uninstall_puts_odoos_wrappers_back(self):
        self.addCleanup(native_lookup.install, self.registry)
        native_lookup.uninstall()
        self.assertIsInstance(type(self.probe)._echo, types.FunctionType)
        argument = uuid.uuid4().hex
        self.assertEqual(self.probe._echo(argument), f"{argument}!:{self.env.uid}")
        native_lookup.install(self.registry)
        self.assertIsInstance(type(self.probe)._echo, OdooLookup)
