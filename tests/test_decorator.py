"""The standalone ``ormcache`` decorator: Odoo's key semantics, clear_cache, ttl."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from ormcache_redis import LRU, Codec, RedisClient, TwoTierCache, ormcache


class Pool:
    def __init__(self, caches: dict[str, Any]) -> None:
        self._Registry__caches = caches


def make_model(pool: Pool) -> type:
    class Users:
        _name = "res.users"

        def __init__(self, uid: int) -> None:
            self.uid = uid
            self.pool = pool
            self.calls = 0

        @ormcache("self.uid", "frozenset(groups)")
        def has_groups(self, groups: list[int], extra: int = 3) -> tuple:
            """Says which groups."""
            self.calls += 1
            return (self.uid, tuple(sorted(groups)), extra)

        @ormcache("name", cache="stable", ttl=0.05)
        def param(self, name: str) -> str:
            self.calls += 1
            return f"{name}:{self.calls}"

        @ormcache()
        def constant(self) -> list[int]:
            self.calls += 1
            return [1, 2]

        @ormcache("key")
        def by_key(self, key: Any) -> Any:
            self.calls += 1
            return key

    return Users


@pytest.fixture
def local_model() -> type:
    return make_model(Pool({"default": LRU(100), "stable": LRU(100)}))


def test_key_semantics_match_odoo(local_model: type) -> None:
    user = local_model(7)
    assert user.has_groups([1, 2]) == (7, (1, 2), 3)
    assert user.has_groups([2, 1]) == (7, (1, 2), 3)
    assert user.has_groups(groups=[1, 2], extra=9) == (7, (1, 2), 3)  # extra is not in the key
    assert user.calls == 1
    cache = user.pool._Registry__caches["default"]
    (key,) = list(cache)
    assert key[0] == "res.users" and key[1].__qualname__.endswith("has_groups")
    assert key[2:] == (7, frozenset({1, 2}))
    assert local_model(8).has_groups([1, 2]) == (8, (1, 2), 3)


def test_no_expression_key_and_identity_of_values(local_model: type) -> None:
    user = local_model(1)
    first = user.constant()
    assert user.constant() is first and user.calls == 1


def test_wrapper_metadata(local_model: type) -> None:
    assert local_model.has_groups.__name__ == "has_groups"
    assert local_model.has_groups.__doc__ == "Says which groups."
    assert local_model.has_groups.cache_name == "default"
    assert local_model.param.cache_name == "stable" and local_model.param.ttl == 0.05
    bound = local_model(1).has_groups
    assert bound.__self__.uid == 1 and bound.__func__ is local_model.has_groups
    assert bound.__name__ == "has_groups" and bound.cache_name == "default"


def test_unbound_call(local_model: type) -> None:
    user = local_model(3)
    assert local_model.has_groups(user, [5]) == (3, (5,), 3)


def test_clear_cache_drops_only_that_method(local_model: type) -> None:
    user = local_model(1)
    user.has_groups([1])
    user.constant()
    assert local_model.has_groups.clear_cache(user) == 1
    assert user.has_groups.clear_cache(user) == 0  # through the bound method
    user.has_groups([1])
    user.constant()
    assert user.calls == 3


def test_ttl(local_model: type) -> None:
    user = local_model(1)
    assert user.param("a") == "a:1"
    assert user.param("a") == "a:1"
    time.sleep(0.08)
    assert user.param("a") == "a:2"


def test_unhashable_key_is_computed_not_cached(
    local_model: type, caplog: pytest.LogCaptureFixture
) -> None:
    user = local_model(1)
    with caplog.at_level(logging.WARNING, logger="ormcache_redis"):
        assert user.by_key(["unhashable"]) == ["unhashable"]
        assert user.by_key(["unhashable"]) == ["unhashable"]
    assert user.calls == 2
    assert local_model.by_key.counters()["errors"] == 2
    assert "cache lookup error" in caplog.text and "unhashable" not in caplog.text.split(":")[0]


def test_exceptions_are_not_cached(local_model: type) -> None:
    calls = []

    class Model:
        _name = "m"
        pool = Pool({"default": LRU(10)})

        @ormcache("x")
        def fail(self, x: int) -> int:
            calls.append(x)
            raise ValueError("boom")

    for _ in range(2):
        with pytest.raises(ValueError):
            Model().fail(1)
    assert len(calls) == 2


def test_bad_decorator_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ormcache("x", ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        ormcache("x", ttl=float("nan"))
    # A lifetime passed positionally would silently become a key expression.
    with pytest.raises(TypeError, match=r"ttl=600"):
        ormcache("x", 600)
    with pytest.raises(TypeError, match="strings"):
        ormcache(("x",))
    with pytest.raises(TypeError):
        ormcache("x", skiparg=1)
    with pytest.raises(SyntaxError):

        @ormcache("x +")
        def broken(self: Any, x: int) -> int:
            return x


class SharedUsers:
    """At module level: methods of local classes have no cross-process name."""

    _name = "res.users"

    def __init__(self, uid: int, pool: Pool) -> None:
        self.uid = uid
        self.pool = pool
        self.calls = 0

    @ormcache("self.uid", "frozenset(groups)")
    def has_groups(self, groups: list[int]) -> tuple:
        self.calls += 1
        return (self.uid, tuple(sorted(groups)))


def test_shared_through_redis_and_clear_everywhere(redis_url: str) -> None:
    def two_tier_pool() -> Pool:
        client = RedisClient(redis_url)
        return Pool(
            {
                "default": TwoTierCache(
                    "default", 100, client=client, codec=Codec(), namespace=b"db:1"
                )
            }
        )

    first = SharedUsers(7, two_tier_pool())
    second = SharedUsers(7, two_tier_pool())
    assert first.has_groups([1, 2]) == (7, (1, 2))
    first.pool._Registry__caches["default"].client.flush(5)
    assert second.has_groups([2, 1]) == (7, (1, 2))
    assert second.calls == 0, "served from Redis"
    assert SharedUsers.has_groups.clear_cache(first) == 1
    third = SharedUsers(7, two_tier_pool())
    third.has_groups([1, 2])
    assert third.calls == 1, "the per-method clear reached the shared tier"


def test_local_class_methods_stay_in_the_process(redis_url: str, redis_server) -> None:
    client = RedisClient(redis_url)
    pool = Pool({"default": TwoTierCache("default", 10, client=client, codec=Codec())})
    local_model = make_model(pool)
    local_model(1).has_groups([1])
    client.flush(5)
    assert redis_server.command("KEYS", "*") == []
    assert pool._Registry__caches["default"].stats()["unencodable_keys"] >= 1
