"""Canonical cache keys: Python equality <-> byte equality, stable across processes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import os.path
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ormcache_redis import _native

canonical_key = _native.canonical_key
EncodeError = _native.EncodeError


class ResUsers:
    def _get_group_ids(self):
        pass

    @classmethod
    def _from_cls(cls):
        pass


class ResPartner(ResUsers):
    pass


def module_function():
    pass


# --------------------------------------------------------------------------- equal keys

EQUAL_GROUPS = [
    [(1,), (1.0,), (True,), (Decimal(1),), (Decimal("1.000"),), (Decimal("1E0"),)],
    [(0,), (0.0,), (-0.0,), (False,), (Decimal("0"),), (Decimal("-0.00"),), (Decimal("0E+5"),)],
    [100, 100.0, Decimal("1E+2"), Decimal("100.00")],
    [2**70, float(2**70), Decimal(2**70)],
    [-(2**63), float(-(2**63))],
    [2**63, float(2**63)],
    [0.5, Decimal("0.5"), Decimal("0.50")],
    [math.inf, Decimal("Infinity")],
    [-math.inf, Decimal("-Infinity")],
    [frozenset({1, 2, 3}), frozenset({3, 2, 1}), frozenset([2, 3, 1]), {1, 2, 3}],
    [frozenset({1, "a"}), frozenset({"a", 1.0}), frozenset({True, "a"})],
    [
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
        datetime(2024, 1, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 1, 1, 13, 0, tzinfo=ZoneInfo("Europe/Brussels")),
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(0), "Zulu")),
    ],
    [datetime(2024, 1, 1, 12, 0), datetime(2024, 1, 1, 12, 0, fold=1)],
    [
        datetime(2021, 10, 31, 2, 30, tzinfo=ZoneInfo("Europe/Brussels")),
        datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Brussels")),
    ],
    [time(12, 0, tzinfo=timezone.utc), time(13, 0, tzinfo=timezone(timedelta(hours=1)))],
    [time(12, 0), time(12, 0, fold=1), time(12, 0, tzinfo=ZoneInfo("Europe/Brussels"))],
    [("a", (1, frozenset({"x", "y"}))), ("a", (1.0, frozenset({"y", "x"})))],
]


@pytest.mark.parametrize("group", EQUAL_GROUPS, ids=range(len(EQUAL_GROUPS)))
def test_equal_keys_equal_bytes(group):
    # Python agrees these are equal and hash equal...
    for k in group:
        assert k == group[0], k
        if not isinstance(k, set):
            assert hash(k) == hash(group[0]), k
    # ...so their canonical bytes are equal.
    encodings = {canonical_key(k) for k in group}
    assert len(encodings) == 1, group


DIFFERENT = [
    None,
    0,
    1,
    -1,
    1.5,
    -1.5,
    math.nan,
    2**64,
    -(2**64),
    "",
    "1",
    "None",
    b"",
    b"1",
    (),
    ((),),
    (1,),
    (1, 2),
    ((1, 2),),
    ((1,), 2),
    (1, (2,)),
    frozenset(),
    frozenset({1}),
    frozenset({(1,)}),
    frozenset({frozenset()}),
    date(2024, 1, 1),
    datetime(2024, 1, 1),
    datetime(2024, 1, 1, tzinfo=timezone.utc),
    time(0),
    time(0, tzinfo=timezone.utc),
    Decimal("0.1"),
    0.1,
    Decimal("NaN"),
    module_function,
    ResUsers,
    ResPartner,
    ResUsers._get_group_ids,
    ResUsers()._get_group_ids,
    ResPartner()._get_group_ids,
    ResUsers._from_cls,
    ResPartner._from_cls,
    len,
    os.path.join,
]


def test_different_keys_different_bytes():
    encodings = [canonical_key(k) for k in DIFFERENT]
    assert len(set(encodings)) == len(DIFFERENT)


def test_version_prefix_and_concatenation():
    assert canonical_key(None) == b"\x01\x00"
    assert canonical_key(("ab", "c")) != canonical_key(("a", "bc"))
    assert canonical_key(("a", ("b",))) != canonical_key((("a", "b"),))


def test_odoo_shaped_key():
    key = (
        "res.users",
        ResUsers._get_group_ids,
        7,
        frozenset({1, 2}),
        "en_US",
        None,
        True,
    )
    data = canonical_key(key)
    assert data == canonical_key(key)
    assert b"test_keys.ResUsers._get_group_ids" in data
    assert hex(id(ResUsers._get_group_ids))[2:].encode() not in data.hex().encode()


def test_functions_by_qualified_name():
    assert canonical_key(module_function).endswith(b"test_keys.module_function")
    assert canonical_key(len).endswith(b"builtins.len")
    assert canonical_key(ResUsers).endswith(b"test_keys.ResUsers")
    assert canonical_key(os.path.join).endswith(f"{os.path.__name__}.join".encode())
    # A bound method names its function and the class of its instance.
    bound = canonical_key(ResPartner()._get_group_ids)
    assert b"test_keys.ResUsers._get_group_ids" in bound
    assert b"test_keys.ResPartner" in bound
    assert canonical_key(ResUsers()._get_group_ids) == canonical_key(ResUsers()._get_group_ids)


class Record:
    def __init__(self, ids):
        self.ids = ids


class MyStr(str):
    pass


@pytest.mark.parametrize(
    "key",
    [
        object(),
        Record([1]),
        [1, 2],
        {"a": 1},
        bytearray(b"x"),
        lambda: 1,
        (1, lambda: 2),
        MyStr("x"),
        frozenset({MyStr("x")}),
        [].append,
        1j,
        datetime(2024, 1, 1, tzinfo=type("Tz", (timezone.__mro__[1],), {})()),
    ],
    ids=repr,
)
def test_unsupported_keys(key):
    with pytest.raises(EncodeError):
        canonical_key(key)


def test_errors_inside_key_encoding_are_encode_errors():
    class Meta(type):
        def __getattribute__(cls, name):
            if name == "__qualname__":
                raise RuntimeError("no name")
            return super().__getattribute__(name)

    weird = Meta("Weird", (), {})
    with pytest.raises(EncodeError) as info:
        canonical_key(("k", weird))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_local_function_refused():
    def local():
        pass

    with pytest.raises(EncodeError, match="unique name"):
        canonical_key(local)


def test_depth_bound():
    key = 1
    for _ in range(64):  # 64 nested tuples are allowed
        key = (key,)
    canonical_key(key)
    with pytest.raises(EncodeError, match="deeper"):
        canonical_key((key,))
    fs = frozenset()
    for _ in range(200):
        fs = frozenset({fs})
    with pytest.raises(EncodeError):
        canonical_key(fs)


def test_lone_surrogate_is_encodable_and_distinct():
    a = canonical_key("\ud83d\ude00")  # two lone surrogates
    b = canonical_key("\U0001f600")  # the astral character they would pair into
    assert a != b
    assert canonical_key("\ud800") != canonical_key("\udc00")


def test_key_digest():
    canonical = canonical_key(("res.users", 7))
    ns = b"db1:registry-3"
    expected = hashlib.sha256(len(ns).to_bytes(4, "little") + ns + canonical).digest()
    assert _native.key_digest(ns, canonical) == expected
    assert len(expected) == 32
    assert _native.key_digest(b"a", b"bc") != _native.key_digest(b"ab", b"c")


# --------------------------------------------------------------------------- hypothesis

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=5)
    | st.integers()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False)
    | st.sampled_from([0.5, -0.0, 1.0, 2.0, 1e20])
    | st.text(max_size=4)
    | st.sampled_from(["", "a", "b", "1"])
)
keys = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(keys, keys)
def test_canonical_equality_iff_python_equality(a, b):
    assert (canonical_key(a) == canonical_key(b)) == (a == b), (a, b)


def equal_variant(key, draw):
    """A key Python considers equal, built differently."""
    if type(key) is tuple:
        return tuple(equal_variant(k, draw) for k in key)
    if type(key) is frozenset:
        items = [equal_variant(k, draw) for k in key]
        return frozenset(draw(st.permutations(items)))
    if type(key) is bool:
        return draw(st.sampled_from([key, int(key), float(key)]))
    if type(key) is int and abs(key) < 2**53:
        return draw(st.sampled_from([key, float(key), Decimal(key)]))
    if type(key) is float and math.isfinite(key):
        return draw(st.sampled_from([key, Decimal(key)]))
    return key


@settings(max_examples=500, deadline=None)
@given(keys, st.data())
def test_equal_variants_encode_equally(key, data):
    variant = equal_variant(key, data.draw)
    assert variant == key
    assert canonical_key(variant) == canonical_key(key)


# --------------------------------------------------------------------------- processes

STABLE_KEYS_SCRIPT = """
import json, sys
from datetime import datetime, timezone
from decimal import Decimal
from ormcache_redis import _native

keys = [
    ("res.users", 7, frozenset({1, 2}), "en_US", None, True),
    frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"}),
    frozenset({("a", 1), ("b", 2), ("c", frozenset({"x", "y", "z"}))}),
    ("ir.config_parameter", "web.base.url", frozenset({"sale", "stock", "account"})),
    (1.5, b"bytes", 2**100, Decimal("12.34"), datetime(2024, 1, 1, tzinfo=timezone.utc)),
    (json.dumps, len),
]
print(json.dumps([_native.canonical_key(k).hex() for k in keys]))
"""


@pytest.mark.slow
def test_stable_across_processes_and_hash_seeds():
    outputs = []
    for seed in ("1", "2", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", STABLE_KEYS_SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        outputs.append(json.loads(proc.stdout))
    assert all(o == outputs[0] for o in outputs[1:])
    # Sanity: the frozenset of strings really iterates differently per seed,
    # so the equality above is not vacuous.
    orders = set()
    for seed in ("1", "2", "12345"):
        proc = subprocess.run(
            [sys.executable, "-c", "print(list(frozenset({'alpha','beta','gamma','delta'})))"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            check=True,
        )
        orders.add(proc.stdout)
    assert len(orders) > 1
