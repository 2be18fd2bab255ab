"""Key expressions the engine evaluates itself (``ormcache_redis.key_plan``):
which shapes it takes, and that a planned method keys, hits, misses and
fails exactly as the compiled key function does."""

from __future__ import annotations

import gc
import random
import threading
import weakref
from typing import Any

import pytest

from ormcache_redis import LRU, ormcache
from ormcache_redis._native import CachedMethod
from ormcache_redis.key_plan import key_plan
from ormcache_redis.two_tier_ormcache import build_key_function


def method(self, groups, name="x", flag=None):
    return (groups, name, flag)


@pytest.mark.parametrize(
    ("expression", "part"),
    [
        ("groups", (1, [], None)),
        ("self", (0, [], None)),
        (" self.env.uid ", (0, ["env", "uid"], None)),
        ("frozenset(groups)", (1, [], "frozenset")),
        ("tuple(self.env.companies.ids)", (0, ["env", "companies", "ids"], "tuple")),
    ],
)
def test_shapes_it_evaluates(expression: str, part: tuple) -> None:
    plan = key_plan(method, [expression], {})
    assert plan == ([part], [None, None, "x", None])


@pytest.mark.parametrize(
    "expression",
    [
        "groups[0]",  # subscription
        "self.env.user._get_group_ids()",  # a call
        "len(groups)",  # another builtin
        "frozenset(groups, name)",  # two arguments
        "frozenset(*groups)",  # starred
        "frozenset(iterable=groups)",  # keyword
        "frozenset(self.env.user.ids())",  # a call inside
        "other",  # not a parameter
        "groups +",  # not Python
        "name or 'x'",
        "frozenset",
        42,  # not source text
    ],
)
def test_shapes_it_leaves_to_the_key_function(expression: Any) -> None:
    assert key_plan(method, [expression], {}) is None


def test_a_shadowed_builtin_is_left_to_the_key_function() -> None:
    assert key_plan(method, ["frozenset(groups)"], {"frozenset": sorted}) is None
    assert key_plan(method, ["frozenset(groups)"], {"frozenset": frozenset}) is not None

    def shadowing(self, frozenset):
        return frozenset

    assert key_plan(shadowing, ["frozenset(frozenset)"], {}) is None


def test_signatures_it_leaves_to_the_key_function() -> None:
    def variadic(self, *args):
        return args

    def keyword_only(self, *, name):
        return name

    def nothing():
        return None

    assert key_plan(variadic, ["args"], {}) is None
    assert key_plan(keyword_only, ["name"], {}) is None
    assert key_plan(nothing, [], {}) is None
    assert key_plan(object(), [], {}) is None  # type: ignore[arg-type]  # no signature


# ------------------------------------------------------------------ same behaviour


class Env:
    def __init__(self, uid: int, companies: tuple[int, ...]) -> None:
        self.uid = uid
        self.companies = list(companies)


class Pool:
    def __init__(self) -> None:
        self._Registry__caches = {"default": LRU(10_000)}


EXPRESSIONS = ("self.env.uid", "frozenset(groups)", "name", "tuple(self.env.companies)", "flag")


def planned_and_compiled() -> tuple[type, type]:
    """Two model classes whose method differs only in how its key is built."""

    def compute(self, groups, name="x", flag=None):
        type(self).computed += 1
        return (self.env.uid, sorted(groups, key=repr), name, flag)

    key = build_key_function(compute, EXPRESSIONS)
    parts, defaults = key_plan(compute, EXPRESSIONS, compute.__globals__)
    classes = []
    for plan in ({"key_parts": parts, "defaults": defaults}, {}):

        class Model:
            _name = "res.users"
            pool = Pool()
            computed = 0
            cached = CachedMethod(compute, key, **plan)

            def __init__(self, env: Env) -> None:
                self.env = env

        classes.append(Model)
    assert classes[0].cached.planned and not classes[1].cached.planned
    return classes[0], classes[1]


def random_call(rng: random.Random) -> tuple[tuple, dict]:
    groups = rng.choice([[1, 2], (2, 1), {3}, frozenset({1, 2}), [], ["a", 1], [1.0, 2]])
    args: list[Any] = [groups]
    kwargs: dict[str, Any] = {}
    if rng.random() < 0.5:
        args.append(rng.choice(["x", "y", 1, True]))
    if rng.random() < 0.3:
        kwargs["flag"] = rng.choice([None, 0, "on"])
    return tuple(args), kwargs


def test_a_planned_method_keys_hits_and_misses_as_the_key_function_does() -> None:
    planned, compiled = planned_and_compiled()
    rng = random.Random(20)
    envs = [Env(uid, companies) for uid in (1, 2) for companies in ((1,), (1, 2))]
    for _ in range(3000):
        env = rng.choice(envs)
        args, kwargs = random_call(rng)
        got = planned(env).cached(*args, **kwargs)
        want = compiled(env).cached(*args, **kwargs)
        assert got == want
    assert planned.computed == compiled.computed
    assert planned.cached.counters() == compiled.cached.counters()
    assert planned.cached.counters()["hits"] > 2000
    planned_keys = set(planned.pool._Registry__caches["default"])
    assert planned_keys == set(compiled.pool._Registry__caches["default"])


def test_a_planned_method_reports_the_errors_the_key_function_raises() -> None:
    planned, compiled = planned_and_compiled()
    env = Env(1, (1,))
    for model in (planned, compiled):
        with pytest.raises(TypeError, match="not iterable"):
            model(env).cached(3)  # frozenset(3)
        with pytest.raises(TypeError, match="unhashable"):
            model(env).cached([[1]])  # frozenset of lists
        with pytest.raises(AttributeError, match="uid"):
            model(object()).cached([1])  # no env
        with pytest.raises(TypeError):
            model(env).cached()  # groups omitted
    # An unhashable key value: computed, not stored, counted (Odoo's rule).
    for model in (planned, compiled):
        assert model(env).cached([1], ["list"]) == (1, [1], ["list"], None)
        assert model(env).cached([1], ["list"]) == (1, [1], ["list"], None)
    assert planned.cached.counters() == compiled.cached.counters()
    assert planned.cached.counters()["errors"] == 2


def test_the_standalone_decorator_plans_what_it_can() -> None:
    class Model:
        _name = "m"
        pool = Pool()

        @ormcache("self._name", "frozenset(ids)")
        def planned(self, ids: list[int]) -> int:
            return len(ids)

        @ormcache("len(ids)")
        def compiled(self, ids: list[int]) -> int:
            return len(ids)

    assert Model.planned.planned and not Model.compiled.planned
    assert Model().planned([1, 2]) == Model().planned([2, 1]) == 2


# ------------------------------------------------------------------ sets under the lock


class Reentrant:
    """A set element whose ``__eq__`` asks the same cache: compared under
    the LRU's lock it would deadlock."""

    def __init__(self, cache: LRU, value: int) -> None:
        self.cache = cache
        self.value = value
        self.compared = 0

    def __hash__(self) -> int:
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        self.compared += 1
        len(self.cache)
        self.cache.get(("other",))
        return isinstance(other, Reentrant) and other.value == self.value


def test_frozensets_of_plain_values_hit_and_others_stay_correct() -> None:
    cache = LRU(100)
    cache[("m", frozenset({1, "a", 2.5, None}))] = "plain"
    assert cache[("m", frozenset({None, 2.5, "a", 1}))] == "plain"
    # A frozenset holding an object with its own __eq__ is compared outside
    # the lock: the element may use the cache itself.
    element = Reentrant(cache, 7)
    cache[("m", frozenset({element}))] = "object"
    done: list[Any] = []
    worker = threading.Thread(
        target=lambda: done.append(cache[("m", frozenset({Reentrant(cache, 7)}))])
    )
    worker.start()
    worker.join(timeout=10)
    assert done == ["object"]
    # Sets that differ, or hold bytes where the other holds str, are told apart.
    cache[("m", frozenset({b"a"}))] = "bytes"
    assert cache.get(("m", frozenset({"a"}))) is None
    assert cache[("m", frozenset({b"a"}))] == "bytes"
    assert cache.get(("m", frozenset({1, "a", 2.5}))) is None


def test_a_cached_method_is_called_like_a_function() -> None:
    """Marked a method descriptor with a vectorcall entry: ``record.method(x)``
    builds no bound method; reading the attribute still gives one."""
    method_descriptor, have_vectorcall = 1 << 17, 1 << 11
    assert CachedMethod.__flags__ & method_descriptor and CachedMethod.__flags__ & have_vectorcall
    planned, _ = planned_and_compiled()
    record = planned(Env(1, (1,)))
    bound = record.cached
    assert bound.__self__ is record and bound.__func__ is planned.__dict__["cached"]
    assert bound([1]) == record.cached([1]) == planned.cached(record, [1])
    with pytest.raises(TypeError):
        type("Sub", (CachedMethod,), {})


def test_keys_with_sets_answer_as_a_dict_does() -> None:
    """Random keys mixing scalars of every plain type, nested tuples and
    frozensets (with equal values of other types: ``1``, ``1.0``, ``True``;
    ``"a"`` and ``b"a"``, equal in hash): L1 answers as a dict, both on the
    tuple path and on the items path of a planned method."""
    rng = random.Random(7)
    scalars = [0, 1, 1.0, True, False, 2, 2.5, "a", b"a", "", None, -1, 10**30]

    def value(depth: int = 0) -> Any:
        kind = rng.random()
        if depth < 2 and kind < 0.2:
            return tuple(value(depth + 1) for _ in range(rng.randrange(3)))
        if depth < 2 and kind < 0.45:
            return frozenset(rng.choice(scalars) for _ in range(rng.randrange(4)))
        return rng.choice(scalars)

    cache, reference = LRU(100_000), {}
    for _ in range(4000):
        key = ("m", value(), value())
        if rng.random() < 0.5:
            cache[key] = reference[key] = rng.random()
        assert cache.get(key) == reference.get(key)

    planned, _ = planned_and_compiled()
    env = Env(1, (1,))
    for _ in range(2000):
        groups = frozenset(rng.choice(scalars) for _ in range(rng.randrange(4)))
        assert planned(env).cached(list(groups)) == planned(env).cached(groups)
    counters = planned.cached.counters()
    assert counters["hits"] + counters["misses"] == 4000


def test_a_class_and_its_cached_method_are_freed_together() -> None:
    """A method using ``super()`` holds its class (the ``__class__`` cell),
    and the class holds the ``CachedMethod``: the garbage collector sees the
    method's references and frees the class once nothing else holds it."""

    class Base:
        def compute(self, groups):
            return groups

    class Model(Base):
        _name = "res.users"
        pool = Pool()

        def compute(self, groups):
            return super().compute(groups)

        def __init__(self, env: Env) -> None:
            self.env = env

    parts, defaults = key_plan(Model.compute, ["frozenset(groups)"], {})
    key = build_key_function(Model.compute, ["frozenset(groups)"])
    Model.cached = CachedMethod(Model.compute, key, key_parts=parts, defaults=defaults)
    record = Model(Env(1, ()))
    assert record.cached([1, 2]) == record.cached([2, 1]) == [1, 2]
    # The key holds the method too (an LRU reports nothing to the garbage
    # collector): the cache is emptied, as a registry's are when it goes.
    Model.pool._Registry__caches["default"].clear()
    model = weakref.ref(Model)
    del Model, record, key
    gc.collect()
    assert model() is None
