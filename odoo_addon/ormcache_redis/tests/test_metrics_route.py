"""``/ormcache_redis/metrics`` through Odoo's real HTTP stack: closed by
default, then open to an allowed address or a bearer token only; what it
serves is read by Prometheus's own text parser."""

from __future__ import annotations

from odoo.tests import HttpCase, tagged
from prometheus_client.parser import text_string_to_metric_families

from ormcache_redis.odoo_support.metrics_access import access_from

from .. import metrics_publishing, runtime

ROUTE = "/ormcache_redis/metrics"
TOKEN = "t" * 40


@tagged("post_install", "-at_install")
class TestMetricsRoute(HttpCase):
    def use_access(self, **options):
        previous = metrics_publishing._state.get("access")
        metrics_publishing._state["access"] = access_from(**options)
        self.addCleanup(metrics_publishing._state.__setitem__, "access", previous)

    def get(self, headers=None):
        return self.url_open(ROUTE, headers=headers or {}, allow_redirects=False)

    def test_closed_unless_configured(self):
        self.use_access()
        self.assertEqual(self.get().status_code, 404)

    def test_refused_to_other_addresses(self):
        self.use_access(allow=["10.0.0.0/8", "192.0.2.7"])
        response = self.get()
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("ormcache_redis_", response.text)

    def test_token_is_required_and_checked(self):
        self.use_access(token=TOKEN)
        self.assertEqual(self.get().status_code, 403)
        wrong = {"Authorization": "Bearer " + "x" * 40}
        self.assertEqual(self.get(wrong).status_code, 403)
        response = self.get({"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.status_code, 200)
        self.assertNotIn(TOKEN, response.text)

    def test_allowed_address_gets_the_cluster_figures(self):
        self.use_access(allow=["127.0.0.0/8", "::1"])
        publisher = metrics_publishing._state.get("publisher")
        self.assertIsNotNone(publisher, "the run sets ormcache_redis_url")
        # This process's figures, as its thread publishes them.
        self.assertTrue(publisher.publish())
        self.assertTrue(runtime.client().flush(5))
        response = self.get()
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        self.assertEqual(samples[("ormcache_redis_redis_up", ())], 1)
        self.assertGreaterEqual(samples[("ormcache_redis_processes", ())], 1)
        db = self.env.cr.dbname
        entries = samples[("ormcache_redis_cache_entries", (("cache", "default"), ("db", db)))]
        self.assertGreaterEqual(entries, 0)
        lookups = [
            value
            for (name, labels), value in samples.items()
            if name == "ormcache_redis_l1_hits_total" and ("db", db) in labels
        ]
        self.assertTrue(lookups, "per-method figures of this database")
        self.assertNotIn("redis://", response.text)
