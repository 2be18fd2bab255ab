"""Exercises an installed wheel: the codec, the LRU, and a value shared
through a real Redis between two caches (the second one's L1 is cold).

    python scripts/wheel_smoke.py unix:///tmp/redis.sock

Run by scripts/build_wheels.sh in a fresh virtualenv holding only the wheel.
"""

from __future__ import annotations

import sys
import time

import ormcache_redis
from ormcache_redis import LRU, Codec, RedisClient, RedisUnavailable, TwoTierCache


def wait_for_redis(client: RedisClient, attempts: int = 50) -> None:
    for _ in range(attempts):
        try:
            client.ping()
            return
        except RedisUnavailable:
            time.sleep(0.1)
    raise SystemExit(f"wheel: Redis at {client.address} did not answer")


def main(url: str) -> None:
    codec = Codec()
    value = ({"a": 1.5}, [1, 2, 3], frozenset({"x"}), None, b"\x00")
    assert codec.loads(codec.dumps(value)) == value

    lru: LRU[tuple[str, int], str] = LRU(8)
    lru[("k", 1)] = "v"
    assert lru[("k", 1)] == "v"

    client = RedisClient(url, socket_timeout=1.0)
    wait_for_redis(client)
    secret = "wheel smoke test secret"
    shared = {"client": client, "codec": codec, "namespace": b"smoke", "secret": secret}
    writer = TwoTierCache("default", 16, **shared)
    writer[("res.partner", "name", 7)] = value
    assert client.flush(5.0), "the write-behind queue did not drain"
    reader = TwoTierCache("default", 16, **shared)
    assert reader[("res.partner", "name", 7)] == value
    assert reader.stats()["l2_hits"] == 1

    print(
        f"wheel: ormcache_redis {ormcache_redis.__version__} from {ormcache_redis.__file__}: "
        "codec, LRU and a shared value through Redis work"
    )


if __name__ == "__main__":
    main(sys.argv[1])
