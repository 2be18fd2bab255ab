import contextlib
import time
import uuid

from odoo.tools.cache import get_cache_key_counter

from ormcache_redis import UnitOfWork, qualified_name
from ormcache_redis.odoo_support import shared_tier

from ..odoo_version import ODOO
from ..ormcache_with_ttl import ormcache
from .common import SharedTierCase


class Probe:
    """Quacks like a model for the decorator: a name, a pool and an env."""

    _name = "ormcache_redis.probe"
    computed = 0

    def __init__(self, env):
        self.env = env
        self.pool = env.registry

    @ormcache("key")
    def compute(self, key):
        type(self).computed += 1
        return (key, type(self).computed)

    @ormcache("key", ttl=1)
    def short_lived(self, key):
        type(self).computed += 1
        return type(self).computed

    @ormcache("key")
    def echo(self, key):
        return ("echo", key)

    @ormcache("key", ttl=60)
    def echo_for_a_while(self, key):
        return ("echo", key)


def figures(counter):
    # 17.0 counters have neither gen_time nor cache_name, 17.0/18.0 no tx_*.
    names = ("hit", "miss", "err", "tx_hit", "tx_miss", "tx_err")
    return tuple(getattr(counter, name, 0) for name in names)


def outcome_of(call):
    try:
        return call()
    except TypeError as error:
        return ("TypeError", str(error))


class TestDecorator(SharedTierCase):
    def setUp(self):
        super().setUp()
        self.probe = Probe(self.env)
        self.cache = self.caches["default"]
        self.cache.clear()

    def test_same_signature_and_key_as_odoo(self):
        first = self.probe.compute("a")
        self.assertEqual(self.probe.compute("a"), first)
        cache, key, counter = get_cache_key_counter(self.probe.compute, "a")
        self.assertIs(cache, self.cache)
        self.assertEqual(key[0], "ormcache_redis.probe")
        self.assertEqual(key[-1], "a")
        self.assertEqual(cache[key], first)
        self.assertGreaterEqual(counter.hit, 1)

    def test_ttl_bounds_the_entry(self):
        first = self.probe.short_lived("x")
        self.assertEqual(self.probe.short_lived("x"), first)
        time.sleep(1.2)
        self.assertNotEqual(self.probe.short_lived("x"), first)

    def test_ttl_lookup_counts_as_odoos_own(self):
        """With ``ttl`` the decorator runs the version's lookup and miss code
        (odoo_version): the same answers and counters as Odoo's lookup of
        a method without ``ttl``, 19's transaction statistics included, and
        an unhashable key treated as that version treats it."""
        outcomes = []
        for method in (self.probe.echo, self.probe.echo_for_a_while):
            argument = uuid.uuid4().hex
            cache, key, counter = get_cache_key_counter(method, argument)
            before = figures(counter)
            answers = [method(argument), method(argument), method(argument + "b")]
            self.assertIn(key, cache)
            self.env.transaction.clear()  # what commit and rollback do to tx_*
            answers += [method(argument), method(argument)]
            self.assertEqual(
                answers,
                [("echo", argument)] * 2 + [("echo", argument + "b")] + [("echo", argument)] * 2,
            )
            # 17.0/18.0 warn, count an error and compute; 19 raises.
            warned = (
                contextlib.nullcontext()
                if ODOO.transaction_statistics
                else self.assertLogs("odoo.tools.cache", "WARNING")
            )
            with warned:
                unhashable = outcome_of(lambda method=method: method(["a", "list"]))
            outcomes.append(
                (
                    unhashable,
                    tuple(b - a for a, b in zip(before, figures(counter), strict=True)),
                    getattr(counter, "cache_name", None),
                )
            )
        odoos, with_ttl = outcomes
        self.assertEqual(with_ttl, odoos)

    def test_ttl_must_be_positive(self):
        with self.assertRaises(ValueError):
            ormcache("x", ttl=0)

    def test_clear_cache_is_per_method_and_transactional(self):
        kept = self.env["ir.model.data"]._xmlid_lookup("base.user_admin")
        first = self.probe.compute("a")
        self.probe.compute.clear_cache(self.probe)
        # This process: the method's entries are gone, the others stay.
        self.assertNotEqual(self.probe.compute("a"), first)
        self.assertEqual(self.env["ir.model.data"]._xmlid_lookup("base.user_admin"), kept)
        # Odoo's signaling is not used, the cache stays out of Redis until
        # the end of the transaction, and the clear waits for the commit.
        self.assertNotIn("default", self.registry.cache_invalidated)
        self.assertIs(self.cache.gate(), False)
        state = self.tier._thread()
        self.assertEqual(
            [(name, m.__name__) for name, m in state.method_clears], [("default", "compute")]
        )
        generations = dict(self.cache.method_generations())
        self.registry.reset_changes()  # rollback: nothing is published
        self.assertEqual(dict(self.cache.method_generations()), generations)
        self.assertIsInstance(self.cache.gate(), UnitOfWork)
        self.assertIn(
            ("default", qualified_name(Probe.compute.__cache__.method)),
            shared_tier.DECORATED_METHODS,
        )
