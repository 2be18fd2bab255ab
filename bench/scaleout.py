"""Sizing figures for one Redis, a Sentinel set-up and a Redis Cluster,
side by side, on real ``redis-server`` processes on this machine.

For each topology (one server; master + replica + 3 sentinels; 3 masters
with a replica each) it measures:

- memory per cached entry, for three typical Odoo values (a tuple of 20
  record ids, as ``_get_group_ids``; a dict of 50 short strings, as field
  labels or translations; a nested menu tree of about 4 KB, as
  ``load_menus``), written through ``TwoTierCache`` with a secret and
  method keys: Redis's ``used_memory`` growth (summed over the masters)
  divided by the entries written, next to the stored value's size;
- operations per second, from ``threads`` client threads for ``seconds``
  each: ``GET`` one at a time, ``GET`` in pipelines of 100, and the
  engine's L2 hit (``TwoTierCache`` lookup with L1 cold: ``HGET`` of the
  method's generation and ``GET`` of the entry);
- Redis CPU per operation (``INFO cpu`` user+sys growth over the GET runs,
  summed over the masters), hence what one Redis core would serve when the
  clients are on other machines (here clients and servers share the cores).

    .venv/bin/python bench/scaleout.py [--entries 20000] [--seconds 2] [--threads 4]

Prints one table per measure; ``--json FILE`` writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ormcache_redis import Codec, RedisClient, TwoTierCache
from ormcache_redis.testing import RedisServer
from ormcache_redis.testing.topologies import RedisClusterSet, SentinelSet

SECRET = "a benchmark secret of at least 32 characters"
ENTRY_HEADER = 4 + 8 + 32


def typical_values() -> dict[str, Callable[[int], Any]]:
    menu = {
        "id": "root",
        "children": [
            {
                "id": n,
                "name": f"Menu {n}",
                "xmlid": f"module_{n}.menu_{n}",
                "action": f"ir.actions.act_window,{100 + n}",
                "children": list(range(n, n + 8)),
                "webIcon": False,
            }
            for n in range(24)
        ],
    }
    return {
        "group ids (20 ints)": lambda n: tuple(range(n, n + 20)),
        "labels (dict of 50 str)": lambda n: {f"field_{i}_{n}": f"Label {i}" for i in range(50)},
        "menu tree (~4 KB)": lambda n: {**menu, "root_id": n},
    }


def the_method(record_id: int) -> None:
    """Stands for a cached model method (the entries' keys name it)."""


@contextmanager
def topologies(which: list[str]) -> Iterator[list[tuple[str, str, list[int]]]]:
    """(name, url, ports of the masters) of each running topology."""
    running: list[Any] = []
    found = []
    try:
        if "single" in which:
            server = RedisServer().start()
            running.append(server)
            found.append(("single node", server.url, [server.port]))
        if "sentinel" in which:
            sentinels = SentinelSet().start()
            running.append(sentinels)
            ports = [sentinels.master.port]
            found.append(("sentinel (1 master, 1 replica)", sentinels.url(), ports))
        if "cluster" in which:
            cluster = RedisClusterSet().start()
            running.append(cluster)
            found.append(
                ("cluster (3 masters + 3 replicas)", cluster.url(),
                 [node.port for node in cluster.masters()])
            )  # fmt: skip
        yield found
    finally:
        for topology in running:
            topology.close()


def info(port: int, section: str) -> dict[str, str]:
    reply = RedisClient(f"redis://127.0.0.1:{port}/0").execute("INFO", section)
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def used_memory(ports: list[int]) -> int:
    return sum(int(info(port, "memory")["used_memory"]) for port in ports)


def cpu_seconds(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        cpu = info(port, "cpu")
        total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def memory_per_entry(url: str, ports: list[int], entries: int) -> dict[str, dict[str, float]]:
    client = RedisClient(url, socket_timeout=2.0, write_queue=entries * 2)
    figures = {}
    for kind, make in typical_values().items():
        cache = TwoTierCache(
            "bench", 16, client=client, codec=Codec(), secret=SECRET, hash_tag="bench",
            namespace=f"bench:{kind}:{time.monotonic_ns()}".encode(),
        )  # fmt: skip
        before = used_memory(ports)
        for n in range(entries):
            cache[("res.users", the_method, n)] = make(n)
            if n % 1000 == 999:
                client.flush(30.0)
        client.flush(30.0)
        grown = used_memory(ports) - before
        # Stored bytes: the header (magic, generation token, MAC tag) and
        # the encoded value (see src/entry.rs).
        stored = ENTRY_HEADER + len(Codec().dumps(make(0)))
        figures[kind] = {"bytes_per_entry": grown / entries, "value_bytes": stored}
    return figures


def run_threads(threads: int, seconds: float, body: Callable[[int], int]) -> float:
    """Operations per second of ``threads`` threads running ``body`` (which
    returns the operations it did) until ``seconds`` passed."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(n: int) -> None:
        while time.monotonic() < stop:
            counts[n] += body(n)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def throughput(url: str, ports: list[int], seconds: float, threads: int) -> dict[str, float]:
    client = RedisClient(url, socket_timeout=2.0, max_idle=threads)
    keys = [f"bench:get:{n}" for n in range(1000)]
    client.pipeline([("SET", key, "x" * 100) for key in keys])
    figures: dict[str, float] = {}

    def single(n: int) -> int:
        for i in range(100):
            client.execute("GET", keys[(n * 100 + i) % len(keys)])
        return 100

    def pipelined(n: int) -> int:
        client.pipeline([("GET", keys[(n * 100 + i) % len(keys)]) for i in range(100)])
        return 100

    for name, body in (("GET, one at a time", single), ("GET, pipelines of 100", pipelined)):
        cpu = cpu_seconds(ports)
        rate = run_threads(threads, seconds, body)
        spent = cpu_seconds(ports) - cpu
        figures[name] = rate
        figures[f"{name}: Redis CPU µs/op"] = spent / (rate * seconds) * 1e6

    cache = TwoTierCache(
        "bench", 1, client=client, codec=Codec(), secret=SECRET, hash_tag="bench",
        namespace=f"bench:hits:{time.monotonic_ns()}".encode(),
    )  # fmt: skip
    values = typical_values()["group ids (20 ints)"]
    for n in range(1000):
        cache[("res.users", the_method, n)] = values(n)
    client.flush(30.0)

    def l2_hits(n: int) -> int:
        for i in range(100):
            cache.clear()  # L1 cold: every lookup goes to Redis
            cache[("res.users", the_method, (n * 100 + i) % 1000)]
        return 100

    cpu = cpu_seconds(ports)
    rate = run_threads(threads, seconds, l2_hits)
    figures["L2 hit (HGET + GET)"] = rate
    spent = cpu_seconds(ports) - cpu
    figures["L2 hit (HGET + GET): Redis CPU µs/op"] = spent / (rate * seconds) * 1e6
    return figures


def table(title: str, columns: list[str], rows: dict[str, list[str]]) -> None:
    print(f"\n{title}\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "--:|" * len(columns))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--only", default="single,sentinel,cluster")
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with topologies(args.only.split(",")) as running:
        for name, url, ports in running:
            results[name] = {
                "memory": memory_per_entry(url, ports, args.entries),
                "throughput": throughput(url, ports, args.seconds, args.threads),
            }
    names = list(results)
    kinds = list(typical_values())
    table(
        f"Redis memory per cached entry ({args.entries} entries of each kind; bytes)",
        names,
        {
            f"{kind} (value {results[names[0]]['memory'][kind]['value_bytes']} B)": [
                f"{results[name]['memory'][kind]['bytes_per_entry']:.0f}" for name in names
            ]
            for kind in kinds
        },
    )
    measures = list(results[names[0]]["throughput"])
    table(
        f"Operations per second ({args.threads} client threads, {os.cpu_count()} cores shared "
        "with the servers) and Redis CPU per operation",
        names,
        {
            measure: [
                f"{results[name]['throughput'][measure]:,.1f}"
                if "µs" in measure
                else f"{results[name]['throughput'][measure]:,.0f}"
                for name in names
            ]
            for measure in measures
        },
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
