from odoo.tests import TransactionCase, tagged
from odoo.tests.common import get_db_name

from .. import registry_hooks, runtime
from ..odoo_version import ODOO


@tagged("post_install", "-at_install")
class SharedTierCase(TransactionCase):
    """A registry whose shared tier is on (Redis configured and reachable)."""

    @classmethod
    def setUpClass(cls):
        # Other tests of the run (HttpCase requests, asset generation) may
        # have signaled cache changes that this process, which serves no
        # request, never read: catch up the way each request does. A moved
        # registry number cannot be caught up without rebuilding the
        # registry under the test runner, so it is reported below.
        registry = ODOO.registry_module().Registry(get_db_name())
        with registry.cursor() as cr:
            registry_sequence, _sequences = registry.get_sequences(cr)
        if registry_sequence == registry.registry_sequence:
            registry.check_signaling()
        super().setUpClass()
        cls.tier = runtime.tier_of(cls.registry)
        if cls.tier is None:
            raise RuntimeError("ormcache_redis is not loaded: add it to --load")
        if runtime.client() is None:
            raise RuntimeError("these tests need ormcache_redis_url (or ORMCACHE_REDIS_URL)")
        if not registry_hooks.adopt_from_database(cls.registry):
            with cls.registry.cursor() as cr:
                numbers = cls.registry.get_sequences(cr)
            raise RuntimeError(
                "the database's signaling numbers differ from the registry's: "
                f"{numbers} != {cls.registry.registry_sequence}, {cls.registry.cache_sequences}"
            )
        cls.caches = cls.registry._Registry__caches

    def setUp(self):
        super().setUp()
        # Odoo's TransactionCase clears every cache in setUpClass without
        # signaling, so the test thread starts as a transaction that
        # invalidated everything (and is rightly kept off Redis). These
        # tests start from a fresh unit of work instead, like a request.
        self.registry.reset_changes()
        self.addCleanup(self.registry.reset_changes)
        # Outside these tests, a thread working while a test runs stays
        # off Redis (it is inside the test's uncommitted transaction).
        self.tier.share_in_tests(True)
        self.addCleanup(self.tier.share_in_tests, False)
