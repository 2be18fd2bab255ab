"""ormcache_redis benchmark: ratios against baselines run side by side.

Every figure is a ratio measured in this process, in one run, against a
baseline written here (Odoo 19's LRU and ormcache lookup, redis-py with
hiredis, pickle). Rounds of the candidate and its baseline are interleaved and
the best round of each is kept, so a noisy, shared machine moves both alike.
The round-trip rows (an L2 hit against redis-py and PING) are the median of
each round's own ratio instead: a round trip's cost drifts with the CPU's
wake-up latency, and two best rounds taken apart can differ in luck.
Nothing here asserts a time: the table is for people.

    python bench/run.py            # all sections, own redis-server
    REDIS_URL=redis://... python bench/run.py [--flush]
    python bench/run.py --odoo /path/to/odoo --odoo-python /path/to/venv/bin/python
                                   # and real Odoo's rows (bench/odoo_rows.py)

The benchmark empties the Redis database it uses (FLUSHDB). On REDIS_URL it
refuses a database that holds keys unless --flush says they may go.
"""

from __future__ import annotations

import argparse
import hmac
import os
import pickle
import statistics
import sys
import threading
import time
import timeit
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from inspect import Parameter, signature
from typing import Any

# bench/ is on sys.path when this file runs as a script.
from chart import Ratio, draw_ratios
from odoo_rows import add_arguments, odoo_ratios, prepare_odoo

from ormcache_redis import LRU, Codec, RedisClient, TwoTierCache, ormcache
from ormcache_redis._native import _derive_key, _mac_tag, _mac_verify
from ormcache_redis.testing import RedisServer

SECRET = "benchmark-deployment-secret"

# ---------------------------------------------------------------- baselines
# Odoo 19's LRU (odoo/tools/lru.py), written here as Odoo writes it.

SENTINEL = object()


class Odoo19LRU(MutableMapping):
    def __init__(self, count: int, pairs: Iterable = ()) -> None:
        self._count = count
        self._lock = threading.RLock()
        self._values: dict = {}
        self._ordering: dict = {}
        for key, value in pairs:
            self[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __getitem__(self, key: Any) -> Any:
        val = self._values[key]
        self._ordering[key] = self._ordering.pop(key, None)
        return val

    def __setitem__(self, key: Any, val: Any) -> None:
        values = self._values
        ordering = self._ordering
        with self._lock:
            values[key] = val
            ordering[key] = ordering.pop(key, None)
            while len(values) > self._count:
                key = next(iter(ordering), key)
                values.pop(key, None)
                ordering.pop(key, None)

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            self._ordering.pop(key, None)
            del self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator:
        return iter(list(self._ordering))


# Odoo 19's ormcache lookup (odoo/tools/cache.py): key lambda, counters,
# per-transaction lookup set, then the LRU.


class OdooCounter:
    __slots__ = ("cache_name", "err", "gen_time", "hit", "miss", "tx_err", "tx_hit", "tx_miss")

    def __init__(self) -> None:
        self.hit = self.miss = self.err = 0
        self.gen_time = 0.0
        self.cache_name = ""
        self.tx_hit = self.tx_miss = self.tx_err = 0


COUNTERS: defaultdict = defaultdict(OdooCounter)


class odoo19_ormcache:
    def __init__(self, *args: str, cache: str = "default") -> None:
        self.args = args
        self.cache_name = cache

    def __call__(self, method: Callable) -> Callable:
        self.method = method
        args = ", ".join(
            str(p.replace(annotation=Parameter.empty))
            for p in signature(method).parameters.values()
        )
        values = ["self._name", "method", *self.args]
        code = f"lambda {args}: ({''.join(a for arg in values for a in (arg, ','))})"
        self.key = eval(code, {"method": method})

        def lookup(*args: Any, **kwargs: Any) -> Any:
            return self.lookup(*args, **kwargs)

        lookup.__cache__ = self  # type: ignore[attr-defined]
        return lookup

    def lookup(self, *args: Any, **kwargs: Any) -> Any:
        model = args[0]
        d = model.pool._Registry__caches[self.cache_name]
        key = self.key(*args, **kwargs)
        counter = COUNTERS[model.pool.db_name, self.method]
        tx_lookups = model.env.cr.cache.setdefault("_ormcache_lookups", set())
        tx_first_lookup = key not in tx_lookups
        if tx_first_lookup:
            counter.cache_name = self.cache_name
            tx_lookups.add(key)
        try:
            r = d[key]
            counter.hit += 1
            counter.tx_hit += tx_first_lookup
            return r
        except KeyError:
            counter.miss += 1
            counter.tx_miss += tx_first_lookup
            value = self.method(*args, **kwargs)
            d[key] = value
            return value


# ---------------------------------------------------------------- model stand-ins


class Cursor:
    def __init__(self) -> None:
        self.cache: dict = {}


class Env:
    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.cr = Cursor()


class Pool:
    def __init__(self, caches: dict) -> None:
        self.db_name = "bench"
        self._Registry__caches = caches


class OdooStyleUsers:
    _name = "res.users"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.env = Env(7)

    @odoo19_ormcache("self.env.uid", "frozenset(groups)")
    def has_groups(self, groups: Any) -> bool:
        return True


class EngineUsers:
    _name = "res.users"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.env = Env(7)

    @ormcache("self.env.uid", "frozenset(groups)")
    def has_groups(self, groups: Any) -> bool:
        return True

    @ormcache("x")
    def trivial(self, x: int) -> int:
        return x


# ---------------------------------------------------------------- measuring


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str, float, float, str]] = []
        # The rows whose figure is ours / baseline (the miss rows hold
        # microseconds added instead).
        self.ratios: list[Ratio] = []

    def add(
        self,
        name: str,
        ours: float,
        baseline: str,
        theirs: float,
        target: str,
        ratio: float | None = None,
    ) -> None:
        """``ratio``: when not ours / theirs (the median of paired rounds)."""
        ratio = ours / theirs if ratio is None else ratio
        self.rows.append((name, ours, baseline, theirs, ratio, target))
        self.ratios.append(Ratio(name, baseline, ratio, target))

    def print(self) -> None:
        print()
        print(f"{'measure':<44} {'ours':>9} {'baseline':<34} {'base':>9} {'ratio':>6}  target")
        for name, ours, baseline, theirs, ratio, target in self.rows:
            print(
                f"{name:<44} {fmt(ours):>9} {baseline:<34} {fmt(theirs):>9} {ratio:>6.2f}  {target}"
            )


def fmt(ns: float) -> str:
    return f"{ns / 1000:.1f}us" if ns >= 10_000 else f"{ns:.0f}ns"


def side_by_side(
    ours: Callable[[], Any], theirs: Callable[[], Any], number: int, rounds: int
) -> tuple[float, float]:
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, timeit.timeit(ours, number=number) / number * 1e9)
        best_theirs = min(best_theirs, timeit.timeit(theirs, number=number) / number * 1e9)
    return best_ours, best_theirs


def paired_rounds(fns: list[Callable[[], Any]], number: int, rounds: int) -> list[list[float]]:
    """ns per call of each function in each round, the functions taken in
    turn within every round (so that each round's figures share its
    conditions): ``[round][function]``."""
    return [[timeit.timeit(fn, number=number) / number * 1e9 for fn in fns] for _ in range(rounds)]


def median_ratio(rounds: list[list[float]], ours: int, theirs: int) -> float:
    """The median over rounds of one function's time over another's in the
    same round: a round-trip's cost drifts with the CPU's wake-up latency
    (this VM's loopback PING reads 23 to 66 us from one second to the
    next), and the best round of each side, taken apart, can come from
    rounds of different luck."""
    return statistics.median(figures[ours] / figures[theirs] for figures in rounds)


# ---------------------------------------------------------------- sections


def bench_l1(table: Table, scale: int) -> None:
    groups = frozenset({1, 2, 3, 4})
    ours, theirs = LRU(8192), Odoo19LRU(8192)
    stored = ("res.users", EngineUsers.has_groups.method, 7, groups)
    ours[stored] = theirs[stored] = True
    # Same tuple object each time, then a fresh equal tuple (Odoo builds one per call).
    o, t = side_by_side(lambda: ours[stored], lambda: theirs[stored], 200_000 * scale, 7)
    table.add("L1 hit cache[key], same key object", o, "Odoo 19 LRU __getitem__", t, "<= 1.0")
    a, b, c, d = stored
    o, t = side_by_side(
        lambda: ours[(a, b, c, d)], lambda: theirs[(a, b, c, d)], 200_000 * scale, 7
    )
    table.add("L1 hit cache[key], fresh equal tuple", o, "Odoo 19 LRU __getitem__", t, "<= 1.0")


def bench_decorator(table: Table, scale: int, client: RedisClient) -> None:
    codec = Codec()
    engine_pool = Pool(
        {
            "default": TwoTierCache(
                "default",
                8192,
                client=client,
                codec=codec,
                namespace=b"bench:1:default:0",
                secret=SECRET,
            )
        }
    )
    odoo_pool = Pool({"default": Odoo19LRU(8192)})
    ours, theirs = EngineUsers(engine_pool), OdooStyleUsers(odoo_pool)
    groups = [1, 2, 3]
    ours.has_groups(groups)
    theirs.has_groups(groups)
    o, t = side_by_side(
        lambda: ours.has_groups(groups), lambda: theirs.has_groups(groups), 100_000 * scale, 7
    )
    table.add(
        "full @ormcache hit (uid, frozenset(groups))", o, "Odoo 19 ormcache + LRU", t, "<= 0.5"
    )


def bench_l2(table: Table, scale: int, client: RedisClient, url: str) -> None:
    import redis as redis_py

    value = tuple(range(100))
    codec = Codec()

    def make_cache() -> TwoTierCache:
        return TwoTierCache(
            "default",
            8192,
            client=client,
            codec=codec,
            namespace=b"bench:1:default:0",
            secret=SECRET,
            follow_clears=None,  # synced (or not) by hand below
        )

    # The addon syncs generations at the start of every unit of work, so a
    # read needs no HGET of the method's token; a standalone cache that is
    # never synced asks for it with each read (a two-command pipeline).
    synced, unsynced = make_cache(), make_cache()
    key = ("res.users", EngineUsers.has_groups.method, 7, frozenset({1, 2}))
    synced[key] = value
    assert client.flush(5)
    synced.sync_generations()
    pyredis = redis_py.Redis.from_url(url)
    pyredis.set("bench:pickle", pickle.dumps(value, 5))

    def l2_hit(cache: TwoTierCache) -> Callable[[], Any]:
        def hit() -> Any:
            cache.pop(key, None)  # L1 cold: the next lookup goes to Redis
            return cache[key]

        return hit

    def redis_py_get() -> Any:
        return pickle.loads(pyredis.get("bench:pickle"))

    synced_hit, unsynced_hit = l2_hit(synced), l2_hit(unsynced)
    assert synced_hit() == value and unsynced_hit() == value and redis_py_get() == value
    assert synced.stats()["l2_hits"] >= 1 and unsynced.stats()["l2_hits"] >= 1
    # Round trips on an idle VM are dominated by CPU wake-up latency, which
    # drifts: every variant is measured in the same rounds, and each ratio
    # is the median of the rounds' own ratios (times: each one's median).
    rounds = paired_rounds(
        [synced_hit, unsynced_hit, redis_py_get, pyredis.ping, client.ping], 1_000 * scale, 15
    )
    medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
    parser = type(pyredis.connection_pool.get_connection()._parser).__name__
    row = "L2 hit (L1 cold), tuple of 100 ints"
    for ours, name, theirs, baseline, target in (
        (0, row, 2, f"redis-py GET+pickle ({parser})", "<= 0.8"),
        (0, row, 3, "redis-py PING round trip", "(info)"),
        (0, row, 4, "RedisClient.ping round trip", "<= 1.3"),
        (1, f"{row}, never synced", 4, "RedisClient.ping round trip", "(info)"),
    ):
        ratio = median_ratio(rounds, ours, theirs)
        table.add(name, medians[ours], baseline, medians[theirs], target, ratio)


def bench_mac(table: Table, scale: int) -> None:
    """What authenticating an L2 hit costs: the tag check of an entry
    holding a tuple of 100 ints (magic, key digest, token, codec bytes)."""
    key = _derive_key(SECRET, "cache-entry")
    message = b"OCE2" + bytes(32) + bytes(8) + Codec().dumps(tuple(range(100)))
    tag = _mac_tag(key, message)
    assert _mac_verify(key, message, tag)
    o, t = side_by_side(
        lambda: _mac_verify(key, message, tag),
        lambda: hmac.compare_digest(hmac.digest(key, message, "sha256"), tag),
        100_000 * scale,
        7,
    )
    table.add("MAC verify, 100-int tuple entry", o, "stdlib hmac (OpenSSL) + compare", t, "<= 1 us")


def bench_codec(table: Table, scale: int) -> None:
    codec = Codec()
    domain = [
        "&",
        ("state", "=", "draft"),
        "|",
        ("partner_id", "in", [1, 2, 3]),
        ("amount", ">", 10.5),
    ]
    values = {
        "tuple of 100 ints": tuple(range(100)),
        "dict of 50 str->float": {f"field_{i}": i * 1.5 for i in range(50)},
        "Odoo domain list": domain,
        "frozenset of 20 ints": frozenset(range(1000, 1020)),
    }
    for name, value in values.items():
        assert codec.loads(codec.dumps(value)) == value
        o, t = side_by_side(
            lambda v=value: codec.loads(codec.dumps(v)),
            lambda v=value: pickle.loads(pickle.dumps(v, 5)),
            20_000 * scale,
            7,
        )
        table.add(f"codec round trip: {name}", o, "pickle protocol 5 dumps+loads", t, "<= 1.0")


def bench_miss(table: Table, scale: int, client: RedisClient) -> None:
    codec = Codec()
    method = EngineUsers.trivial.method
    shared = TwoTierCache(
        "default", 10_000_000, client=client, codec=codec, namespace=b"bench:miss", secret=SECRET
    )
    local = TwoTierCache("default", 10_000_000, client=None, codec=codec)
    number = 2_000 * scale
    counter = iter(range(10**9))

    # The store after a miss: encode + queue the SET (Redis on) against L1 only.
    def shared_store() -> None:
        shared[("res.users", method, next(counter))] = 1

    def local_store() -> None:
        local[("res.users", method, next(counter))] = 1

    o, t = side_by_side(shared_store, local_store, number, 5)
    client.flush(30)
    table.rows.append(
        (
            "miss path: store (encode + queued SET)",
            o,
            "same store, L1 only",
            t,
            (o - t) / 1000,
            "added <= 5 us",
        )
    )

    # The whole miss as a caller sees it: L2 GET, compute, store.
    shared_pool = Pool({"default": shared})
    local_pool = Pool({"default": local})
    shared_model, local_model = EngineUsers(shared_pool), EngineUsers(local_pool)
    o, t = side_by_side(
        lambda: shared_model.trivial(next(counter)),
        lambda: local_model.trivial(next(counter)),
        number,
        5,
    )
    client.flush(30)
    table.rows.append(
        (
            "miss path: whole miss (L2 GET + store)",
            o,
            "same miss, L1 only",
            t,
            (o - t) / 1000,
            "(one round trip)",
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1, help="multiply iteration counts")
    parser.add_argument(
        "--only", choices=["l1", "decorator", "l2", "mac", "codec", "miss"], action="append"
    )
    parser.add_argument(
        "--flush",
        action="store_true",
        help="allow emptying the REDIS_URL database when it holds keys",
    )
    parser.add_argument("--chart", metavar="PNG", help="also draw the ratios into this file")
    add_arguments(parser)
    args = parser.parse_args()
    odoo = prepare_odoo(args)  # before the engine's sections: a wrong tree fails at once
    sections = set(args.only or ["l1", "decorator", "l2", "mac", "codec", "miss"])

    server = None
    url = os.environ.get("REDIS_URL")
    if url is None:
        server = RedisServer().start()
        url = server.url
    try:
        client = RedisClient(url)
        if server is None and not args.flush and client.execute("DBSIZE"):
            print(
                f"bench: the database of REDIS_URL ({client.address}) holds keys and the "
                "benchmark empties it (FLUSHDB); give a database of its own or pass --flush.",
                file=sys.stderr,
            )
            return 2
        client.execute("FLUSHDB")
        print(
            f"ormcache_redis benchmark, Python {sys.version.split()[0]}, Redis at {client.address}"
        )
        table = Table()
        if "l1" in sections:
            bench_l1(table, args.scale)
        if "decorator" in sections:
            bench_decorator(table, args.scale, client)
        if "l2" in sections:
            bench_l2(table, args.scale, client, url)
        if "mac" in sections:
            bench_mac(table, args.scale)
        if "codec" in sections:
            bench_codec(table, args.scale)
        if "miss" in sections:
            bench_miss(table, args.scale, client)
        table.print()
        print(
            "\nratio = ours / baseline (lower is better); the miss rows show the microseconds "
            "Redis adds to the caller instead."
        )
        ratios = [*table.ratios, *odoo_ratios(odoo, args)]
        if args.chart:
            draw_ratios(ratios, args.chart)
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    time.sleep(0)
    sys.exit(main())
