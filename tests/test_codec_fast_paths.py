"""The codec's fast paths: exact-type dispatch inline in every container, small
ints told by address, the tables of recent strings and ints, the reused dumps
buffer. Each is checked against what it must not change: exact types (a
subclass is never taken for its base), values at every boundary, mutation and
re-entry from Python code run in the middle of a call."""

from __future__ import annotations

import struct
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ormcache_redis import _native

EncodeError = _native.EncodeError
DecodeError = _native.DecodeError

HEADER = b"\xc0\xde\x01\x00"
STR_MAX_LEN = 64  # object_cache.rs: longer strings are not kept
SLOTS = 1024


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyDict(dict):
    pass


class MyTuple(tuple):
    pass


class MyList(list):
    pass


class MyFrozenSet(frozenset):
    pass


SUBCLASS_VALUES = [
    MyStr("x"),
    MyInt(3),
    MyInt(300),
    MyFloat(1.5),
    MyDict(a=1),
    MyTuple((1, 2)),
    MyList([1]),
    MyFrozenSet({1}),
]


def positions(value):
    """`value` at the top, as an item of each container, as a dict key (when
    hashable) and value."""
    yield value
    yield (value,)
    yield [value]
    yield {"k": value}
    yield (1, "a", value, 2.5)
    try:
        hash(value)
    except TypeError:
        return
    yield {value: 1}
    yield {value}
    yield frozenset({value})


@pytest.mark.parametrize("value", SUBCLASS_VALUES, ids=lambda v: type(v).__name__)
def test_an_unregistered_subclass_is_refused_wherever_it_sits(value):
    codec = _native.Codec()
    for holder in positions(value):
        with pytest.raises(EncodeError, match="subclass"):
            codec.dumps(holder)


def types_in(value) -> set[type]:
    """The types of `value` and of everything it holds, dict keys included."""
    found = {type(value)}
    if isinstance(value, dict):
        for k, v in value.items():
            found |= types_in(k) | types_in(v)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            found |= types_in(item)
    return found


@pytest.mark.parametrize("value", SUBCLASS_VALUES, ids=lambda v: type(v).__name__)
def test_a_registered_subclass_comes_back_as_itself_wherever_it_sits(value):
    cls = type(value)
    base = cls.__mro__[1]
    codec = _native.Codec()
    codec.register_type(cls, cls.__name__, base, cls)
    for holder in positions(value):
        out = codec.loads(codec.dumps(holder))
        assert out == holder
        assert cls in types_in(out), holder


def test_bool_stays_bool_and_int_stays_int_in_every_container():
    codec = _native.Codec()
    for value in (True, False, 1, 0):
        for holder in positions(value):
            out = codec.loads(codec.dumps(holder))
            assert out == holder
            assert types_in(out) == types_in(holder), holder
    out = codec.loads(codec.dumps({True: 1, 0: False}))
    assert [(type(k), type(v)) for k, v in out.items()] == [(bool, int), (int, bool)]


INT_BOUNDARIES = [
    -(2**63),
    -(2**62),
    -8193,
    -8192,
    -257,
    -6,
    -5,
    -1,
    0,
    1,
    126,
    127,
    128,
    255,
    256,
    257,
    8191,
    8192,
    2**62,
    2**63 - 1,
]


def test_ints_at_every_boundary_round_trip_in_every_container():
    codec = _native.Codec()
    for value in INT_BOUNDARIES:
        for holder in positions(value):
            out = codec.loads(codec.dumps(holder))
            assert out == holder and types_in(out) == types_in(holder), holder
        data = codec.dumps(value)
        # 0..127 is one byte, with no other int taken for one.
        assert (len(data) == len(HEADER) + 1) == (0 <= value <= 127), value


WRAPPERS = [
    (lambda v: v, lambda out: out),
    (lambda v: (v,), lambda out: out[0]),
    (lambda v: [v], lambda out: out[0]),
    (lambda v: {"k": v}, lambda out: out["k"]),
]


def test_floats_keep_their_bits_in_every_container():
    codec = _native.Codec()
    odd_nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    for value in (0.0, -0.0, 1.5, odd_nan, float("inf")):
        for wrap, unwrap in WRAPPERS:
            out = unwrap(codec.loads(codec.dumps(wrap(value))))
            assert type(out) is float
            assert struct.pack("<d", out) == struct.pack("<d", value)


def test_recent_strings_and_ints_are_handed_out_again():
    codec = _native.Codec()
    value = {"field_name": [1000, "draft"], "other": (1000, -77777)}
    first = codec.loads(codec.dumps(value))
    second = codec.loads(codec.dumps(value))
    assert first == second == value
    assert next(iter(first)) is next(iter(second))
    assert first["field_name"][1] is second["field_name"][1]
    assert first["field_name"][0] is second["field_name"][0]
    assert first["other"][1] is second["other"][1]


def test_strings_around_the_kept_length_and_non_ascii():
    codec = _native.Codec()
    for n in (1, 2, 7, 8, 9, 15, 16, 17, STR_MAX_LEN - 1, STR_MAX_LEN, STR_MAX_LEN + 1, 200):
        for text in ("a" * n, "é" * (n // 2) + "a" * (n % 2), "日" * (n // 3) + "x" * (n % 3)):
            for _ in range(2):
                out = codec.loads(codec.dumps([text, {text: text}]))
                assert out == [text, {text: text}]
                assert type(out[0]) is str


def test_many_distinct_strings_and_ints_each_decode_to_their_own_value():
    # More than the tables hold: every slot is replaced several times over,
    # including by values that share a slot with the one decoded just before.
    codec = _native.Codec()
    for round_ in range(3):
        values = [(f"k{i}:{round_}", i * 7919 + round_, -i - 1000) for i in range(3 * SLOTS)]
        assert codec.loads(codec.dumps(values)) == values


def test_invalid_utf8_in_a_short_string_is_a_decode_error_and_nothing_kept():
    codec = _native.Codec()
    bad = HEADER + b"\x07\x03ab\xff"
    for _ in range(2):
        with pytest.raises(DecodeError):
            codec.loads(bad)
    assert codec.loads(HEADER + b"\x07\x02ab") == "ab"


def test_a_decode_inside_from_state_decodes_right():
    # from_state runs while the outer decode holds the tables of recent
    # objects: the inner decode goes without them.
    codec = _native.Codec()
    inner = codec.dumps({"inner": [1000, "draft"]})
    seen = []

    def from_state(state):
        seen.append(codec.loads(inner))
        return MyStr(state)

    codec.register_type(MyStr, "mystr", str, from_state)
    value = {"inner": [1000, "draft"], "s": MyStr("x"), "after": [1000, "draft"]}
    out = codec.loads(codec.dumps(value))
    assert out == value and type(out["s"]) is MyStr
    assert seen == [{"inner": [1000, "draft"]}]


def test_a_dumps_inside_to_state_encodes_right():
    # to_state runs while the outer dumps holds the kept buffer.
    codec = _native.Codec()
    nested = []

    def to_state(s):
        nested.append(codec.dumps(["nested", str(s)]))
        return str(s)

    codec.register_type(MyStr, "mystr", to_state, MyStr)
    value = ["before", MyStr("x"), "after"]
    data = codec.dumps(value)
    assert codec.loads(data) == value
    assert codec.loads(nested[0]) == ["nested", "x"]
    assert codec.dumps(value) == data


def test_the_kept_dumps_buffer_never_leaks_between_calls():
    codec = _native.Codec()
    big = ["x" * 1000] * 200  # grows the buffer past what is kept
    small = (1, 2)
    assert codec.loads(codec.dumps(big)) == big
    assert codec.dumps(small) == HEADER + b"\x09\x02\x81\x82"
    with pytest.raises(EncodeError):
        codec.dumps(["y" * 100, object()])
    assert codec.dumps(small) == HEADER + b"\x09\x02\x81\x82"


def set_payload(items: list[bytes]) -> bytes:
    return HEADER + b"\x0c" + bytes([len(items)]) + b"".join(items)


def int_item(v: int) -> bytes:
    if v >= 1 << 63:
        magnitude = v.to_bytes((v.bit_length() + 7) // 8, "little")
        return b"\x04" + bytes([len(magnitude)]) + magnitude
    zigzag = (v << 1) ^ (v >> 63)
    out = bytearray(b"\x03")
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    return bytes(out + bytes([zigzag]))


def test_set_elements_added_before_a_chosen_hash_are_checked_with_it():
    # -1 and -2 share a hash. Safe ints are added as they come; once a float
    # (a hash that can be chosen) follows, every element is checked, the ones
    # added already included, whatever the order.
    strict = _native.Codec(max_hash_collisions=0)
    half = struct.pack("<d", 0.5)
    for order in ([-1, -2, 0.5], [0.5, -1, -2], [-1, 0.5, -2]):
        items = [b"\x06" + half if v == 0.5 else int_item(v) for v in order]
        with pytest.raises(DecodeError, match="max_hash_collisions=0"):
            strict.loads(set_payload(items))
        assert _native.Codec().loads(set_payload(items)) == {-1, -2, 0.5}
    # Safe elements alone are never hashed for the check.
    assert strict.loads(set_payload([int_item(-1), int_item(-2)])) == {-1, -2}
    # Colliding big ints after ordinary ones: counted, refused.
    modulus = (1 << 61) - 1
    colliding = [int_item(k * modulus + 7) for k in range(1, 100)]
    data = HEADER + b"\x0c\x82\x01" + b"".join([int_item(i) for i in range(31)] + colliding)
    with pytest.raises(DecodeError, match="max_hash_collisions=98"):
        _native.Codec(max_hash_collisions=98).loads(data)
    assert len(_native.Codec().loads(data)) == 130


def test_a_dict_mutated_while_a_non_str_key_is_encoded():
    codec = _native.Codec()
    target: dict = {}

    def to_state(s):
        target.clear()
        return str(s)

    codec.register_type(MyStr, "mystr", to_state, MyStr)
    # The key runs Python code that frees the dict's entries, the value among
    # them: the encoder holds the value, then sees the dict changed.
    target.update({(MyStr("k"),): ["value", 1000], 2: 3})
    with pytest.raises(EncodeError, match="changed size"):
        codec.dumps(target)
    target.update({1: MyStr("v"), 2: 3})
    with pytest.raises(EncodeError, match="changed size"):
        codec.dumps(target)


def test_a_set_mutated_while_an_element_is_encoded():
    codec = _native.Codec()
    target: set = set()

    def to_state(s):
        target.update(range(100, 200))
        return str(s)

    codec.register_type(MyStr, "mystr", to_state, MyStr)
    target.update({MyStr("a"), 1, 2, 3})
    with pytest.raises(EncodeError, match="changed size"):
        codec.dumps(target)


# Written by the codec before its fast paths (format version 1, commit
# 1afb8e6): the same value must still encode to exactly these bytes and
# decode from them.
GOLDEN_VALUE = (
    "res.partner", 7, 0, 127, 128, -1, 1000, -8193, 2**63, -(2**63) - 1, 1.5, -0.0, None,
    True, False, "héllo 日本", "", b"\x00\xff", [1, "a", [2.5]],
    {"k": 1.0, 2: None, (1, "x"): "t"}, frozenset({1, 2, 3}), {5, 300},
    datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=ZoneInfo("Europe/Brussels")),
    datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=timezone(timedelta(hours=-3), "BRT")),
    date(2024, 2, 29), time(8, 15, 0, 7, tzinfo=timezone.utc), Decimal("-123.456E-7"),
)  # fmt: skip
GOLDEN_BYTES = bytes.fromhex(
    "c0de0100091b070b7265732e706172746e65728780ff038002030103d00f0381800104080000000000"
    "0000800508010000000000008006000000000000f83f060000000000000080000201070d68c3a96c6c"
    "6f20e697a5e69cac0700080200ff0a03810701610a010600000000000004400b0307016b0600000000"
    "0000f03f82000902810701780701740d038182830c0203d804850ee80705110c1e2dc0c40700030f45"
    "75726f70652f4272757373656c730ee5070a1f021e00000102ffafd7bb50034252540fe807021d1008"
    "0f0007000100110d2d302e30303030313233343536"
)
GOLDEN_COMPRESSED = bytes.fromhex(
    "c0de0101c325ff000a9003070a6669656c645f6e616d650c00ffffffffffffffffffffffffffffffff"
    "ffffad60645f6e616d65"
)


def test_bytes_written_before_the_fast_paths_are_written_and_read_the_same():
    codec = _native.Codec()
    assert codec.dumps(GOLDEN_VALUE) == GOLDEN_BYTES
    for _ in range(2):  # the second time from the tables of recent objects
        out = codec.loads(GOLDEN_BYTES)
        assert out == GOLDEN_VALUE
        assert [type(v) for v in out] == [type(v) for v in GOLDEN_VALUE]
    compressing = _native.Codec(compress_threshold=0)
    assert compressing.dumps(["field_name"] * 400) == GOLDEN_COMPRESSED
    assert codec.loads(GOLDEN_COMPRESSED) == ["field_name"] * 400
