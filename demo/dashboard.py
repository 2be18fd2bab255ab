"""Demo: a dashboard served by several worker processes, like Odoo's workers.

Each "request" renders a dashboard for a random customer: a handful of
aggregate SQL queries over an SQLite database of orders. The same workload
runs three times:

  1. no cache: every request queries the database;
  2. L1 only: each worker caches for itself (Odoo's behaviour);
  3. L1 + Redis: the workers share one cache through Redis.

It prints, per mode, the SQL queries run and the request latency. Uses
REDIS_URL when set, else starts a throwaway redis-server. On REDIS_URL it
flushes nothing: each run writes under its own namespace (so it starts
cold), with keys prefixed `ormcache-demo:` that expire after 10 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

from ormcache_redis import LRU, Codec, RedisClient, TwoTierCache, ormcache
from ormcache_redis.testing import RedisServer

CUSTOMERS = 300
ORDERS = 20_000
# Keys the demo leaves in a Redis it does not own are its own and short-lived.
REDIS_PREFIX = "ormcache-demo:"
REDIS_TTL = 600


def build_database(path: str) -> None:
    rng = random.Random(42)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, state TEXT,
                             amount REAL, day INTEGER);
        CREATE INDEX orders_customer ON orders (customer);
        """
    )
    db.executemany(
        "INSERT INTO orders (customer, state, amount, day) VALUES (?, ?, ?, ?)",
        (
            (
                rng.randrange(CUSTOMERS),
                rng.choice(["draft", "sale", "done"]),
                rng.random() * 1000,
                rng.randrange(365),
            )
            for _ in range(ORDERS)
        ),
    )
    db.commit()
    db.close()


class Registry:
    """What `@ormcache` needs from Odoo: `pool._Registry__caches`."""

    def __init__(self, caches: dict[str, Any]) -> None:
        self._Registry__caches = caches


class Dashboard:
    """A model-like object whose methods are cached like Odoo's."""

    _name = "sale.dashboard"

    def __init__(self, db: sqlite3.Connection, pool: Registry | None) -> None:
        self.db = db
        self.pool = pool
        self.queries = 0

    def _query(self, sql: str, *params: Any) -> list[tuple]:
        self.queries += 1
        return self.db.execute(sql, params).fetchall()

    def totals_uncached(self, customer: int) -> dict[str, Any]:
        by_state = dict(
            self._query(
                "SELECT state, SUM(amount) FROM orders WHERE customer = ? GROUP BY state", customer
            )
        )
        last_days = self._query(
            "SELECT day, COUNT(*) FROM orders WHERE customer = ? AND day > 300 "
            "GROUP BY day ORDER BY day",
            customer,
        )
        (rank,) = self._query(
            "SELECT COUNT(*) FROM (SELECT customer, SUM(amount) s FROM orders GROUP BY customer) "
            "WHERE s > (SELECT SUM(amount) FROM orders WHERE customer = ?)",
            customer,
        )[0]
        return {"by_state": by_state, "recent": tuple(last_days), "rank": rank + 1}

    @ormcache("customer")
    def totals(self, customer: int) -> dict[str, Any]:
        return self.totals_uncached(customer)


def worker(
    mode: str,
    db_path: str,
    redis_url: str | None,
    namespace: bytes,
    secret: bytes,
    seed: int,
    requests: int,
    results: Any,
) -> None:
    db = sqlite3.connect(db_path)
    if mode == "none":
        pool = None
    elif mode == "l1":
        pool = Registry({"default": LRU(4096)})
    else:
        client = RedisClient(redis_url)
        pool = Registry(
            {
                "default": TwoTierCache(
                    "default",
                    4096,
                    client=client,
                    codec=Codec(),
                    namespace=namespace,
                    prefix=REDIS_PREFIX,
                    ttl=REDIS_TTL,
                    secret=secret,
                )
            }
        )
    dashboard = Dashboard(db, pool)
    rng = random.Random(seed)
    latencies = []
    for _ in range(requests):
        # Popular customers are asked for more often, like real dashboards.
        customer = min(int(rng.expovariate(1 / 40)), CUSTOMERS - 1)
        started = time.perf_counter()
        if mode == "none":
            dashboard.totals_uncached(customer)
        else:
            dashboard.totals(customer)
        latencies.append(time.perf_counter() - started)
    if mode == "redis":
        pool._Registry__caches["default"].client.flush(10)
    results.put((dashboard.queries, latencies))


def run_mode(mode: str, db_path: str, redis_url: str | None, workers: int, requests: int) -> dict:
    results: Any = multiprocessing.Queue()
    # A namespace of this run only: the shared tier starts cold without
    # flushing anything. The workers share the secret that authenticates it.
    namespace = f"demo:{os.urandom(8).hex()}:default:0".encode()
    secret = os.urandom(32)
    processes = [
        multiprocessing.Process(
            target=worker, args=(mode, db_path, redis_url, namespace, secret, n, requests, results)
        )
        for n in range(workers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    gathered = [results.get() for _ in processes]
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    latencies = sorted(lat for _, lats in gathered for lat in lats)
    return {
        "queries": sum(q for q, _ in gathered),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=150, help="per worker")
    args = parser.parse_args()

    server = None
    redis_url = os.environ.get("REDIS_URL")
    if redis_url is None:
        server = RedisServer().start()
        redis_url = server.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = os.path.join(tmp, "demo.sqlite")
            build_database(db_path)
            print(
                f"{args.workers} workers x {args.requests} dashboard requests, "
                f"{ORDERS} orders in SQLite, Redis at {RedisClient(redis_url).address}\n"
            )
            print(f"{'mode':<24} {'SQL queries':>12} {'p50 ms':>8} {'p99 ms':>8} {'wall s':>7}")
            labels = {
                "none": "no cache",
                "l1": "L1 only (per worker)",
                "redis": "L1 + Redis (shared)",
            }
            for mode in ("none", "l1", "redis"):
                r = run_mode(mode, db_path, redis_url, args.workers, args.requests)
                print(
                    f"{labels[mode]:<24} {r['queries']:>12} {r['p50_ms']:>8.3f} "
                    f"{r['p99_ms']:>8.2f} {r['wall_s']:>7.2f}"
                )
            print(
                "\nWith Redis, a dashboard computed by one worker is served to every other worker:"
            )
            print("queries drop from once per worker to once in total, per customer.")
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
