"""Round-trip cost of the safe codec against pickle protocol 5.

For each value: ns per (dumps + loads), best of several timeit repeats,
measured side by side in one process. Ratio = codec / pickle (<= 1.0 means
the codec is at least as fast). Run: python bench/bench_codec.py
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import pickle
import timeit

from ormcache_redis import _native

DOMAIN = ["&", ("state", "=", "draft"), "|", ("partner_id", "in", [1, 2, 3]), ("amount", ">", 10.5)]

VALUES: dict[str, object] = {
    "tuple of 100 ints": tuple(range(100)),
    "dict of 50 str->float": {f"field_{i}": i * 1.5 for i in range(50)},
    "odoo domain": DOMAIN,
    "frozenset of 20 ints": frozenset(range(1000, 1020)),
    # Not part of the target, shown for information.
    "small str": "en_US",
    "list of 20 (id, name) pairs": [(i, f"Partner {i}") for i in range(20)],
    "datetime + Decimal row": (
        datetime.datetime(2024, 5, 17, 12, 30, 45, 123456),
        datetime.date(2024, 5, 17),
        decimal.Decimal("1234.5600"),
    ),
}
TARGET = list(VALUES)[:4]


def best_ns(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    codec = _native.Codec()
    c_dumps, c_loads = codec.dumps, codec.loads
    p_dumps, p_loads = pickle.dumps, pickle.loads

    print(
        f"{'value':<30} {'codec ns':>10} {'pickle ns':>10} {'ratio':>7} "
        f"{'codec B':>8} {'pickle B':>9}"
    )
    worst = 0.0
    for name, value in VALUES.items():
        assert c_loads(c_dumps(value)) == value

        def ours(v=value):
            return c_loads(c_dumps(v))

        def theirs(v=value):
            return p_loads(p_dumps(v, 5))

        # Interleave the repeats so both see the same machine conditions.
        ours_ns = theirs_ns = float("inf")
        for _ in range(args.repeat):
            ours_ns = min(ours_ns, best_ns(ours, args.number, 1))
            theirs_ns = min(theirs_ns, best_ns(theirs, args.number, 1))
        ratio = ours_ns / theirs_ns
        if name in TARGET:
            worst = max(worst, ratio)
        mark = "" if name in TARGET else "  (info)"
        print(
            f"{name:<30} {ours_ns:>10.0f} {theirs_ns:>10.0f} {ratio:>7.2f} "
            f"{len(c_dumps(value)):>8} {len(p_dumps(value, 5)):>9}{mark}"
        )
    print(f"worst ratio on target values: {worst:.2f} (target <= 1.00)")

    # Canonical keys (information only): cost of canonical_key + key_digest.
    key = ("res.users", main, 7, frozenset({1, 2}), "en_US", None, True)
    canonical, digest = _native.canonical_key, _native.key_digest
    key_ns = min(best_ns(lambda: canonical(key), args.number, 1) for _ in range(args.repeat))
    both_ns = min(
        best_ns(lambda: digest(b"db:1", canonical(key)), args.number, 1) for _ in range(args.repeat)
    )
    print(f"canonical_key(odoo-shaped key): {key_ns:.0f} ns; + key_digest: {both_ns:.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
