"""``_native.OdooLookup`` outside Odoo: the interpreter's calling protocol
(method descriptor, vectorcall, ``tp_call``, keywords), the reuse of the
last key, re-entry, and counters equal to a line-by-line copy of Odoo 19's
``ormcache.lookup`` (and 18.0's, with the rules the addon's
``odoo_version.py`` gives for 17.0 and 18.0) run side by side on the same
objects.

The Odoo tests (``odoo_addon/ormcache_redis/tests/test_native_lookup.py``)
check the same against Odoo's real wrapper on 17.0, 18.0 and 19.0."""

from __future__ import annotations

import functools
import gc
import time
import types
import weakref
from collections import defaultdict
from typing import Any

import pytest

from ormcache_redis import _native
from ormcache_redis._native import OdooLookup

METHOD_DESCRIPTOR = 1 << 17
HAVE_VECTORCALL = 1 << 11


class Counter:
    """Odoo 19's ``ormcache_counter``: slots, so the native path writes
    them through their member descriptors."""

    __slots__ = ("cache_name", "err", "gen_time", "hit", "miss", "tx_err", "tx_hit", "tx_miss")

    def __init__(self) -> None:
        self.hit = self.miss = self.err = 0
        self.tx_hit = self.tx_miss = self.tx_err = 0
        self.gen_time = 0.0
        self.cache_name = None

    def figures(self) -> tuple[int, ...]:
        return (self.hit, self.miss, self.err, self.tx_hit, self.tx_miss, self.tx_err)


class OrmCache:
    """What ``OdooLookup`` reads from Odoo's ``ormcache`` instance."""

    def __init__(self, method: Any, cache_name: str = "default") -> None:
        self.method = method
        self.cache_name = cache_name


class Cursor:
    def __init__(self) -> None:
        self.cache: dict = {}


class Env:
    def __init__(self) -> None:
        self.cr = Cursor()
        self.uid = 2


class Registry:
    def __init__(self) -> None:
        self.db_name = "db"
        self._Registry__caches = {
            "default": _native.TwoTierCache("default", 64, client=None, codec=_native.Codec())
        }


def miss_19(ormcache, cache, key, counter, first, args, error):
    """Odoo 19's code after the mapping was asked (odoo_version.miss_19)."""
    if isinstance(error, KeyError):
        counter.miss += 1
        counter.tx_miss += first
        start = time.monotonic()
        value = ormcache.method(*args)
        counter.gen_time += time.monotonic() - start
        cache[key] = value
        return value
    counter.tx_err += first
    counter.err += 1
    return ormcache.method(*args)


def odoo_19_lookup(ormcache, counters, args):
    """Odoo 19's ``ormcache.lookup`` (odoo/tools/cache.py), line by line."""
    model = args[0]
    d = model.pool._Registry__caches[ormcache.cache_name]
    key = (model._name, ormcache.method, *ormcache.key_of(*args))
    counter = counters[model.pool.db_name, ormcache.method]
    tx_lookups = model.env.cr.cache.setdefault("_ormcache_lookups", set())
    tx_first_lookup = key not in tx_lookups
    if tx_first_lookup:
        counter.cache_name = ormcache.cache_name
        tx_lookups.add(key)
    try:
        r = d[key]
        counter.hit += 1
        counter.tx_hit += tx_first_lookup
        return r
    except KeyError:
        counter.miss += 1
        counter.tx_miss += tx_first_lookup
    value = ormcache.method(*args)
    d[key] = value
    return value


def miss_18(ormcache, cache, key, counter, first, args, error):
    """Odoo 18.0's code after the mapping was asked (odoo_version.miss_18)."""
    if isinstance(error, KeyError):
        counter.miss += 1
        counter.cache_name = ormcache.cache_name
        start = time.time()
        value = cache[key] = ormcache.method(*args)
        counter.gen_time += time.time() - start
        return value
    counter.err += 1
    return ormcache.method(*args)


def odoo_18_lookup(ormcache, counters, args):
    """Odoo 18.0's ``ormcache.lookup`` with its ``lru``, line by line."""
    model = args[0]
    d = model.pool._Registry__caches[ormcache.cache_name]
    key = (model._name, ormcache.method, *ormcache.key_of(*args))
    counter = counters[model.pool.db_name, model._name, ormcache.method]
    try:
        r = d[key]
        counter.hit += 1
        return r
    except KeyError:
        counter.miss += 1
        counter.cache_name = ormcache.cache_name
        start = time.time()
        value = d[key] = ormcache.method(*args)
        counter.gen_time += time.time() - start
        return value
    except TypeError:
        counter.err += 1
        return ormcache.method(*args)


def build(
    *,
    key_parts=((1, ()),),
    defaults=(None, None),
    method=None,
    odoo=19,
    id_field=None,
    counter_class=None,
    cache=None,
):
    """A model class with an ``OdooLookup`` as the addon installs it on
    Odoo 19 (or 18.0: counters keyed by model, no transaction statistics),
    and Odoo's reference wrapper over the same counters and mappings.
    ``id_field``: the class of the model's ``id`` descriptor, handed to the
    lookup; ``counter_class``: the class of the counters it creates;
    ``cache``: the registry's mapping (a ``TwoTierCache`` by default)."""
    computed: list[tuple] = []

    def compute(self, *args):
        computed.append(args)
        return ("value", *args)

    ormcache = OrmCache(method or compute)
    counters: defaultdict = defaultdict(Counter)

    def wrapper(self, *args, **kwargs):
        return ("wrapper", args, tuple(sorted(kwargs.items())))

    wrapper.__cache__ = ormcache

    # (position, attributes[, wrapper]): the wrapper defaults to none.
    key_parts = [
        (position, list(attributes), wrapper[0] if wrapper else None)
        for position, attributes, *wrapper in key_parts
    ]
    wrappers = {None: lambda value: value, "frozenset": frozenset, "tuple": tuple}

    def key_of(*args):
        values = []
        for position, attributes, wrapper in key_parts:
            value = args[position] if position < len(args) else defaults[position]
            for attribute in attributes:
                value = getattr(value, attribute)
            values.append(wrappers[wrapper](value))
        return values

    ormcache.key_of = key_of
    on_19 = odoo == 19
    lookup = OdooLookup(
        wrapper,
        key_parts,
        list(defaults),
        counters,
        miss_19 if on_19 else miss_18,
        counters_by_model=not on_19,
        transaction_statistics=on_19,
        id_field=id_field,
        counter_class=counter_class,
    )
    registry = Registry()
    if cache is not None:
        registry._Registry__caches["default"] = cache

    class Model:
        __slots__ = ("_ids", "env")
        _name = "test.model"
        pool = registry
        method = lookup
        if id_field is not None:
            id = id_field()

    reference = odoo_19_lookup if on_19 else odoo_18_lookup
    Model.reference = lambda self, *args: reference(ormcache, counters, (self, *args))
    record = Model()
    record.env = Env()
    record._ids = (1,)
    counter_key = (
        (registry.db_name, ormcache.method)
        if on_19
        else (registry.db_name, Model._name, ormcache.method)
    )
    return types.SimpleNamespace(
        Model=Model,
        record=record,
        lookup=lookup,
        counters=counters,
        counter_key=counter_key,
        # Odoo's defaultdict entry (made here when the lookup made none)
        counter=counters[counter_key] if counter_class is None else None,
        computed=computed,
        cache=registry._Registry__caches["default"],
        ormcache=ormcache,
    )


def test_the_class_is_called_like_a_function():
    flags = OdooLookup.__flags__
    assert flags & METHOD_DESCRIPTOR and flags & HAVE_VECTORCALL
    probe = build()
    assert probe.Model.__dict__["method"] is probe.lookup
    assert probe.Model.method is probe.lookup  # unbound, as a function
    bound = probe.record.method
    assert isinstance(bound, types.MethodType) and bound.__self__ is probe.record
    assert bound("a") == probe.record.method("a") == ("value", "a")
    assert probe.computed == [("a",)]
    with pytest.raises(TypeError):
        type("Sub", (OdooLookup,), {})  # instances must be exactly this class


def test_every_way_of_calling_gives_the_same_answer():
    probe = build()
    record = probe.record
    answers = {
        "method call": record.method("k"),
        "bound method kept": (bound := record.method)("k"),
        "unbound": probe.Model.method(record, "k"),
        "star args": record.method(*["k"]),
        "partial": functools.partial(probe.lookup, record)("k"),
        "tp_call": OdooLookup.__call__(probe.lookup, record, "k"),
    }
    del bound
    assert set(answers.values()) == {("value", "k")}
    assert probe.computed == [("k",)]  # one miss, then hits
    assert probe.counter.hit == len(answers) - 1
    # Keywords and calls this path does not cover go through Odoo's wrapper.
    assert record.method(key="k") == ("wrapper", (), (("key", "k"),))
    assert record.method("k", "extra") == ("wrapper", ("k", "extra"), ())


def test_counters_and_transaction_statistics_equal_odoos_code_side_by_side():
    native, odoo = build(), build()
    runtime = "".join(["run", "time"])  # equal to "runtime", another object
    for probe, call in ((native, native.record.method), (odoo, odoo.record.reference)):
        for argument in ("a", "a", "b", "a", runtime, "runtime", "runtime"):
            assert call(argument) == ("value", argument)
        probe.record.env.cr.cache.clear()  # the transaction ends (commit/rollback)
        for argument in ("a", "a", "runtime"):
            assert call(argument) == ("value", argument)
        # Not something Odoo does, but the figures must still follow.
        probe.record.env.cr.cache["_ormcache_lookups"].clear()
        for argument in ("a", "a"):
            assert call(argument) == ("value", argument)
    assert native.counter.figures() == odoo.counter.figures()
    assert native.counter.figures() == (9, 3, 0, 3, 3, 0)
    assert native.computed == odoo.computed == [("a",), ("b",), ("runtime",)]
    assert native.counter.cache_name == "default"


def test_odoo_18_rules_count_per_model_and_not_the_transaction():
    """``counters_by_model`` and no ``transaction_statistics`` (17.0/18.0):
    ``STAT[db, model, method]``, no transaction set, and an unhashable key
    goes to the miss code as a TypeError (warn, count, compute)."""
    native, odoo = build(odoo=18), build(odoo=18)
    runtime = "".join(["run", "time"])
    for probe, call in ((native, native.record.method), (odoo, odoo.record.reference)):
        for argument in ("a", "a", "b", "a", runtime, "runtime"):
            assert call(argument) == ("value", argument)
        assert call(["a", "list"]) == ("value", ["a", "list"])
        assert "_ormcache_lookups" not in probe.record.env.cr.cache
    assert native.counter.figures() == odoo.counter.figures() == (3, 3, 1, 0, 0, 0)
    assert native.computed == odoo.computed == [("a",), ("b",), ("runtime",), (["a", "list"],)]
    assert native.counter.cache_name == "default"


def test_a_key_whose_hash_can_change_is_hashed_at_every_call():
    class Drifting:
        """Hashes differently after each call: Odoo would look it up anew
        each time, so the reused key must not carry an old hash."""

        hashes = 0

        def __hash__(self) -> int:
            Drifting.hashes += 1
            return Drifting.hashes

        def __eq__(self, other: object) -> bool:
            return other is self

    probe = build()
    drifting = Drifting()
    for _ in range(3):
        probe.record.method(drifting)
    assert probe.counter.miss == 3  # a new hash each time: three misses
    assert Drifting.hashes >= 3


def test_unhashable_arguments_raise_as_odoo_19_does():
    probe = build()
    with pytest.raises(TypeError):
        probe.record.method(["a", "list"])
    with pytest.raises(TypeError):
        probe.record.reference(["a", "list"])


def test_a_key_expression_that_calls_the_method_again_is_answered():
    """An attribute path whose property calls the same method (re-entry
    while the first call is under way) gets the right answers."""
    holder: dict[str, Any] = {}

    class Nested:
        @property
        def value(self) -> str:
            return "outer:" + holder["record"].method(Plain("inner"))[1].name

    class Plain:
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def value(self) -> str:
            return self.name

    probe = build(key_parts=((1, ("value",)),))
    holder["record"] = probe.record
    outer = Nested()
    for _ in range(3):
        assert probe.record.method(outer) == ("value", outer)
    assert probe.computed[0][0].name == "inner"
    assert [type(args[0]) for args in probe.computed] == [Plain, Nested]
    assert probe.counter.miss == 2 and probe.counter.hit == 4


def test_defaults_fill_the_key_as_in_odoo():
    probe = build(key_parts=((1, ()), (2, ())), defaults=(None, None, "!"))
    assert probe.record.method("k") == ("value", "k")
    assert probe.record.method("k", "!") == ("value", "k")  # the same key: a hit
    assert probe.counter.figures()[:2] == (1, 1)
    assert ("test.model", probe.ormcache.method, "k", "!") in probe.cache


def test_an_override_reaches_it_through_super():
    """Inheriting models call the cached method with ``super()``, which
    binds through ``__get__``."""
    probe = build()

    class Inheriting(probe.Model):
        __slots__ = ()

        def method(self, key):
            return ("override", super().method(key))

    record = Inheriting()
    record.env = probe.record.env
    assert record.method("k") == ("override", ("value", "k"))
    assert record.method("k") == ("override", ("value", "k"))
    assert probe.counter.figures()[:2] == (1, 1)


@pytest.mark.parametrize("odoo", [18, 19])
def test_keys_compared_by_python_or_by_items_hit_alike(odoo: int) -> None:
    """A hit is found from the key's items when they are plain values, and
    through the tuple and Python's ``__eq__`` otherwise: both hit, count
    and record the transaction's lookups as Odoo's code does."""

    class Code:
        """Hashable by value, equal by value: not a plain value."""

        def __init__(self, text: str) -> None:
            self.text = text

        def __hash__(self) -> int:
            return hash(self.text)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Code) and other.text == self.text

    native, odoo_code = build(odoo=odoo), build(odoo=odoo)
    arguments = [Code("a"), Code("a"), ("t", 1), ("t", 1), 1.5, 1.5, "s", "".join(["s"])]
    for call in (native.record.method, odoo_code.record.reference):
        for argument in arguments:
            assert call(argument) == ("value", argument)
    assert native.counter.figures() == odoo_code.counter.figures()
    assert native.computed == odoo_code.computed
    assert len(native.computed) == 4  # one computation per distinct key


@pytest.mark.parametrize("odoo", [18, 19])
def test_frozenset_and_tuple_expressions_key_as_odoo_builds_them(odoo):
    """``@ormcache('frozenset(modules)', 'tuple(self.env.companies)')``:
    the builtins applied natively give Odoo's key, and a hit needs no
    tuple (the sets hold plain values)."""
    probe = build(
        key_parts=((1, (), "frozenset"), (2, (), "tuple")), defaults=(None, None, None), odoo=odoo
    )
    record = probe.record
    for modules, companies in ((["a", "b"], [1]), (("b", "a"), (1,)), ({"b", "a"}, [1])):
        assert record.method(modules, companies) == ("value", ["a", "b"], [1])
    assert probe.computed == [(["a", "b"], [1])]
    (key,) = list(probe.cache)
    assert key == ("test.model", probe.ormcache.method, frozenset({"a", "b"}), (1,))
    assert probe.counter.hit == 2
    with pytest.raises(TypeError):
        record.method(3, [1])  # frozenset(3), as Odoo's key lambda raises


class IdField:
    """Odoo's ``Id`` field (``odoo.fields.Id``, the same in 17.0, 18.0 and
    19.0), counting the reads that run its ``__get__``."""

    reads = 0

    def __get__(self, record, owner=None):
        if record is None:
            return self
        IdField.reads += 1
        ids = record._ids
        size = len(ids)
        if size == 0:
            return False
        elif size == 1:
            return ids[0]
        raise ValueError(f"Expected singleton: {record}")

    def __set__(self, record, value):
        raise TypeError("field 'id' cannot be assigned")


def test_record_ids_are_read_as_odoos_id_field_reads_them():
    """``@ormcache('self.id')``: the native read gives what the field gives
    (an id, False for no record, the field's own error for several) without
    running its ``__get__``; other shapes are read by the field itself."""
    probe = build(key_parts=((0, ("id",)),), defaults=(None,), id_field=IdField)
    record = probe.record
    answers = []
    IdField.reads = 0
    for ids in ((7,), (7,), (), (), (8,)):
        record._ids = ids
        answers.append(record.method())
    assert IdField.reads == 0  # every key read natively
    assert answers == [("value",)] * 5
    assert [args for args in probe.computed] == [(), (), ()]  # keys 7, False, 8
    keys = {key[2:] for key in probe.cache}
    assert keys == {(7,), (False,), (8,)}
    assert any(key[2] is False for key in probe.cache)  # False itself, as the field gives
    record._ids = (1, 2)
    with pytest.raises(ValueError, match="Expected singleton"):
        record.method()
    record._ids = [9]  # not a tuple: the field reads it
    assert record.method() == ("value",)
    assert IdField.reads == 2
    del record._ids  # unset: the same error as the field's
    with pytest.raises(AttributeError):
        record.method()

    class OtherId(IdField):
        """A subclass may compute another id: its own ``__get__`` runs."""

    other = build(key_parts=((0, ("id",)),), defaults=(None,), id_field=IdField)
    other.Model.id = OtherId()
    other.record._ids = (5,)
    IdField.reads = 0
    assert other.record.method() == other.record.method() == ("value",)
    assert IdField.reads == 2


def test_counters_made_by_the_lookup_count_hits_natively():
    """With a ``counter_class`` (a ``HitCounter`` subclass, as the addon's
    ``hit_counters.py`` makes from Odoo's class), the counters the lookup
    creates are of it, count as Odoo's do, and read and write from Python;
    a counter Odoo made first is kept."""

    class NativeCounter(_native.HitCounter):
        __slots__ = ("cache_name", "err", "gen_time", "miss", "tx_err", "tx_miss")
        __init__ = Counter.__init__
        figures = Counter.figures

    native, odoo = build(counter_class=NativeCounter), build()
    runtime = "".join(["run", "time"])
    for probe, call in ((native, native.record.method), (odoo, odoo.record.reference)):
        for argument in ("a", "a", "b", "a", runtime, "runtime", "runtime", "a"):
            assert call(argument) == ("value", argument)
        probe.record.env.cr.cache.clear()  # a new transaction: first lookups hit
        for argument in ("a", "a", "runtime"):
            assert call(argument) == ("value", argument)
    counter = native.counters[native.counter_key]
    assert type(counter) is NativeCounter
    assert counter.figures() == odoo.counter.figures() == (8, 3, 0, 2, 3, 0)
    counter.hit += 1
    counter.tx_hit = 0
    assert (counter.hit, counter.tx_hit) == (9, 0)
    with pytest.raises(OverflowError):
        counter.hit = -1
    with pytest.raises(TypeError):
        counter.hit = "many"

    kept = build(counter_class=NativeCounter)
    existing = kept.counters[kept.counter_key] = Counter()
    for _ in range(3):
        kept.record.method("k")
    assert kept.counters[kept.counter_key] is existing
    assert existing.figures()[:2] == (2, 1)


@pytest.mark.parametrize("odoo", [18, 19])
@pytest.mark.parametrize("mapping", ["two tier", "lru"])
def test_the_last_hit_is_found_again_only_while_its_entry_stands(odoo, mapping):
    """A call with the same objects as the last hit asks for the entry where
    it was found: a value stored over it is read, and an entry removed,
    evicted, cleared or expired (its slot maybe reused by another key) is
    not. Counters and computations stay those of Odoo's code, call by
    call."""
    cache = _native.LRU(2, ttl=0.2) if mapping == "lru" else None
    reference_cache = _native.LRU(2, ttl=0.2) if mapping == "lru" else None
    native, odoo_code = build(odoo=odoo, cache=cache), build(odoo=odoo, cache=reference_cache)
    a = "a"
    steps = [
        ("call", a),
        ("call", a),
        ("store", a, "stored over"),
        ("call", a),
        ("delete", a),
        ("call", "b"),  # may take the freed slot
        ("call", a),
        ("call", a),
        ("clear",),
        ("call", a),
        ("call", "c"),
        ("call", "d"),  # evicts a where the mapping holds two entries
        ("call", a),
        ("call", a),
    ]
    if mapping == "lru":
        steps += [("sleep", 0.3), ("call", a), ("call", a)]
    answers = {}
    for probe, call in ((native, native.record.method), (odoo_code, odoo_code.record.reference)):
        answers[probe is native] = results = []
        method = probe.ormcache.method
        for step in steps:
            match step:
                case ("call", argument):
                    results.append(call(argument))
                case ("store", argument, value):
                    probe.cache[("test.model", method, argument)] = value
                case ("delete", argument):
                    probe.cache.pop(("test.model", method, argument))
                case ("clear",):
                    probe.cache.clear()
                case ("sleep", seconds):
                    time.sleep(seconds)
    assert answers[True] == answers[False]
    assert answers[True][2] == "stored over"
    assert native.counter.figures() == odoo_code.counter.figures()
    assert native.computed == odoo_code.computed
    assert native.computed.count((a,)) >= 3


def test_a_model_class_and_its_lookup_are_freed_together():
    """The class holds its ``OdooLookup``, whose memo, record id reader and
    method hold the class back: the garbage collector sees those references
    and frees the classes (and through them the registry) of a registry
    that is gone, as it frees Odoo's own wrappers."""

    class NativeCounter(_native.HitCounter):
        __slots__ = ("cache_name", "err", "gen_time", "miss", "tx_err", "tx_miss")
        __init__ = Counter.__init__

    probe = build(
        key_parts=((0, ("id",)),), defaults=(None,), id_field=IdField, counter_class=NativeCounter
    )
    for ids in ((1,), (1,), (2,)):
        probe.record._ids = ids
        probe.record.method()
    model, registry = weakref.ref(probe.Model), weakref.ref(probe.Model.pool)
    del probe
    gc.collect()
    assert model() is None
    assert registry() is None


def test_a_registry_class_is_not_kept_by_the_lookup_on_its_base():
    """Odoo installs the lookup on the class that defines the method, which
    outlives every registry; a registry's class (a subclass, with its own
    ``pool``) called last must still be freed once the registry is gone:
    the memo and the record id reader hold it weakly, and the memo lets go
    of the registry's mappings (and their entries) when the class goes."""
    probe = build(key_parts=((0, ("id",)),), defaults=(None,), id_field=IdField)
    registry = Registry()

    class RegistryModel(probe.Model):
        __slots__ = ()
        pool = registry

    class Held:
        """A value of the registry's cache, to see the cache go."""

    held = Held()
    registry._Registry__caches["default"][("other", "key")] = held
    record = RegistryModel()
    record.env = Env()
    record._ids = (3,)
    assert record.method() == record.method() == ("value",)
    assert probe.cache.stats()["hits"] == 0  # the registry's own mapping answered
    model, pool, value = weakref.ref(RegistryModel), weakref.ref(registry), weakref.ref(held)
    del RegistryModel, record, registry, held
    gc.collect()
    assert model() is None
    assert pool() is None
    # The memo let go of the registry's mappings when the class went.
    assert value() is None
    assert probe.record.method() == probe.record.method() == ("value",)
