"""L1's memory bound: every cache of a process draws on one byte budget.

Each scenario runs in a fresh interpreter: the budget is the process's, so
caches left alive by other tests would count in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ormcache_redis import LRU, l1_memory, set_l1_max_bytes
from ormcache_redis._native import CacheSettings
from ormcache_redis.config import OPTIONS, ConfigError

MB = 1 << 20


def run_child(script: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Runs ``script`` in a fresh interpreter; its last line of output is JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_least_recently_used_entries_of_every_cache_go_first() -> None:
    figures = run_child(
        """
        import json
        from ormcache_redis import LRU, Codec, TwoTierCache, l1_memory, set_l1_max_bytes

        MB = 1 << 20
        a = LRU(100)
        b = TwoTierCache("b", 100, client=None, codec=Codec())
        a["size"] = bytes(MB)
        entry = a.total_bytes  # one entry of 1 MiB, as counted
        a.clear()
        set_l1_max_bytes(3 * entry + entry // 2)  # room for three
        a[1] = bytes(MB)
        b[1] = bytes(MB)
        a[2] = bytes(MB)
        a[1]  # b's 1 is now the oldest
        b[2] = bytes(MB)
        first = (a.keys(), b.keys())
        b[3] = bytes(MB)  # then a's 2
        second = (a.keys(), b.keys())
        b[2]
        a[3] = bytes(MB)  # then a's 1, though b has more
        third = (a.keys(), b.keys())
        print(json.dumps(dict(first=first, second=second, third=third, memory=l1_memory(),
                              a=a.stats(), b=b.stats(), bytes=a.total_bytes + b.total_bytes)))
        """
    )
    assert figures["first"] == [[2, 1], [2]]
    assert figures["second"] == [[1], [2, 3]]
    assert figures["third"] == [[3], [3, 2]]
    memory = figures["memory"]
    assert memory["byte_evictions"] == 3 == figures["a"]["byte_evictions"] + figures["b"][
        "byte_evictions"
    ]
    assert memory["bytes"] == figures["bytes"] <= memory["max_bytes"]
    assert figures["a"]["process_bytes"] == memory["bytes"]


def test_a_value_larger_than_the_bound_is_not_kept() -> None:
    figures = run_child(
        """
        import json
        from ormcache_redis import LRU, l1_memory, set_l1_max_bytes

        set_l1_max_bytes(1 << 20)
        cache = LRU(10)
        cache["k"] = "small"
        cache["k"] = bytes(2 << 20)  # the small value is stale now: gone too
        print(json.dumps(dict(kept="k" in cache, memory=l1_memory(), stats=cache.stats())))
        """
    )
    assert not figures["kept"]
    assert figures["memory"]["too_large"] == figures["stats"]["too_large"] == 1
    assert figures["memory"]["bytes"] == 0


def test_threads_keep_the_byte_count_exact() -> None:
    figures = run_child(
        """
        import json, random, threading
        from ormcache_redis import LRU, Codec, TwoTierCache, l1_memory, set_l1_max_bytes

        set_l1_max_bytes(2 << 20)
        caches = [LRU(500) for _ in range(3)] + [
            TwoTierCache(f"t{i}", 500, client=None, codec=Codec()) for i in range(3)]
        values = [bytes(size) for size in (10, 1000, 20_000, 300_000)] + [
            tuple(range(2000)), {"a": list(range(500))}]

        def work(seed):
            rng = random.Random(seed)
            for _ in range(20_000):
                cache = rng.choice(caches)
                key = ("m", rng.randrange(300))
                action = rng.random()
                if action < 0.6:
                    cache[key] = rng.choice(values)
                elif action < 0.9:
                    cache.get(key)
                else:
                    cache.pop(key, None)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        during = l1_memory()
        summed = sum(cache.total_bytes for cache in caches)
        for cache in caches[:3]:
            cache.clear()
        del caches[3:]  # the dropped caches give their bytes back too
        print(json.dumps(dict(during=during, summed=summed, after=l1_memory())))
        """
    )
    during = figures["during"]
    assert during["bytes"] == figures["summed"] <= during["max_bytes"]
    assert during["byte_evictions"] > 0
    assert figures["after"]["bytes"] == 0
    assert figures["after"]["caches"] == 3


def test_the_bound_comes_from_the_environment_at_import() -> None:
    script = "import json; from ormcache_redis import l1_memory; print(json.dumps(l1_memory()))"
    env = {"PATH": "/usr/bin:/bin", "ORMCACHE_REDIS_L1_MAX_MB": "64"}
    assert run_child(script, env)["max_bytes"] == 64 * MB
    del env["ORMCACHE_REDIS_L1_MAX_MB"]
    assert run_child(script, env)["max_bytes"] == OPTIONS["ormcache_redis_l1_max_mb"].default * MB
    env["ORMCACHE_REDIS_L1_MAX_MB"] = "0"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert (
        "ConfigError: ormcache_redis_l1_max_mb must be between 1 and 1048576, got '0'."
        in done.stderr
    )


def test_the_addons_bound_is_a_quarter_of_limit_memory_soft() -> None:
    def bound(options: dict[str, str], soft: int | None) -> tuple[int, str]:
        settings = CacheSettings.parse(options, ["default"], soft)
        return settings.l1_max_bytes, settings.l1_max_bytes_from

    odoo_default = 2048 * MB  # Odoo 17, 18 and 19: --limit-memory-soft
    assert bound({}, odoo_default) == (512 * MB, "limit_memory_soft")
    assert bound({}, 8192 * MB) == (2048 * MB, "limit_memory_soft")
    assert bound({"ormcache_redis_l1_max_mb": "100"}, odoo_default) == (
        100 * MB,
        "ormcache_redis_l1_max_mb",
    )
    # 0 (or unset) is Odoo's "no limit": the option's default applies.
    assert bound({}, 0) == bound({}, None) == (512 * MB, "default")
    with pytest.raises(ConfigError, match=r"^ormcache_redis_l1_max_mb must be a whole number"):
        bound({"ormcache_redis_l1_max_mb": "lots"}, odoo_default)


def test_the_process_bound_rejects_nonsense() -> None:
    before = l1_memory()["max_bytes"]
    with pytest.raises(ValueError, match="max_bytes must be a positive number of bytes, got 0"):
        set_l1_max_bytes(0)
    assert l1_memory()["max_bytes"] == before
    cache = LRU(10)
    cache["k"] = "v"
    assert cache.stats()["process_max_bytes"] == before
