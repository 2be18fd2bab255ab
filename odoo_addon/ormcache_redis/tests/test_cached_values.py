"""Values of Odoo's cached methods through the codec: what comes back from
Redis is what Odoo computed (equal, same types, same SQL), and what cannot
be rebuilt exactly is refused."""

import importlib

from odoo import Command

from ormcache_redis import Codec, DecodeError, EncodeError, qualified_name

from .. import runtime
from ..odoo_version import ODOO
from .common import SharedTierCase

MODES = ("read", "write", "create", "unlink")


class TestRecordRuleDomains(SharedTierCase):
    """``ir.rule._compute_domain``: lists on 17.0/18.0, ``Domain`` trees on
    19.0, shared in both cases."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.other_company = env["res.company"].create({"name": "ormcache_redis rules"})
        main_company = env.ref("base.main_company")
        companies = [Command.set([main_company.id, cls.other_company.id])]
        cls.internal = env["res.users"].create(
            {
                "name": "rules internal",
                "login": "ormcache_redis_rules_internal",
                "company_id": main_company.id,
                "company_ids": companies,
                "group_ids" if ODOO.major >= 19 else "groups_id": [
                    Command.set([env.ref("base.group_user").id])
                ],
            }
        )
        cls.portal = env["res.users"].create(
            {
                "name": "rules portal",
                "login": "ormcache_redis_rules_portal",
                "group_ids" if ODOO.major >= 19 else "groups_id": [
                    Command.set([env.ref("base.group_portal").id])
                ],
            }
        )
        # Rules of every shape a rule domain takes: negation, OR of group
        # rules, child_of, sets of ids, dates, a path through a many2one
        # and, for res.users, the parent model's rules through _inherits.
        partner_model = env["ir.model"]._get("res.partner")
        group_user = env.ref("base.group_user")
        env["ir.rule"].create(
            [
                {
                    "name": "ormcache_redis global",
                    "model_id": partner_model.id,
                    "domain_force": "['!', ('name', '=like', 'hidden%'), "
                    "('create_date', '<=', '2100-12-31 00:00:00')]",
                },
                {
                    "name": "ormcache_redis group 1",
                    "model_id": partner_model.id,
                    "groups": [Command.set([group_user.id])],
                    "domain_force": "['|', ('id', 'child_of', [user.partner_id.id]), "
                    "('company_id', 'in', company_ids)]",
                },
                {
                    "name": "ormcache_redis group 2",
                    "model_id": partner_model.id,
                    "groups": [Command.set([group_user.id])],
                    "domain_force": "[('parent_id.name', 'not in', ['x', 'y']), "
                    "('active', '=', True)]",
                },
            ]
        )
        cls.models = sorted(set(env["ir.rule"].sudo().search([]).mapped("model_id.model")))

    def computed_domains(self):
        """``(label, model, value)`` of every model with rules, every mode,
        both users, with the companies the web client sends."""
        for user in (self.internal, self.portal):
            companies = user.company_ids.ids
            rules = self.env["ir.rule"].with_user(user).with_context(allowed_company_ids=companies)
            for model_name in [*self.models, "res.users"]:
                model = self.env[model_name].with_user(user)
                for mode in MODES:
                    label = f"{user.login} {model_name} {mode}"
                    yield label, model, rules._compute_domain(model_name, mode)

    def sql_of(self, model, domain):
        sql = model.sudo()._search(domain).select()
        return sql.code, sql.params

    def test_rule_domains_come_back_equal_and_give_the_same_sql(self):
        codec = runtime.codec()
        count = 0
        for label, model, domain in self.computed_domains():
            with self.subTest(label):
                back = codec.loads(codec.dumps(domain))
                self.assertIs(type(back), type(domain))
                self.assertEqual(back, domain)
                self.assertEqual(repr(back), repr(domain))
                self.assertEqual(self.sql_of(model, back), self.sql_of(model, domain))
                count += 1
        self.assertGreater(count, 8 * len(MODES))

    def test_rule_domains_are_shared(self):
        default = self.caches["default"]
        default.clear()  # L1 only: the lookups below compute
        unit = self.tier._thread().unit
        unencodable = default.stats()["unencodable_values"]
        pending = unit.pending().get("default", 0)
        rules = self.env["ir.rule"].with_user(self.internal)
        rules._compute_domain("res.partner", "read")
        rules._compute_domain("res.users", "write")
        name = qualified_name(type(rules)._compute_domain.__cache__.method)
        self.assertNotIn(name, default.local_methods)
        self.assertEqual(default.stats()["unencodable_values"], unencodable)
        # The two values wait for the commit (with what they looked up).
        self.assertGreaterEqual(unit.pending().get("default", 0), pending + 2)


if ODOO.domain_module_name is not None:

    class TestDomainTrees(SharedTierCase):
        """19.0: each node comes back as its class, with its level; what
        cannot be rebuilt exactly is refused both ways."""

        @classmethod
        def setUpClass(cls):
            super().setUpClass()
            cls.domains = importlib.import_module(ODOO.domain_module_name)

        def nodes(self, domain):
            yield domain
            for child in getattr(domain, "children", ()):
                yield from self.nodes(child)
            if hasattr(domain, "child"):
                yield from self.nodes(domain.child)
            if isinstance(getattr(domain, "value", None), self.domains.Domain):
                yield from self.nodes(domain.value)

        def test_nodes_keep_their_class_and_level(self):
            Domain = self.domains.Domain
            partners = self.env["res.partner"]
            domain = (
                Domain("name", "ilike", "a")
                | ~Domain("parent_id.name", "=", "b")
                | Domain("id", "in", [3, 1, 2])
            ) & Domain("category_id", "any", Domain("name", "=", "c"))
            optimized = domain.optimize(partners)
            codec = runtime.codec()
            for value in (domain, optimized, optimized.optimize_full(partners)):
                back = codec.loads(codec.dumps(value))
                self.assertEqual(back, value)
                pairs = list(zip(self.nodes(back), self.nodes(value), strict=True))
                for rebuilt, computed in pairs:
                    self.assertIs(type(rebuilt), type(computed))
                    self.assertIs(rebuilt._opt_level, computed._opt_level)
                    if hasattr(computed, "value"):
                        self.assertIs(type(rebuilt.value), type(computed.value))
            self.assertIs(codec.loads(codec.dumps(Domain.TRUE)), Domain.TRUE)
            self.assertIs(codec.loads(codec.dumps(Domain.FALSE)), Domain.FALSE)

        def test_what_holds_code_is_not_encoded(self):
            Domain = self.domains.Domain
            codec = runtime.codec()
            custom = Domain.custom(to_sql=lambda model, alias, query: None)
            query = self.env["res.partner"]._search([("name", "=", "a")])
            values = {
                "custom": custom,
                "and custom": Domain("name", "=", "a") & custom,
                "in a query": Domain("id", "in", query),
            }
            for label, value in values.items():
                with self.subTest(label), self.assertRaises(EncodeError):
                    codec.dumps(value)

        def test_states_of_another_shape_are_refused(self):
            # Bytes under the addon's tags, written by a codec that knows
            # other classes: as an entry forged with the secret would be.
            class Forged:
                def __init__(self, state):
                    self.state = state

            classes = {}
            writer = Codec()
            for tag in ("odoo.DomainBool", "odoo.DomainNot", "odoo.DomainAnd"):
                classes[tag] = type(tag, (Forged,), {})
                writer.register_type(classes[tag], tag, lambda value: value.state, tuple)
            condition = type("condition", (Forged,), {})
            writer.register_type(condition, "odoo.DomainCondition", lambda v: v.state, tuple)
            codec = runtime.codec()
            valid = codec.loads(writer.dumps(condition((1, "name", "=", "a"))))
            self.assertEqual(valid, self.domains.Domain("name", "=", "a"))
            self.assertEqual(int(valid._opt_level), 1)
            refused = [
                condition((1, "name", "drop table", "a")),
                condition((9, "name", "=", "a")),
                condition((True, "name", "=", "a")),
                condition((1, "", "=", "a")),
                condition((1, "name", "=")),
                classes["odoo.DomainBool"](1),
                classes["odoo.DomainNot"]((0, 5)),
                classes["odoo.DomainAnd"]((0, (condition((1, "a", "=", 1)),))),
                classes["odoo.DomainAnd"]((0, [condition((1, "a", "=", 1))] * 2)),
            ]
            for value in refused:
                with self.subTest(value.state), self.assertRaises(DecodeError):
                    codec.loads(writer.dumps(value))


if ODOO.set_definitions_module_name is not None:

    class TestGroupDefinitions(SharedTierCase):
        """18.0+: the ``groups`` cache's ``SetDefinitions`` comes back with
        every group's subsets, supersets and disjoint groups."""

        def leaves(self, definitions):
            return {
                leaf.id: (leaf.ref, leaf.subsets, leaf.supersets, leaf.disjoints)
                for leaf in definitions._SetDefinitions__leaves.values()
            }

        def test_group_definitions_come_back_with_the_same_closure(self):
            Groups = self.env["res.groups"]
            definitions = Groups._get_group_definitions()
            codec = runtime.codec()
            back = codec.loads(codec.dumps(definitions))
            self.assertIs(type(back), type(definitions))
            self.assertEqual(self.leaves(back), self.leaves(definitions))
            self.assertGreater(len(self.leaves(back)), 5)
            # The same answers to what Odoo asks of them.
            user_groups = self.env.user._get_group_ids()
            for refs in (
                "base.group_user",
                "base.group_system,!base.group_portal",
                "!base.group_user",
            ):
                with self.subTest(refs):
                    expression = back.parse(refs)
                    self.assertEqual(expression, definitions.parse(refs))
                    self.assertEqual(
                        expression.matches(user_groups),
                        definitions.parse(refs).matches(user_groups),
                    )
            ids = sorted(self.leaves(definitions))
            for keep_subsets in (False, True):
                self.assertEqual(
                    back.from_ids(ids, keep_subsets=keep_subsets),
                    definitions.from_ids(ids, keep_subsets=keep_subsets),
                )

        def test_group_definitions_are_shared(self):
            groups = self.caches["groups"]
            self.assertTrue(groups.shared)
            groups.clear()  # L1 only: the lookup below computes
            unit = self.tier._thread().unit
            pending = unit.pending().get("groups", 0)
            unencodable = groups.stats()["unencodable_values"]
            self.env["res.groups"]._get_group_definitions()
            self.assertEqual(groups.stats()["unencodable_values"], unencodable)
            self.assertEqual(unit.pending().get("groups", 0), pending + 1)

        def test_definitions_of_another_shape_are_refused(self):
            class Forged:
                def __init__(self, state):
                    self.state = state

            writer = Codec()
            writer.register_type(Forged, "odoo.SetDefinitions", lambda value: value.state, tuple)
            codec = runtime.codec()
            valid = codec.loads(writer.dumps(Forged(((1, "a.x", (2,), ()), (2, "a.y", (), ())))))
            self.assertEqual(self.leaves(valid)[1][2], {1, 2})  # 1's supersets
            refused = [
                ((1, "a.x", (3,), ()),),  # an unknown superset
                ((1, "*", (), ()),),  # the universal set's name
                ((1, "a.x", (), ()), (2, "a.x", (), ())),  # one name, two sets
                ((1, "a.x", (), ()), (1, "a.y", (), ())),  # one id, two sets
                (("1", "a.x", (), ()),),
                ((1, "a.x", [2], ()), (2, "a.y", (), ())),
                ((1, "a.x", ()),),
                [(1, "a.x", (), ())],
            ]
            for state in refused:
                with self.subTest(state), self.assertRaises(DecodeError):
                    codec.loads(writer.dumps(Forged(state)))
