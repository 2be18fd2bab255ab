"""The request budget with real Odoo processes: while Redis does not answer
(paused with SIGSTOP: the kernel accepts connections, nobody replies), a
unit of work (check_signaling ... signal_changes or reset_changes) waits for
Redis at most ``ormcache_redis_socket_timeout`` in all, whatever cached
methods it calls; requests still succeed with the right values, and Redis
is used again after.

Two processes (tests/odoo_worker.py, as in test_workers.py) run the same
units of work with Redis healthy (the baseline), then paused: what a paused
unit waited is its length minus the baseline's median for the same command.
A control runs one unit without the budget, to show that this measurement
sees what the budget saves. The figures are logged ("budget figures").
"""

import logging
import shutil
import statistics
import time
import uuid
from pathlib import Path

import odoo
from odoo.tests import BaseCase, tagged

from ormcache_redis.testing import RedisServer

from .test_workers import OdooWorker, RecoveryChecks

_logger = logging.getLogger(__name__)

# What a unit may wait beyond one socket timeout: scheduling, the Python
# around the engine's calls, a loaded machine.
MARGIN = 0.05
XMLID = "base.main_company"


@tagged("post_install", "-at_install", "ormcache_redis_multiprocess")
class TestRequestBudget(RecoveryChecks, BaseCase):
    # With the multi-process tests, after the ones of this process.
    test_sequence = 103

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is needed by the multi-process tests")
        cls.redis = RedisServer()
        cls.redis.start()
        cls.addClassCleanup(cls.redis.close)
        db_name = odoo.tests.common.get_db_name()
        logdir = Path(cls.redis.workdir)
        # Only the requests talk to Redis while it is paused: the metrics
        # are published once, at the first request (a publication during a
        # pause is a background failure that opens the breaker earlier).
        quiet = {"ORMCACHE_REDIS_METRICS_INTERVAL": "3600"}
        cls.worker_a = OdooWorker(db_name, cls.redis.url, logdir / "budget_a.log", quiet)
        cls.addClassCleanup(cls.worker_a.close)
        cls.worker_b = OdooWorker(db_name, cls.redis.url, logdir / "budget_b.log", quiet)
        cls.addClassCleanup(cls.worker_b.close)

    def setUp(self):
        super().setUp()
        self.key = f"ormcache_redis.test.{uuid.uuid4().hex}"
        self.timeout = self.worker_a("cache_settings")["socket_timeout"]
        # Never leave Redis stopped for the next test.
        self.addCleanup(self.resume)

    def resume(self):
        if self.redis.running:
            self.redis.resume()

    def pause(self):
        # The single-flight leases of the last computations are renewed
        # until a renewal finds them released (150 ms): a renewal sent to
        # the paused server would be a background failure too.
        time.sleep(0.5)
        self.redis.pause()

    def round(self, label, units):
        """A and B read the parameter and an xmlid, then A changes the
        parameter: five units of work, timed, their values checked."""
        a, b = self.worker_a, self.worker_b

        def timed(name, worker, command, *args):
            figures = worker("timed", command, *args)
            units.append((label, name, command, figures))
            return figures["result"]

        self.assertEqual(timed("A", a, "get_param", self.key)["value"], self.value)
        self.assertEqual(timed("B", b, "get_param", self.key)["value"], self.value)
        self.assertEqual(timed("A", a, "xmlid_lookup", XMLID)["value"], self.company)
        self.assertEqual(timed("B", b, "xmlid_lookup", XMLID)["value"], self.company)
        self.value = f"{label}-{uuid.uuid4().hex[:8]}"
        self.assertTrue(timed("A", a, "set_param", self.key, self.value))

    def counters(self):
        return {
            name: worker("tier_state", "default")["counters"]
            for name, worker in (("A", self.worker_a), ("B", self.worker_b))
        }

    def test_paused_redis_costs_a_unit_one_socket_timeout_at_most(self):
        a, b = self.worker_a, self.worker_b
        self.company = a("xmlid_lookup", XMLID)["value"]
        self.value = "start"
        a("set_param", self.key, self.value)

        # Redis healthy: what each unit costs without waiting.
        healthy = []
        for label in ("h1", "h2", "h3"):
            self.round(label, healthy)
        times = {}
        for _label, _name, command, figures in healthy:
            times.setdefault(command, []).append(figures["seconds"])
        baseline = {command: statistics.median(seconds) for command, seconds in times.items()}
        before = self.counters()

        # Redis paused: the same units; each process's first one finds the
        # breaker closed and waits, the next ones find it open.
        self.pause()
        paused = []
        for label in ("p1", "p2", "p3"):
            self.round(label, paused)
        after = self.counters()
        usr1 = a("stats_text")
        self.redis.resume()
        self.assert_redis_used_again()
        recovered = a("timed", "xmlid_lookup", XMLID)

        # The control: one unit of A without its budget, Redis paused again
        # (A's breaker closed: it just used Redis). Its first call waits for
        # the methods version, its L2 read for the value: two timeouts, then
        # the breaker opens.
        b("set_param", self.key, "control")  # not in A's L1
        a("use_budget", False)
        try:
            self.pause()
            control = a("timed", "get_param", self.key)
        finally:
            self.resume()
            a("use_budget", True)
        self.assertEqual(control["result"]["value"], "control")
        self.assert_redis_used_again()

        limit = self.timeout + MARGIN
        control_waited = control["seconds"] - baseline["get_param"]
        lines = [
            f"budget figures: socket_timeout {self.timeout * 1000:.0f} ms, limit "
            f"{limit * 1000:.0f} ms; baseline (median of the units with Redis healthy) "
            + ", ".join(f"{c} {s * 1000:.1f} ms" for c, s in baseline.items())
        ]
        for label, name, command, figures in [*healthy, *paused]:
            spent, skipped = figures["budget"] or (0.0, 0)
            lines.append(
                f"  {label} {name} {command:12} unit {figures['seconds'] * 1000:6.1f} ms, "
                f"waited {(figures['seconds'] - baseline[command]) * 1000:6.1f} ms, "
                f"budget spent {spent * 1000:5.1f} ms, skipped {skipped}; "
                f"client {figures['client']}"
            )
        lines.append(
            f"  after resume A xmlid_lookup unit {recovered['seconds'] * 1000:.1f} ms, "
            f"{recovered['result']}"
        )
        lines.append(
            f"  control without budget: A get_param unit {control['seconds'] * 1000:.1f} ms, "
            f"waited {control_waited * 1000:.1f} ms; client {control['client']}"
        )
        for name in ("A", "B"):
            lines.append(f"  counters {name} {after[name]}")
        _logger.info("\n".join(lines))

        for label, name, command, figures in paused:
            waited = figures["seconds"] - baseline[command]
            where = f"{label} {name} {command}: {figures}"
            self.assertLessEqual(waited, limit, f"waited {waited:.3f} s for Redis: {where}")
            self.assertLessEqual(figures["budget"][0], limit, where)
        for label, name, command, figures in healthy:
            self.assertEqual(figures["budget"][1], 0, f"{label} {name} {command}: {figures}")
        # The paused Redis was met (else the above proves nothing): each
        # process's first unit waited one timeout, then skipped Redis, and
        # its counters say so.
        for name in ("A", "B"):
            first = next(figures for _label, n, _c, figures in paused if n == name)
            self.assertGreater(first["budget"][0], self.timeout * 0.8, first)
            self.assertGreaterEqual(first["budget"][1], 1, first)
            units = after[name]["units_out_of_budget"] - before[name]["units_out_of_budget"]
            skipped = (
                after[name]["calls_skipped_out_of_budget"]
                - before[name]["calls_skipped_out_of_budget"]
            )
            self.assertGreaterEqual(units, 1, after[name])
            self.assertGreaterEqual(skipped, units, after[name])
        self.assertIn("'units_out_of_budget': ", usr1)
        self.assertIn("'calls_skipped_out_of_budget': ", usr1)
        # After the resume a unit talks to Redis again, within its budget.
        self.assertGreater(recovered["budget"][0], 0, recovered)
        self.assertEqual(recovered["budget"][1], 0, recovered)
        self.assertGreaterEqual(recovered["client"].get("calls", 0), 1, recovered)
        self.assertNotIn("errors", recovered["client"], recovered)
        # Without the budget the same measurement goes past the limit.
        self.assertGreater(control_waited, limit, "the control did not wait for Redis")
