"""L1: the LRU mapping against a dict model, and Odoo's LRU protocol."""

from __future__ import annotations

import gc
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, MutableMapping

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ormcache_redis import LRU
from ormcache_redis._native import Codec, TwoTierCache

# Keys mixing the numeric types Python considers equal (1 == 1.0 == True).
keys = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, True, False]),
    st.text(max_size=2),
    st.tuples(st.integers(0, 2), st.frozensets(st.integers(0, 2), max_size=2)),
)


class LRUModel(RuleBasedStateMachine):
    """The model: an OrderedDict kept in recency order (oldest first)."""

    capacity = 5

    def __init__(self) -> None:
        super().__init__()
        self.cache: LRU = LRU(self.capacity)
        self.model: OrderedDict = OrderedDict()

    def _touch(self, key: object) -> None:
        self.model.move_to_end(key)

    @rule(key=keys, value=st.integers())
    def set(self, key: object, value: int) -> None:
        self.cache[key] = value
        if key in self.model:
            # Python keeps the first-inserted equal key: so do we.
            self.model[key] = value
            self._touch(key)
        else:
            self.model[key] = value
        while len(self.model) > self.capacity:
            self.model.popitem(last=False)

    @rule(key=keys)
    def get(self, key: object) -> None:
        if key in self.model:
            assert self.cache[key] == self.model[key]
            self._touch(key)
        else:
            with pytest.raises(KeyError):
                self.cache[key]

    @rule(key=keys)
    def contains(self, key: object) -> None:
        assert (key in self.cache) == (key in self.model)

    @rule(key=keys)
    def pop(self, key: object) -> None:
        assert self.cache.pop(key, "missing") == self.model.pop(key, "missing")

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(list(self.model)))
        del self.cache[key]
        del self.model[key]

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    @invariant()
    def same_content_in_recency_order(self) -> None:
        assert len(self.cache) == len(self.model)
        assert bool(self.cache) == bool(self.model)
        assert list(self.cache) == list(self.model)
        assert list(self.cache.snapshot.items()) == list(self.model.items())


TestLRUAgainstModel = LRUModel.TestCase
TestLRUAgainstModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_python_equality_semantics() -> None:
    cache = LRU(10)
    cache[1] = "one"
    assert cache[1.0] == "one"
    assert cache[True] == "one"
    assert len(cache) == 1
    cache[(1, frozenset({"a", "b"}))] = "tuple"
    assert cache[(1.0, frozenset({"b", "a"}))] == "tuple"


def test_unhashable_key_raises_type_error() -> None:
    cache = LRU(10)
    with pytest.raises(TypeError):
        cache[["list"]] = 1
    with pytest.raises(TypeError):
        cache[{"dict": 1}]
    with pytest.raises(TypeError):
        _ = ["list"] in cache


def test_returns_the_stored_object_itself() -> None:
    cache = LRU(10)
    value = {"mutable": [1, 2]}
    cache["k"] = value
    assert cache["k"] is value


def test_odoo_protocol() -> None:
    cache = LRU(3, [("a", 1), ("b", 2)])
    assert isinstance(cache, MutableMapping)
    assert cache.count == 3
    assert cache.get("a") == 1 and cache.get("zz") is None and cache.get("zz", 5) == 5
    assert cache.pop("a") == 1
    with pytest.raises(KeyError):
        cache.pop("a")
    assert cache.pop("a", None) is None
    assert dict(cache.d) == {"b": 2} == cache.snapshot
    assert cache.items() == [("b", 2)] and cache.keys() == ["b"] and cache.values() == [2]
    cache.clear()
    assert not cache and len(cache) == 0
    with pytest.raises(ValueError):
        LRU(0)


def test_eviction_order_and_counters() -> None:
    cache = LRU(2)
    cache["a"] = 1
    cache["b"] = 2
    cache["a"]  # a is now the most recent
    cache["c"] = 3  # evicts b
    assert "b" not in cache and list(cache) == ["a", "c"]
    with pytest.raises(KeyError):
        cache["b"]
    stats = cache.stats()
    assert stats["hits"] == 1 and stats["misses"] == 1
    assert stats["sets"] == 3 and stats["evictions"] == 1 and stats["entries"] == 2


def test_byte_bound_evicts_oldest() -> None:
    cache = LRU(1000, max_bytes=2000)
    for i in range(10):
        cache[i] = "x" * 500
    assert cache.total_bytes <= 2000
    assert 0 < len(cache) < 10
    assert 9 in cache and 0 not in cache


def test_ttl_expires_entries() -> None:
    cache = LRU(10)
    cache.set("short", 1, ttl=0.05)
    cache.set("long", 2, ttl=60)
    cache["forever"] = 3
    assert cache["short"] == 1
    time.sleep(0.08)
    assert "short" not in cache
    with pytest.raises(KeyError):
        cache["short"]
    assert cache["long"] == 2 and cache["forever"] == 3
    assert cache.stats()["expirations"] == 1
    default_ttl = LRU(10, ttl=0.05)
    default_ttl["k"] = 1
    time.sleep(0.08)
    assert default_ttl.get("k") is None
    with pytest.raises(ValueError):
        cache.set("bad", 1, ttl=-1)


class ReentrantKey:
    """A key whose __eq__ runs Python code that uses the same cache."""

    def __init__(self, cache: LRU, ident: int) -> None:
        self.cache = cache
        self.ident = ident

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        self.cache.get("other")  # would deadlock if __eq__ ran under the lock
        return isinstance(other, ReentrantKey) and other.ident == self.ident


def test_python_eq_may_reenter_the_cache() -> None:
    cache = LRU(10)
    cache[ReentrantKey(cache, 1)] = "one"
    cache[ReentrantKey(cache, 2)] = "two"
    assert cache[ReentrantKey(cache, 1)] == "one"
    assert cache[ReentrantKey(cache, 2)] == "two"
    assert len(cache) == 2


class Shouting(str):
    """A str whose equality is its own Python code."""

    calls = 0

    def __eq__(self, other: object) -> bool:
        Shouting.calls += 1
        return str(self).upper() == str(other).upper()

    __hash__ = str.__hash__


def test_keys_decided_under_the_lock_keep_pythons_answers() -> None:
    """Tuples of plain values are compared without Python code (equal but
    distinct strings included); any other item, wherever it sits in the
    tuple, goes through Python's own equality."""
    cache = LRU(10)
    distinct = "".join(["na", "me"])
    cache[("model", "name", 7)] = "plain"
    assert cache[("model", distinct, 7)] == "plain"
    assert ("model", "name", 8) not in cache
    nan = float("nan")
    cache[(nan, "x")] = "nan"
    assert cache[(nan, "x")] == "nan"  # identity, as in a dict
    cache[("m", Shouting("abc"))] = "shouting"
    calls = Shouting.calls
    assert cache[("m", "ABC".lower())] == "shouting"
    assert Shouting.calls > calls  # the subclass's __eq__ decided
    cache[(ReentrantKey(cache, 1), "a")] = "first"
    assert (ReentrantKey(cache, 1), "b") not in cache
    assert cache[(ReentrantKey(cache, 1), "a")] == "first"
    cache[(frozenset({1, 2}),)] = "frozenset"
    assert cache[(frozenset({2, 1}),)] == "frozenset"
    cache[((1, 2), 3.0)] = "nested"
    assert cache[((1.0, 2), 3)] == "nested"  # 1 == 1.0: the general path


def test_values_are_released_on_eviction_and_clear() -> None:
    class Value:
        alive = 0

        def __init__(self) -> None:
            Value.alive += 1

        def __del__(self) -> None:
            Value.alive -= 1

    cache = LRU(3)
    for i in range(10):
        cache[i] = Value()
    gc.collect()
    assert Value.alive == 3
    cache.clear()
    gc.collect()
    assert Value.alive == 0


def test_threads_hammering_one_cache(
    run_threads: Callable[[Callable[[int], None], int], None],
) -> None:
    cache = LRU(64)

    def worker(seed: int) -> None:
        for i in range(5000):
            key = ("model", (seed * 7 + i) % 100)
            cache[key] = i
            cache.get(key)
            if i % 50 == 0:
                cache.pop(("model", i % 100), None)
            if i % 500 == 0:
                list(cache)

    run_threads(worker, 8)
    assert len(cache) <= 64
    assert len(list(cache)) == len(cache)


def test_a_cache_in_a_cycle_is_freed_with_it():
    """A value that holds the cache (through the object owning both), and a
    TwoTierCache whose gate is a closure over its owner (as the addon's
    shared tier sets it): the garbage collector sees the entries and the
    gate, and frees the whole cycle."""

    class Owner:
        pass

    def gate_over(owner: Owner) -> Callable[[], bool]:
        return lambda: owner is None

    owner = Owner()
    owner.cache = LRU(8)
    owner.cache["self"] = owner
    gated = Owner()
    gated.cache = TwoTierCache("default", 8, client=None, codec=Codec())
    gated.cache.gate = gate_over(gated)
    gated.cache[("res.users", "m", 1)] = "v"
    owners = [weakref.ref(owner), weakref.ref(gated)]
    del owner, gated
    gc.collect()
    assert [ref() for ref in owners] == [None, None]
