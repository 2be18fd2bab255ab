"""Safe value codec: exact round trips, extension types, hostile input."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as dtime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ormcache_redis import _native

EncodeError = _native.EncodeError
DecodeError = _native.DecodeError

HEADER = b"\xc0\xde\x01\x00"


class FrozenDict(dict):
    """A small frozendict-like dict subclass (Odoo has one)."""

    def __hash__(self):
        return hash(frozenset(self.items()))


class Markup(str):
    """Stands in for markupsafe.Markup."""


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    __hash__ = None


def make_codec(**kwargs) -> _native.Codec:
    codec = _native.Codec(**kwargs)
    codec.register_type(FrozenDict, "frozendict", dict, FrozenDict)
    codec.register_type(Markup, "markup", str, Markup)
    codec.register_type(Point, "point", lambda p: (p.x, p.y), lambda s: Point(*s))
    return codec


CODEC = make_codec()


def same(a, b) -> bool:
    """Deep equality that also requires identical types, float bits, fold, tzinfo."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if type(a) in (datetime, dtime):
        return a == b and a.fold == b.fold and repr(a.tzinfo) == repr(b.tzinfo)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, Point):
        return same(a.x, b.x) and same(a.y, b.y)
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return a == b


def round_trip(value, codec=CODEC):
    return codec.loads(codec.dumps(value))


def assert_round_trip(value, codec=CODEC):
    out = round_trip(value, codec)
    assert same(value, out), (value, out)
    return out


# --------------------------------------------------------------------------- scalars

IST = timezone(timedelta(hours=5, minutes=30))
BRUSSELS = ZoneInfo("Europe/Brussels")

EDGE_VALUES = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    -1,
    -128,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    2**200,
    -(2**200),
    0.0,
    -0.0,
    1.5,
    -1e308,
    5e-324,
    math.inf,
    -math.inf,
    "",
    "ascii",
    "héllo wörld",
    "日本語 🎉 \x00 nul",
    b"",
    b"\x00\xff" * 10,
    (),
    [],
    {},
    set(),
    frozenset(),
    (1,),
    ((),),
    [[], [[]]],
    {"a": 1, 2: "b", (1, 2): [3], None: None, 1.5: b"x", frozenset({1}): set()},
    {1, "a", (2, 3), None},
    frozenset({1, 2, 3, "x"}),
    datetime(2024, 5, 17, 12, 30, 45, 123456),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2024, 5, 17, 12, 30, tzinfo=timezone.utc),
    datetime(2024, 5, 17, 12, 30, tzinfo=IST),
    datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=-3), "BRT")),
    datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(microseconds=-1))),
    datetime(2024, 7, 1, 9, 0, tzinfo=BRUSSELS),
    datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=BRUSSELS),
    datetime(2021, 10, 31, 2, 30, fold=1),
    date(2024, 2, 29),
    date(1, 1, 1),
    datetime.min.time(),
    datetime(2000, 1, 1, 23, 59, 59, 999999).time(),
    datetime(2000, 1, 1, 8, 15, tzinfo=IST).timetz(),
    datetime(2000, 1, 1, 8, 15, tzinfo=BRUSSELS).timetz(),
    datetime(2000, 1, 1, 8, 15, fold=1).time(),
    Decimal("0"),
    Decimal("-0"),
    Decimal("1.10"),
    Decimal("-123.456E-7"),
    Decimal("1E+400"),
    Decimal("NaN"),
    Decimal("-NaN"),
    Decimal("sNaN"),
    Decimal("NaN123"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("3.14159265358979323846264338327950288419716939937510"),
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: f"{type(v).__name__}:{v!r:.40}")
def test_round_trip_edge_values(value):
    out = assert_round_trip(value)
    assert type(out) is type(value)


def test_float_specials():
    assert math.isnan(round_trip(math.nan))
    assert math.copysign(1.0, round_trip(-0.0)) == -1.0
    assert math.copysign(1.0, round_trip(0.0)) == 1.0
    odd_nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    assert struct.pack("<d", round_trip(odd_nan)) == struct.pack("<d", odd_nan)


def test_big_ints():
    for e in (64, 65, 100, 200, 1000, 10000):
        for v in (2**e, -(2**e), 2**e - 1, -(2**e) + 1, 3**e):
            assert round_trip(v) == v


def test_decimal_special_values():
    assert round_trip(Decimal("NaN")).is_nan()
    assert round_trip(Decimal("sNaN")).is_snan()
    assert round_trip(Decimal("-0")).is_signed()
    assert str(round_trip(Decimal("1.000"))) == "1.000"


def test_datetime_tzinfo_and_fold():
    dt = datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=BRUSSELS)
    out = round_trip(dt)
    assert out.fold == 1
    assert out.tzinfo is BRUSSELS  # ZoneInfo instances are cached by key
    assert out.utcoffset() == dt.utcoffset() == timedelta(hours=1)
    assert round_trip(datetime(2024, 1, 1, tzinfo=timezone.utc)).tzinfo is timezone.utc
    named = timezone(timedelta(hours=1), "CET")
    assert round_trip(datetime(2024, 1, 1, tzinfo=named)).tzinfo.tzname(None) == "CET"
    assert round_trip(datetime(2024, 1, 1, tzinfo=IST)).utcoffset() == timedelta(hours=5.5)


def test_dict_order_kept():
    d = {k: i for i, k in enumerate(["z", "a", "m", 3, 1, 2])}
    assert list(round_trip(d)) == ["z", "a", "m", 3, 1, 2]


def test_bool_not_int():
    out = round_trip([True, 1, False, 0])
    assert [type(x) for x in out] == [bool, int, bool, int]


def test_small_ints_are_one_byte():
    assert len(CODEC.dumps(5)) == len(HEADER) + 1
    assert len(CODEC.dumps(tuple(range(100)))) == len(HEADER) + 2 + 100


# --------------------------------------------------------------------------- hypothesis

fixed_offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)
tzinfos = st.none() | st.just(timezone.utc) | fixed_offsets | st.timezones()
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=tzinfos, allow_imaginary=True)
    | st.dates()
    | st.times(timezones=st.none() | fixed_offsets)
    | st.decimals(allow_nan=True).filter(lambda d: not d.is_snan())  # sNaN is unhashable
)
leaves = hashable_leaves | st.decimals(allow_nan=True) | st.text().map(Markup)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.dictionaries(st.text(), inner, max_size=4).map(FrozenDict)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
        | st.tuples(inner, inner).map(lambda t: Point(*t))
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_hypothesis_round_trip(value):
    assert_round_trip(value)


@settings(max_examples=100, deadline=None)
@given(values)
def test_hypothesis_round_trip_compressed(value):
    codec = make_codec(compress_threshold=0)
    assert_round_trip(value, codec)


# --------------------------------------------------------------------------- extension types


def test_extension_types_nested():
    value = [
        Markup("<b>x</b>"),
        {"k": FrozenDict(a=Markup("y"), b=[1, 2])},
        (Point(1, Markup("z")),),
        frozenset({Markup("m")}),
    ]
    out = assert_round_trip(value)
    assert type(out[0]) is Markup
    assert type(out[1]["k"]) is FrozenDict
    assert type(out[1]["k"]["a"]) is Markup
    assert type(out[2][0]) is Point and type(out[2][0].y) is Markup
    assert type(next(iter(out[3]))) is Markup


def test_registered_tags_and_validation():
    codec = _native.Codec()
    assert codec.registered_tags() == []
    codec.register_type(Markup, "markup", str, Markup)
    codec.register_type(FrozenDict, "frozendict", dict, FrozenDict)
    assert codec.registered_tags() == ["markup", "frozendict"]

    class Other(str):
        pass

    with pytest.raises(ValueError, match="already registered"):
        codec.register_type(Other, "markup", str, Other)
    with pytest.raises(ValueError, match="already registered"):
        codec.register_type(Markup, "markup2", str, Markup)
    with pytest.raises(ValueError, match="natively"):
        codec.register_type(str, "str", str, str)
    with pytest.raises(ValueError, match="natively"):
        codec.register_type(datetime, "dt", str, str)
    with pytest.raises(ValueError):
        codec.register_type(Other, "", str, Other)
    with pytest.raises(ValueError):
        codec.register_type(Other, "with space", str, Other)
    with pytest.raises(ValueError):
        codec.register_type(Other, "é", str, Other)
    with pytest.raises(TypeError):
        codec.register_type(Other, "other", "not callable", Other)
    with pytest.raises(TypeError):
        codec.register_type("not a type", "other", str, Other)
    assert codec.registered_tags() == ["markup", "frozendict"]


def test_unregistered_subclass_is_encode_error():
    class MyStr(str):
        pass

    class MyDict(dict):
        pass

    class MyInt(int):
        pass

    class MyDatetime(datetime):
        pass

    for value in (MyStr("x"), MyDict(), MyInt(3), [MyInt(3)], MyDatetime(2024, 1, 1)):
        with pytest.raises(EncodeError, match="subclass"):
            CODEC.dumps(value)
    # A plain codec does not know Markup either.
    with pytest.raises(EncodeError):
        _native.Codec().dumps(Markup("x"))


def test_unknown_extension_tag_is_decode_error():
    data = CODEC.dumps([Markup("x")])
    with pytest.raises(DecodeError, match="unknown extension tag"):
        _native.Codec().loads(data)


def test_from_state_exception_is_decode_error():
    codec = _native.Codec()

    def boom(state):
        raise RuntimeError("boom")

    codec.register_type(Markup, "markup", str, boom)
    with pytest.raises(DecodeError) as info:
        codec.loads(codec.dumps(Markup("x")))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_to_state_exception_and_bad_state_are_encode_errors():
    codec = _native.Codec()
    codec.register_type(Markup, "markup", lambda m: 1 / 0, Markup)
    codec.register_type(FrozenDict, "frozendict", lambda d: object(), FrozenDict)
    with pytest.raises(EncodeError):
        codec.dumps(Markup("x"))
    with pytest.raises(EncodeError):
        codec.dumps(FrozenDict())


def test_to_state_returning_itself_is_bounded():
    codec = _native.Codec()
    codec.register_type(Markup, "markup", lambda m: m, Markup)
    with pytest.raises(EncodeError, match="depth"):
        codec.dumps(Markup("x"))


def test_mutation_during_encoding_is_detected():
    codec = _native.Codec()
    target = [1, 2, 3]

    def to_state(m):
        target.clear()
        return str(m)

    codec.register_type(Markup, "markup", to_state, Markup)
    target[:] = [Markup("a"), 2, 3]
    with pytest.raises(EncodeError, match="changed size"):
        codec.dumps(target)


def test_thread_safety():
    codec = make_codec()
    value = [Markup("x"), FrozenDict(a=1), tuple(range(50)), {"k": 1.5}]
    errors = []

    def worker():
        try:
            for _ in range(2000):
                assert same(codec.loads(codec.dumps(value)), value)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def registrar():
        for i in range(50):
            cls = type(f"T{i}", (str,), {})
            codec.register_type(cls, f"t{i}", str, cls)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    threads.append(threading.Thread(target=registrar))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(codec.registered_tags()) == 53


# --------------------------------------------------------------------------- unsupported


class CustomTz(tzinfo):
    def utcoffset(self, dt):
        return timedelta(hours=1)


def test_encode_error_is_type_error():
    assert issubclass(EncodeError, TypeError)
    assert issubclass(DecodeError, ValueError)
    assert issubclass(_native.FormatVersionError, DecodeError)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        lambda: 1,
        len,
        int,
        bytearray(b"x"),
        memoryview(b"x"),
        1j,
        range(3),
        [object()],
        {"k": {1: object()}},
        "\ud800",
        datetime(2024, 1, 1, tzinfo=CustomTz()),
        datetime(2024, 1, 1).time().replace(tzinfo=CustomTz()),
        Ellipsis,
    ],
    ids=repr,
)
def test_unsupported_values(value):
    with pytest.raises(EncodeError):
        CODEC.dumps(value)


def test_cycles_are_encode_errors():
    lst = []
    lst.append(lst)
    with pytest.raises(EncodeError, match="depth"):
        CODEC.dumps(lst)
    d = {}
    d["self"] = d
    with pytest.raises(EncodeError, match="depth"):
        CODEC.dumps(d)


def test_max_depth_both_ways():
    shallow = _native.Codec(max_depth=3)
    deep = _native.Codec()
    ok = [[[1]]]
    too_deep = [[[[1]]]]
    assert shallow.loads(shallow.dumps(ok)) == ok
    with pytest.raises(EncodeError, match="depth"):
        shallow.dumps(too_deep)
    with pytest.raises(DecodeError, match="depth"):
        shallow.loads(deep.dumps(too_deep))
    nested = 1
    for _ in range(128):
        nested = [nested]
    assert deep.loads(deep.dumps(nested)) == nested
    with pytest.raises(EncodeError):
        deep.dumps([nested])


def test_max_depth_limit_fits_a_small_thread_stack():
    # 1000 levels (the maximum) on a 1 MiB thread stack: a fat recursion
    # frame would crash the process here instead of failing the test.
    codec = _native.Codec(max_depth=1000)
    nested = 1
    for _ in range(999):
        nested = [nested]
    data = codec.dumps(nested)
    results = []

    def run():
        results.append(codec.dumps(nested) == data)
        out = codec.loads(data)
        for _ in range(999):
            out = out[0]
        results.append(out == 1)

    old = threading.stack_size(1 << 20)
    try:
        t = threading.Thread(target=run)
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    assert results == [True, True]


def test_constructor_validation():
    with pytest.raises(ValueError):
        _native.Codec(max_depth=0)
    with pytest.raises(ValueError):
        _native.Codec(max_depth=10**6)
    with pytest.raises(ValueError):
        _native.Codec(compress_threshold=-1)
    with pytest.raises(ValueError):
        _native.Codec(max_decoded_bytes=0)
    c = _native.Codec(compress_threshold=10, max_depth=5, max_decoded_bytes=1000)
    assert (c.compress_threshold, c.max_depth, c.max_decoded_bytes) == (10, 5, 1000)


def test_encode_larger_than_max_decoded_bytes():
    codec = _native.Codec(max_decoded_bytes=1000)
    with pytest.raises(EncodeError):
        codec.dumps("x" * 2000)


# --------------------------------------------------------------------------- hostile input


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data):
    for blob in (data, HEADER + data, b"\xc0\xde\x01\x01" + data):
        try:
            CODEC.loads(blob)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_mutated_encodings_never_crash(value, data):
    blob = bytearray(CODEC.dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    try:
        CODEC.loads(bytes(blob))
    except DecodeError:
        pass


TRUNCATION_VALUES = [
    EDGE_VALUES,
    {"a": [1, 2, (3, 4.5)], "b": {frozenset({1}): Decimal("1.5")}},
    [Markup("x"), FrozenDict(a=1), Point(1, 2)],
    datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=BRUSSELS),
]


@pytest.mark.parametrize("value", TRUNCATION_VALUES, ids=range(len(TRUNCATION_VALUES)))
@pytest.mark.parametrize("threshold", [4096, 0])
def test_every_truncation_is_decode_error(value, threshold):
    codec = make_codec(compress_threshold=threshold)
    data = codec.dumps(value)
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            codec.loads(data[:n])


def test_trailing_bytes_rejected():
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.loads(CODEC.dumps(1) + b"\x00")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07" + b"\xff" * 8 + b"\x7f",  # str of ~2**63 bytes
        b"\x08\xff\xff\xff\xff\x0f" + b"x" * 10,  # bytes of 4 GiB
        b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 10,  # list of 4 G items
        b"\x09\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # tuple of 2**63 items
        b"\x0b\x06" + b"\x00" * 10,  # dict of 6 entries needs >= 12 bytes
        b"\x04\xff\xff\xff\xff\x0f\x01",  # big int of 4 GiB
        b"\x12\xff\xff\x03markup",  # extension tag of 64 KiB
        b"\x07\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # overlong varint
    ],
)
def test_huge_declared_lengths(payload):
    start = time.perf_counter()
    with pytest.raises(DecodeError):
        CODEC.loads(HEADER + payload)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("tag", [b"\x09\x01", b"\x0a\x01", b"\x0c\x01", b"\x12\x06markup"])
def test_million_deep_nesting_bytes(tag):
    data = HEADER + tag * 10**6 + b"\x00"
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="depth"):
        CODEC.loads(data)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07\x02\xff\xfe",  # invalid UTF-8
        b"\x07\x03\xed\xa0\x80",  # encoded lone surrogate
        b"\x13",  # unknown tag
        b"\x7f",  # unknown tag
        b"\x0e\xe8\x07\x0d\x01\x00\x00\x00\x00\x00\x00",  # month 13
        b"\x0e\xe8\x07\x01\x01\x00\x00\x00\x00\x02\x00",  # fold 2
        b"\x0e\xe8\x07\x01\x01\x00\x00\x00\x00\x00\x05",  # tz kind 5
        b"\x0e\xe8\x07\x01\x01\x00\x00\x00\x00\x00\x03\x05Nope/",  # unknown zone
        b"\x0e\xe8\x07\x01\x01\x00\x00\x00\x00\x00\x03\x0b../../etc/x",  # path traversal
        b"\x0e\xe8\x07\x01\x01\x00\x00\x00\x00\x00\x01\x80\x80\x80\x80\x80\x80\x02",  # offset
        b"\x10\x19\x00\x00\x00\x00\x00",  # hour 25
        b"\x0f\x00\x00\x01\x01",  # year 0
        b"\x11\x03abc",  # not a decimal
        b"\x11\x02\xc3\xa9",  # non-ASCII decimal
        b"\x0c\x01\x0a\x00",  # set containing a list (unhashable)
        b"\x0b\x01\x0a\x00\x00",  # dict with a list key
        b"\x06\x00\x00",  # short float
    ],
)
def test_invalid_payloads(payload):
    with pytest.raises(DecodeError):
        CODEC.loads(HEADER + payload)


def test_bad_header():
    for data in (b"", b"\xc0", b"\xc0\xde", b"\xc0\xde\x01", b"PK\x03\x04", b"\x80\x05N."):
        with pytest.raises(DecodeError):
            CODEC.loads(data)
    with pytest.raises(DecodeError, match="flags"):
        CODEC.loads(b"\xc0\xde\x01\x02\x00")


def test_other_format_version():
    payload = CODEC.dumps([1, 2])[4:]
    for version in (0, 2, 255):
        data = b"\xc0\xde" + bytes([version]) + b"\x00" + payload
        with pytest.raises(_native.FormatVersionError, match="format version"):
            CODEC.loads(data)
        with pytest.raises(DecodeError):
            CODEC.loads(data)


def test_loads_rejects_non_bytes():
    with pytest.raises(TypeError):
        CODEC.loads("not bytes")


# --------------------------------------------------------------------------- compression


def test_compressed_round_trip():
    value = {"rows": [(i, f"Partner {i % 50}", i * 0.5) for i in range(5000)]}
    data = CODEC.dumps(value)
    assert data[3] & 1, "expected the LZ4 flag"
    plain = _native.Codec(compress_threshold=10**9).dumps(value)
    assert plain[3] == 0
    assert len(data) < len(plain) / 2
    assert same(CODEC.loads(data), value)
    # Any codec reads compressed frames regardless of its own threshold.
    assert same(_native.Codec(compress_threshold=10**9).loads(data), value)


def test_incompressible_large_value_stays_plain():
    import os

    blob = os.urandom(100_000)
    data = CODEC.dumps(blob)
    assert data[3] == 0
    assert CODEC.loads(data) == blob


def test_compressed_frame_over_max_decoded_bytes():
    value = "x" * 10_000
    data = _native.Codec(compress_threshold=0).dumps(value)
    assert data[3] & 1
    with pytest.raises(DecodeError, match="max_decoded_bytes"):
        _native.Codec(max_decoded_bytes=5_000).loads(data)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\x00" * 8,  # 2**63 declared
        b"\x80\x80\x80\x20" + b"\x00" * 8,  # 64 MiB declared, 8 bytes present
        b"\x05\x00",  # 5 declared, garbage block
        b"\x03\x20\x07\x00",  # 3 declared, block inflates to 2 bytes
        b"",  # missing length
    ],
)
def test_compressed_frame_lies(body):
    start = time.perf_counter()
    with pytest.raises(DecodeError):
        CODEC.loads(b"\xc0\xde\x01\x01" + body)
    assert time.perf_counter() - start < 0.5


RLIMIT_SCRIPT = """
import resource, sys
from ormcache_redis import _native
codec = _native.Codec(max_decoded_bytes=1 << 40, max_decoded_memory=1 << 40)
frame = bytes.fromhex(sys.argv[1]) + b"\\x00" * int(sys.argv[2])
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
limit = vm + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    codec.loads(frame)
except _native.DecodeError as e:
    print("DecodeError", e)
"""


@pytest.mark.parametrize(
    ("header", "filler", "message"),
    [
        # 128 GiB declared, 64 bytes present: refused by the LZ4 ratio check.
        ("c0de0101" + "808080808004", 64, "impossible"),
        # 512 MiB declared and plausible for the ratio, but the address space
        # is limited: the failed allocation is a DecodeError, not an abort.
        ("c0de0101" + "8080808002", (1 << 29) // 255 + 10, "cannot allocate"),
    ],
)
def test_compressed_huge_declared_size_does_not_abort(header, filler, message):
    # Under an address-space limit far below the declared size, allocating it
    # the infallible way would abort the process (checked by hand: exit -6).
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_SCRIPT, header, str(filler)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("DecodeError"), proc.stdout
    assert message in proc.stdout
