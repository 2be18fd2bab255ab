from ormcache_redis import qualified_name

from .. import dependencies
from ..ormcache_with_ttl import ormcache
from .common import SharedTierCase
from .probe import Probe


class PartnerNames(Probe):
    """Reads a stored computed field: ``complete_name`` is recomputed by the
    ORM when ``name`` changes, and never passes through ``write``."""

    @ormcache("partner_id", depends_on={"res.partner": ["complete_name"]})
    def complete_name(self, partner_id):
        type(self).computed += 1
        return self.env["res.partner"].browse(partner_id).complete_name


class TestDependsOn(SharedTierCase):
    def setUp(self):
        super().setUp()
        self.probe = Probe(self.env)
        self.colors = Probe.category_colors.__cache__.method
        self.categories = self.env["res.partner.category"]
        self.category = self.categories.create({"name": "ormcache_redis depends_on"})
        self.start_unit()

    def start_unit(self):
        """What the end of the previous request leaves: nothing pending."""
        self.registry.reset_changes()

    def method_clears(self):
        clears = self.tier._thread().method_clears
        return [(name, qualified_name(method)) for name, method in clears]

    def assert_cleared(self, method):
        self.assertEqual(self.method_clears(), [("default", qualified_name(method))])

    def test_listed_field_clears_the_method(self):
        before = self.probe.category_colors()
        computed = Probe.computed
        self.assertEqual(self.probe.category_colors(), before)
        self.assertEqual(Probe.computed, computed, "second call must come from the cache")
        self.category.write({"color": 7})
        self.assert_cleared(self.colors)
        self.assertEqual(self.probe.category_colors()[self.category.id], 7)
        self.assertEqual(Probe.computed, computed + 1)
        # Waits for the commit like a clear_cache call: a rollback publishes nothing.
        generations = dict(self.caches["default"].method_generations())
        self.registry.reset_changes()
        self.assertEqual(self.method_clears(), [])
        self.assertEqual(dict(self.caches["default"].method_generations()), generations)

    def test_unlisted_field_does_not_clear(self):
        first = self.probe.category_colors()
        computed = Probe.computed
        self.category.write({"name": "renamed", "active": False})
        self.env.flush_all()
        self.assertEqual(self.method_clears(), [])
        self.assertEqual(self.probe.category_colors(), first)
        self.assertEqual(Probe.computed, computed)

    def test_create_and_unlink_clear(self):
        self.probe.category_colors()
        created = self.categories.create({"name": "another", "color": 3})
        self.assert_cleared(self.colors)
        self.assertEqual(self.probe.category_colors()[created.id], 3)
        self.start_unit()
        self.probe.category_colors()
        created.unlink()
        self.assert_cleared(self.colors)
        self.assertNotIn(created.id, self.probe.category_colors())

    def test_one_clear_per_transaction_and_fresh_values_within_it(self):
        for color in range(50):
            self.category.write({"color": color})
            # The unit asked once; values computed in between are still
            # dropped by the next change of this transaction.
            self.assertEqual(self.probe.category_colors()[self.category.id], color)
        self.env.flush_all()
        self.assert_cleared(self.colors)

    def test_recomputed_stored_field_clears_at_flush(self):
        partner = self.env["res.partner"].create({"name": "ormcache_redis partner"})
        names = PartnerNames(self.env)
        self.env.flush_all()
        self.start_unit()
        self.assertEqual(names.complete_name(partner.id), "ormcache_redis partner")
        partner.write({"name": "renamed partner"})
        # write() named `name` only: complete_name reaches the table at flush.
        self.assertEqual(self.method_clears(), [])
        self.env.flush_all()
        self.assert_cleared(PartnerNames.complete_name.__cache__.method)
        self.assertEqual(names.complete_name(partner.id), "renamed partner")

    def test_malformed_declaration_raises(self):
        with self.assertRaises(TypeError):
            ormcache("key", depends_on=["res.partner"])
        with self.assertRaises(TypeError):
            ormcache("key", depends_on={"res.partner": "name"})

    def test_unknown_model_or_field_warns_and_clears_on_any_field(self):
        with self.assertLogs("odoo.addons.ormcache_redis", "WARNING") as logs:

            class Misspelt(Probe):
                @ormcache(
                    "key",
                    depends_on={"no.such.model": [], "res.partner.category": ["colour"]},
                )
                def misspelt(self, key):
                    return key

            self.addCleanup(dependencies.forget, Misspelt.misspelt.__cache__)
            dependencies.index_registry(self.registry)
            dependencies.index_registry(self.registry)  # once per method and model
        name = qualified_name(Misspelt.misspelt.__cache__.method)
        self.assertEqual(len(logs.output), 2, logs.output)
        self.assertTrue(all(name in line for line in logs.output), logs.output)
        self.assertIn("no.such.model", logs.output[0] + logs.output[1])
        self.assertIn("colour", logs.output[0] + logs.output[1])
        self.category.write({"name": "any field"})
        self.assertEqual(
            self.method_clears(), [("default", name)], "a misspelt field clears on any field"
        )
