"""Odoo 19's domain trees and Odoo 18/19's group definitions through a real
Redis (``ormcache_redis.odoo_support.value_types``): what one process stores
another gets back as the same classes, levels and sets; an entry whose
state has another shape is a miss; a node the codec does not know keeps the
value in L1. The classes below stand for Odoo's as far as the codec sees
them (constructors, attributes, equality); the addon's Odoo tests
(``test_cached_values``) run the same rebuilds on Odoo's own classes.
"""

from __future__ import annotations

import enum
import types
from typing import Any

import pytest

from ormcache_redis import Codec, RedisClient, TwoTierCache
from ormcache_redis.odoo_support import value_types

SECRET = "test-deployment-secret"


# --------------------------------------------------------------------------- Odoo's shapes


class OptimizationLevel(enum.IntEnum):
    NONE = 0
    BASIC = 1
    DYNAMIC_VALUES = 2
    FULL = 3


class Domain:
    __slots__ = ("_opt_level",)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("Domain objects are immutable")


class DomainBool(Domain):
    __slots__ = ("value",)

    def __new__(cls, value: bool) -> DomainBool:
        self = object.__new__(cls)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_opt_level", OptimizationLevel.FULL)
        return self

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


class DomainNot(Domain):
    __slots__ = ("child",)

    def __new__(cls, child: Domain) -> DomainNot:
        self = object.__new__(cls)
        object.__setattr__(self, "child", child)
        object.__setattr__(self, "_opt_level", OptimizationLevel.NONE)
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DomainNot) and self.child == other.child


class DomainNary(Domain):
    __slots__ = ("children",)

    def __new__(cls, children: tuple) -> DomainNary:
        assert len(children) >= 2
        self = object.__new__(cls)
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "_opt_level", OptimizationLevel.NONE)
        return self

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.children == other.children


class DomainAnd(DomainNary):
    __slots__ = ()


class DomainOr(DomainNary):
    __slots__ = ()


class DomainCondition(Domain):
    __slots__ = ("_field_instance", "field_expr", "operator", "value")

    def __new__(cls, field_expr: str, operator: str, value: Any) -> DomainCondition:
        self = object.__new__(cls)
        for name, item in (("field_expr", field_expr), ("operator", operator), ("value", value)):
            object.__setattr__(self, name, item)
        object.__setattr__(self, "_field_instance", None)
        object.__setattr__(self, "_opt_level", OptimizationLevel.NONE)
        return self

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DomainCondition)
            and (self.field_expr, self.operator) == (other.field_expr, other.operator)
            and type(self.value) is type(other.value)
            and self.value == other.value
        )


class DomainCustom(Domain):
    """Holds functions: never registered."""

    __slots__ = ("_sql",)


Domain.TRUE = DomainBool(True)  # type: ignore[attr-defined]
Domain.FALSE = DomainBool(False)  # type: ignore[attr-defined]

DOMAINS = types.SimpleNamespace(
    Domain=Domain,
    DomainBool=DomainBool,
    DomainNot=DomainNot,
    DomainAnd=DomainAnd,
    DomainOr=DomainOr,
    DomainCondition=DomainCondition,
    OptimizationLevel=OptimizationLevel,
    CONDITION_OPERATORS={"=", "!=", "in", "not in", "ilike", "any", "child_of"},
)


class Leaf:
    def __init__(self, leaf_id: int, ref: str) -> None:
        self.id, self.ref = leaf_id, ref
        self.subsets, self.supersets, self.disjoints = {leaf_id}, {leaf_id}, set()


class SetDefinitions:
    """The closure Odoo computes: supersets transitively, disjointness
    inherited by subsets."""

    def __init__(self, definitions: dict[int, dict]) -> None:
        self.__leaves: dict[int | str, Leaf] = {}
        for leaf_id, info in definitions.items():
            leaf = Leaf(leaf_id, info["ref"])
            self.__leaves[leaf_id] = self.__leaves[info["ref"]] = leaf
        leaves = {leaf_id: self.__leaves[leaf_id] for leaf_id in definitions}
        for leaf_id, info in definitions.items():
            for greater in info.get("supersets", ()):
                leaves[leaf_id].supersets.add(leaves[greater].id)
        changed = True
        while changed:
            changed = False
            for leaf in leaves.values():
                reach = set().union(*(leaves[i].supersets for i in leaf.supersets))
                changed |= not reach <= leaf.supersets
                leaf.supersets |= reach
        for leaf in leaves.values():
            for greater in leaf.supersets:
                leaves[greater].subsets.add(leaf.id)
        for leaf_id, info in definitions.items():
            for other in info.get("disjoints", ()):
                for left in leaves[leaf_id].subsets:
                    for right in leaves[other].subsets:
                        leaves[left].disjoints.add(right)
                        leaves[right].disjoints.add(left)

    def figures(self) -> dict[int, tuple]:
        return {
            leaf.id: (leaf.ref, leaf.subsets, leaf.supersets, leaf.disjoints)
            for leaf in self.__leaves.values()
        }


def with_level(node: Domain, level: OptimizationLevel) -> Domain:
    object.__setattr__(node, "_opt_level", level)
    return node


def nodes(domain: Domain):
    yield domain
    for child in (*getattr(domain, "children", ()), getattr(domain, "child", None)):
        if child is not None:
            yield from nodes(child)
    if isinstance(getattr(domain, "value", None), Domain):
        yield from nodes(domain.value)


# --------------------------------------------------------------------------- caches


def odoo_codec() -> Codec:
    """The codec as the addon builds it for Odoo 19 (one per process)."""
    codec = Codec()
    value_types.register_value_types(codec)
    value_types.register_domain_types(codec, DOMAINS)
    value_types.register_set_definitions(
        codec, types.SimpleNamespace(SetDefinitions=SetDefinitions)
    )
    return codec


def compute_domain(model_name: str, mode: str) -> Any:
    """Stands for ``ir.rule._compute_domain`` (the key holds the function)."""
    raise AssertionError("not called: the tests store and read values")


def cache_in_a_process(url: str, codec: Codec) -> TwoTierCache:
    client = RedisClient(url, retry_initial=0.05, retry_max=0.2)
    return TwoTierCache(
        "default",
        100,
        client=client,
        codec=codec,
        namespace=b"db1:1:default:0",
        secret=SECRET,
        follow_clears=None,
    )


def share(url: str, value: Any, writer_codec: Codec | None = None) -> TwoTierCache:
    """Stores ``value`` in one process; returns another process's cache."""
    writer = cache_in_a_process(url, writer_codec or odoo_codec())
    writer[KEY] = value
    assert writer.client is not None and writer.client.flush(5)
    return cache_in_a_process(url, odoo_codec())


KEY = ("ir.rule", compute_domain, "res.partner", "read")


def rule_domain() -> Domain:
    """What a rule domain looks like once optimized: conditions at level
    BASIC, a path turned into ``any``, a negation, both constants."""
    basic = OptimizationLevel.BASIC
    partners = with_level(DomainCondition("company_id", "in", [1, 2]), basic)
    child = with_level(DomainCondition("id", "child_of", (3,)), basic)
    path = with_level(
        DomainCondition("parent_id", "any", with_level(DomainCondition("name", "=", "x"), basic)),
        basic,
    )
    either = with_level(DomainOr((partners, child)), basic)
    return with_level(DomainAnd((either, DomainNot(path), Domain.TRUE, Domain.FALSE)), basic)


# --------------------------------------------------------------------------- tests


def test_a_domain_comes_back_in_another_process_as_computed(redis_url: str) -> None:
    domain = rule_domain()
    back = share(redis_url, domain)[KEY]
    assert back == domain
    pairs = list(zip(nodes(back), nodes(domain), strict=True))
    assert len(pairs) == 9
    for rebuilt, computed in pairs:
        assert type(rebuilt) is type(computed)
        assert rebuilt._opt_level is computed._opt_level
        if isinstance(computed, DomainCondition):
            assert type(rebuilt.value) is type(computed.value)
            assert rebuilt._field_instance is None  # a per-process memo
    assert back.children[2] is Domain.TRUE and back.children[3] is Domain.FALSE


class Forged:
    def __init__(self, state: Any) -> None:
        self.state = state


def forging_codec(tag: str) -> Codec:
    """A codec that writes any state under ``tag``: what an entry written by
    another release, or forged with the secret, would hold."""
    codec = Codec()
    codec.register_type(Forged, tag, lambda value: value.state, tuple)
    return codec


@pytest.mark.parametrize(
    ("tag", "state"),
    [
        ("odoo.DomainCondition", (1, "name", "drop table", "a")),
        ("odoo.DomainCondition", (7, "name", "=", "a")),
        ("odoo.DomainCondition", (1, "", "=", "a")),
        ("odoo.DomainCondition", (1, "name", "=")),
        ("odoo.DomainBool", (1,)),
        ("odoo.DomainNot", (0, "not a domain")),
        ("odoo.DomainAnd", (0, ())),
        ("odoo.SetDefinitions", ((1, "a.x", (2,), ()),)),
        ("odoo.SetDefinitions", ((1, "*", (), ()),)),
        ("odoo.SetDefinitions", ((1, "a.x", (), ()), (2, "a.x", (), ()))),
    ],
)
def test_a_state_of_another_shape_is_a_miss(redis_url: str, tag: str, state: tuple) -> None:
    value = Forged(state[0] if tag == "odoo.DomainBool" else state)
    reader = share(redis_url, value, forging_codec(tag))
    with pytest.raises(KeyError):
        reader[KEY]
    assert reader.stats()["rejected_entries"] == 1


def test_a_domain_holding_code_stays_in_the_process(redis_url: str, redis_server) -> None:
    custom = object.__new__(DomainCustom)
    writer = cache_in_a_process(redis_url, odoo_codec())
    writer[KEY] = with_level(
        DomainAnd((DomainCondition("a", "=", 1), custom)), OptimizationLevel.FULL
    )
    assert writer.client is not None and writer.client.flush(5)
    assert writer.stats()["unencodable_values"] == 1
    assert writer[KEY].children[1] is custom  # L1 still serves it
    assert not [name for name in redis_server.command("KEYS", "*") if b":c:" in name]


def test_group_definitions_come_back_with_the_same_closure(redis_url: str) -> None:
    definitions = SetDefinitions(
        {
            1: {"ref": "base.group_user", "supersets": [4], "disjoints": [2, 3]},
            2: {"ref": "base.group_portal", "disjoints": [1, 3]},
            3: {"ref": "base.group_public", "disjoints": [1, 2]},
            4: {"ref": "base.group_everyone"},
            5: {"ref": "base.group_system", "supersets": [6]},
            6: {"ref": "base.group_erp_manager", "supersets": [1]},
            7: {"ref": "7"},
        }
    )
    back = share(redis_url, definitions)[KEY]
    assert type(back) is SetDefinitions
    assert back.figures() == definitions.figures()
    assert back.figures()[5][2] == {1, 4, 5, 6}  # the closure, not only the edges
    assert back.figures()[5][3] == {2, 3}  # disjoint from what group_user is
