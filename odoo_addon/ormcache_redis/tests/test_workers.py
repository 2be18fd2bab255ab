"""Two Odoo processes on one database and one Redis (their own
redis-server, started here, so the test can stop it).

Each process runs tests/odoo_worker.py: it loads the server-wide modules like
odoo-bin does and serves commands like requests (check_signaling, cursor,
commit then signal_changes, or rollback then reset_changes).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import odoo
from odoo.tests import BaseCase, tagged
from odoo.tools import config

from ormcache_redis import Codec, RedisClient
from ormcache_redis.testing import RedisServer
from ormcache_redis.testing.topologies import RedisClusterSet, SentinelSet

from . import odoo_worker

ENTRY_HEADER = 4 + 8 + 32  # magic, generation token, tag (see src/entry.rs)


def server_wide_modules():
    modules = getattr(getattr(odoo, "conf", None), "server_wide_modules", None)  # 17.0, 18.0
    return modules or config["server_wide_modules"]  # 19.0


class OdooWorker:
    def __init__(self, db_name, redis_url, log_path, environment=None):
        options = {
            "--db_host": config["db_host"],
            "--db_port": config["db_port"],
            "--db_user": config["db_user"],
            "--db_password": config["db_password"],
            "--addons-path": config["addons_path"]
            if isinstance(config["addons_path"], str)
            else ",".join(config["addons_path"]),
            "--load": ",".join(server_wide_modules()),
            "--log-level": "info",
            "--logfile": str(log_path),
        }
        # An option without a value (no password, a local socket) is left
        # out with its flag: "--db_password --addons-path ..." would make the
        # next flag the password and the worker exit on its arguments.
        odoo_args = [
            part
            for flag, value in options.items()
            if value not in (None, False, "")
            for part in (flag, str(value))
        ]
        environment = {**os.environ, **(environment or {})}
        environment["ORMCACHE_REDIS_URL"] = redis_url
        # The worker re-imports odoo from the tree this test runs from.
        tree = str(Path(odoo.__path__[0]).parent)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [tree, environment.get("PYTHONPATH")])
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                odoo_worker.BOOTSTRAP,
                json.dumps({"db": db_name, "odoo_args": odoo_args}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        assert self._read() == "ready"

    def _read(self):
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"worker exited with {self.process.wait()}")
            if line.startswith("@@"):
                answer = json.loads(line[2:])
                if not answer["ok"]:
                    raise WorkerError(answer["error"])
                return answer["result"]

    def __call__(self, name, *args):
        self.process.stdin.write(json.dumps({"name": name, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WorkerError(Exception):
    pass


class RecoveryChecks:
    """For a test case with two workers (``worker_a``, ``worker_b``) and a
    parameter ``key`` of its own."""

    def assert_redis_used_again(self):
        """After a fault: within 40 s, a value A computes reaches B through
        Redis (each round writes a new value: a new generation, a new entry)."""
        a, b = self.worker_a, self.worker_b
        deadline = time.monotonic() + 40
        while True:
            a("set_param", self.key, f"r{time.monotonic()}")
            a("get_param", self.key)
            if b("get_param", self.key)["l2_hits"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertLess(time.monotonic(), deadline, "Redis use did not recover")


@tagged("post_install", "-at_install", "ormcache_redis_multiprocess")
class TestTwoProcesses(RecoveryChecks, BaseCase):
    # Last (19 sorts on this, 17/18 on module names): the workers move the
    # database's signaling numbers, which this process only re-reads at its
    # next check_signaling.
    test_sequence = 100

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is needed by the multi-process tests")
        cls.redis = cls.start_redis()
        db_name = odoo.tests.common.get_db_name()
        cls.logdir = Path(cls.redis.workdir)
        cls.worker_a = OdooWorker(db_name, cls.redis.url, cls.logdir / "worker_a.log")
        cls.addClassCleanup(cls.worker_a.close)
        cls.worker_b = OdooWorker(db_name, cls.redis.url, cls.logdir / "worker_b.log")
        cls.addClassCleanup(cls.worker_b.close)

    @classmethod
    def start_redis(cls):
        server = RedisServer()
        server.start()
        cls.addClassCleanup(server.stop)
        return server

    def setUp(self):
        super().setUp()
        if self.redis.process is None:
            self.redis.start()
        self.key = f"ormcache_redis.test.{uuid.uuid4().hex}"

    def test_01_shared_value_and_read_your_writes(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "v0")
        first = a("get_param", self.key)
        self.assertEqual(first["value"], "v0")
        self.assertEqual(first["misses"], 1)
        # B never computed it: it comes from Redis.
        seen_by_b = b("get_param", self.key)
        self.assertEqual(seen_by_b["value"], "v0")
        self.assertEqual(seen_by_b["l2_hits"], 1, seen_by_b)
        # A commits a change that clears the cache; B's next request sees it.
        a("set_param", self.key, "v1")
        after = b("get_param", self.key)
        self.assertEqual(after["value"], "v1")
        self.assertEqual(after["l2_hits"], 0, "must not read the entry of the old generation")
        # The generation is the database's number in both processes.
        name = "stable" if "stable" in a("sequences") else "default"
        self.assertEqual(a("namespace", name), b("namespace", name))

    def test_02_rollback_publishes_nothing(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "committed")
        self.assertEqual(b("get_param", self.key)["value"], "committed")
        with self.assertRaises(WorkerError):
            a("set_param_then_fail", self.key, "rolled back")
        self.assertEqual(a("get_param", self.key)["value"], "committed")
        self.assertEqual(b("get_param", self.key)["value"], "committed")

    def test_03_method_clear_reaches_the_other_process(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "p0")
        self.assertEqual(a("probe_read", self.key)["value"], "p0")
        from_redis = b("probe_read", self.key)
        self.assertEqual(from_redis, {"value": "p0", "l1_hits": 0, "l2_hits": 1, "misses": 0})
        self.assertEqual(b("probe_read", self.key)["l1_hits"], 1)
        sequences_before = a("sequences")
        a("probe_update", self.key, "p1")
        # One method, not the whole cache: Odoo's signaling did not move.
        self.assertEqual(a("sequences"), sequences_before)
        self.assertEqual(b("probe_read", self.key)["value"], "p1")

    def test_04_registry_change_gets_a_new_namespace(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "r0")
        a("get_param", self.key)
        self.assertEqual(b("get_param", self.key)["l2_hits"], 1)
        before = b("namespace", "default")
        a("signal_registry")  # what a module install signals
        after = b("namespace", "default")  # B reloaded its registry
        self.assertNotEqual(before, after)
        self.assertEqual(b("get_param", self.key)["l2_hits"], 0)

    def test_05_redis_down_requests_still_succeed(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "d0")
        self.redis.stop()
        self.assertEqual(a("get_param", self.key)["value"], "d0")
        a("set_param", self.key, "d1")
        self.assertEqual(b("get_param", self.key)["value"], "d1")
        self.assertEqual(a("probe_read", self.key)["value"], "d1")
        a("probe_update", self.key, "d2")  # falls back to Odoo's signaling
        self.assertEqual(b("probe_read", self.key)["value"], "d2")
        self.redis.start()
        self.assert_redis_used_again()

    def test_06_values_planted_in_redis_are_never_served(self):
        """An attacker who can write to Redis copies the header of a genuine
        entry and appends a body of their choice: a freshly started server
        must compute the genuine value, never serve the planted one."""
        a = self.worker_a
        a("set_param", self.key, "genuine")
        self.assertEqual(a("get_param", self.key)["value"], "genuine")
        self.assertTrue(a("flush"))
        raw = RedisClient(self.redis.url)
        names = raw.execute("KEYS", "*:c:*")
        self.assertTrue(names)
        for name in names:
            genuine = raw.execute("GET", name)
            raw.execute("SET", name, genuine[:ENTRY_HEADER] + Codec().dumps("planted"))
        restarted = OdooWorker(
            odoo.tests.common.get_db_name(), self.redis.url, self.logdir / "worker_c.log"
        )
        try:
            seen = restarted("get_param", self.key)
            state = restarted("tier_state", "stable" if "stable" in a("sequences") else "default")
        finally:
            restarted.close()
        self.assertEqual(seen["value"], "genuine")
        self.assertEqual(seen["l2_hits"], 0)
        self.assertGreaterEqual(state["cache"]["forged_entries"], 1, state)

    def test_07_lost_method_bookkeeping_never_serves_a_cleared_value(self):
        """Eviction or a flush can lose the generation tokens and the clear
        version right after a per-method clear: the other process must
        still drop its copy."""
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "m0")
        self.assertEqual(a("probe_read", self.key)["value"], "m0")
        self.assertTrue(a("flush"))
        self.assertEqual(b("probe_read", self.key)["value"], "m0")
        self.assertEqual(b("probe_read", self.key)["l1_hits"], 1)
        a("probe_update", self.key, "m1")
        raw = RedisClient(self.redis.url)
        lost = [*raw.execute("KEYS", "*:g:*"), *raw.execute("KEYS", "*methods-version")]
        self.assertTrue(lost)
        raw.execute("DEL", *lost)
        self.assertEqual(b("probe_read", self.key)["value"], "m1")

    def test_08_declared_dependencies_clear_in_every_process(self):
        """``depends_on``: the ORM's create/write/unlink in one process clear
        the method in the other, once per transaction, never on rollback
        nor for a field the method does not read."""
        a, b = self.worker_a, self.worker_b
        category = a("category_create", {"name": self.key, "color": 1})
        self.assertIn([category, 1], a("category_colors")["value"])
        self.assertEqual(b("category_colors")["l2_hits"], 1)
        self.assertEqual(b("category_colors")["l1_hits"], 1)

        clears = a("tier_state", "default")["counters"]["method_clears"]
        a("category_write", category, {"color": 2}, 50)
        self.assertEqual(a("tier_state", "default")["counters"]["method_clears"], clears + 1)
        self.assertIn([category, 2], b("category_colors")["value"])

        a("category_write", category, {"name": f"{self.key} renamed"})
        self.assertEqual(b("category_colors")["l1_hits"], 1, "an unlisted field clears nothing")

        with self.assertRaises(WorkerError):
            a("category_write_then_fail", category, {"color": 3})
        after_rollback = b("category_colors")
        self.assertEqual(after_rollback["l1_hits"], 1, after_rollback)
        self.assertIn([category, 2], a("category_colors")["value"])

        a("category_unlink", category)
        self.assertNotIn(category, dict(b("category_colors")["value"]))

    def test_09_plain_ormcache_clear_cache_reaches_the_other_process(self):
        """``self.method.clear_cache(self)`` on a method cached with Odoo's
        own ``odoo.tools.ormcache``: that method only, at commit only."""
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "q0")
        for method in ("_read_param", "_read_param_too"):
            self.assertEqual(a("plain_read", method, self.key)["value"], "q0")
            self.assertEqual(b("plain_read", method, self.key)["value"], "q0")
            self.assertEqual(b("plain_read", method, self.key)["l1_hits"], 1)
        with self.assertRaises(WorkerError):
            a("plain_update_then_fail", self.key, "rolled back")
        # Rolled back: nothing published, B's copy is still valid (a clear
        # would have made B compute it again).
        after_rollback = b("plain_read", "_read_param", self.key)
        self.assertEqual((after_rollback["value"], after_rollback["misses"]), ("q0", 0))
        sequences_before = a("sequences")
        a("plain_update", self.key, "q1")
        self.assertEqual(a("sequences"), sequences_before, "a method clear, not Odoo's signal")
        self.assertEqual(b("plain_read", "_read_param", self.key)["value"], "q1")
        # The other method of the same cache keeps its entries: still the
        # value read before the update, not computed again. (B may take it
        # from Redis rather than L1: the first sync after a method's token
        # appeared drops that method's L1 copies once.)
        other = b("plain_read", "_read_param_too", self.key)
        self.assertEqual((other["value"], other["misses"]), ("q0", 0))


class Topology:
    """A Sentinel set-up or a Redis Cluster seen as the one server the
    tests above use: its URL, a place for logs, always running."""

    process = True

    def __init__(self, topology, url):
        self.topology = topology
        self.url = url
        self.workdir = (
            topology.nodes[0].workdir if hasattr(topology, "nodes") else (topology.master.workdir)
        )


@tagged("post_install", "-at_install", "ormcache_redis_multiprocess")
class TestTwoProcessesSentinel(TestTwoProcesses):
    """The same through redis+sentinel://; test 05 is a failover here: the
    master is killed, a replica promoted, and requests never fail."""

    # Odoo 18+ runs only the methods a class defines unless told so.
    allow_inherited_tests_method = True
    test_sequence = 101

    @classmethod
    def start_redis(cls):
        sentinels = SentinelSet()
        cls.addClassCleanup(sentinels.close)
        sentinels.start()
        return Topology(sentinels, sentinels.url())

    def test_05_redis_down_requests_still_succeed(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "f0")
        self.assertEqual(b("get_param", self.key)["value"], "f0")
        old = self.redis.topology.master
        self.redis.topology.kill_master()
        a("set_param", self.key, "f1")
        self.assertEqual(b("get_param", self.key)["value"], "f1")
        self.assert_redis_used_again()
        self.redis.topology.revive(old)


@tagged("post_install", "-at_install", "ormcache_redis_multiprocess")
class TestTwoProcessesCluster(TestTwoProcesses):
    """The same through redis+cluster:// (three masters, one replica
    each); test 05 kills a master and its replica takes over."""

    # Odoo 18+ runs only the methods a class defines unless told so.
    allow_inherited_tests_method = True
    test_sequence = 102

    @classmethod
    def start_redis(cls):
        cluster = RedisClusterSet()
        cls.addClassCleanup(cluster.close)
        cluster.start()
        return Topology(cluster, cluster.url())

    def test_05_redis_down_requests_still_succeed(self):
        a, b = self.worker_a, self.worker_b
        a("set_param", self.key, "f0")
        self.assertEqual(b("get_param", self.key)["value"], "f0")
        cluster = self.redis.topology
        cluster.kill_master(cluster.masters()[0])
        a("set_param", self.key, "f1")
        self.assertEqual(b("get_param", self.key)["value"], "f1")
        self.assert_redis_used_again()
