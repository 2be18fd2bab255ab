"""``ormcache``: Odoo's ``@ormcache`` decorator on the two-tier cache.

Same key semantics as Odoo (section 1 of the Odoo facts): the key is
``(self._name, method, *values)`` where each value is one of the decorator's
expressions evaluated against the method's parameters, and the cache is
``self.pool._Registry__caches[cache]``. The hit path runs in Rust
(:class:`ormcache_redis._native.CachedMethod`); this module builds the key
function (and, when :mod:`ormcache_redis.key_plan` covers every
expression, the plan that spares a hit from calling it) and handles the
rare paths.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

from ormcache_redis import key_plan
from ormcache_redis._native import (
    CachedMethod,
    RedisReplyError,
    RedisUnavailable,
    TwoTierCache,
    key_method,
    set_single_flight,
)

__all__ = ["check_decorator_arguments", "ormcache"]

_logger = logging.getLogger("ormcache_redis.two_tier_ormcache")

F = TypeVar("F", bound=Callable[..., Any])


class _Source:
    """A default value that prints as the expression reading it back."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def check_decorator_arguments(exprs: tuple[object, ...], ttl: object) -> None:
    """Raises a clear error for arguments Odoo's decorator would misread:
    ``@ormcache("x", 600)`` would silently take 600 as a key expression."""
    for expr in exprs:
        if not isinstance(expr, str):
            hint = (
                f"; pass a lifetime as ttl={expr!r}"
                if isinstance(expr, int | float) and not isinstance(expr, bool)
                else ""
            )
            raise TypeError(
                f"ormcache key expressions are Python source strings, got {expr!r} "
                f"({type(expr).__name__}){hint}"
            )
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not ttl > 0
    ):
        raise ValueError(f"ormcache ttl must be a positive number of seconds, got {ttl!r}")


def build_key_function(method: Callable[..., Any], exprs: tuple[str, ...]) -> Callable[..., tuple]:
    """Compiles ``lambda <method's parameters>: (self._name, method, *exprs)``.

    Expressions are the decorator's own source text (like Odoo's), never
    stored data. Defaults are kept, so a call that omits an argument gets the
    same key as one that passes the default.
    """
    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())
    if not parameters:
        raise TypeError(f"@ormcache needs a method taking self/cls, got {method.__qualname__}")
    defaults: dict[str, Any] = {}
    plain = []
    for parameter in parameters:
        if parameter.default is not inspect.Parameter.empty:
            defaults[parameter.name] = parameter.default
            parameter = parameter.replace(default=_Source(f"__defaults__[{parameter.name!r}]"))
        plain.append(parameter.replace(annotation=inspect.Parameter.empty))
    arguments = str(signature.replace(parameters=plain, return_annotation=inspect.Signature.empty))
    first = parameters[0].name
    values = "".join(f"{expr}, " for expr in exprs)
    source = (
        f"lambda __defaults__, __method__: "
        f"lambda {arguments[1:-1]}: ({first}._name, __method__, {values})"
    )
    try:
        factory = eval(source, method.__globals__)
    except SyntaxError as exc:
        raise SyntaxError(f"@ormcache{exprs!r} on {method.__qualname__}: {exc.msg}") from None
    return factory(defaults, method)


def _report_unhashable(obj: Any, key: Any, error: BaseException) -> None:
    # Odoo warns and computes without caching; the key itself is not logged
    # because it may hold user data.
    _logger.warning(
        "cache lookup error on %s.%s: %s (computed, not cached)",
        getattr(obj, "_name", type(obj).__name__),
        getattr(key_method(key), "__qualname__", "?"),
        error,
    )


def _clear_function(cached: CachedMethod) -> Callable[[Any], int]:
    method = cached.method

    def clear_cache(obj: Any) -> int:
        """Invalidates this method's entries: here, and in Redis for every process."""
        cache = cached.cache_for(obj)
        if isinstance(cache, TwoTierCache):
            try:
                return cache.clear_method(method)
            except (RedisUnavailable, RedisReplyError) as error:
                # Unreachable, or reached but no replica confirmed the clear
                # (a failover could lose it).
                _logger.error(
                    "%s: the clear may not reach other processes (%s); local entries "
                    "were dropped, but other processes may serve shared entries "
                    "until they expire (%s s)",
                    method.__qualname__,
                    error,
                    cache.ttl,
                )
                return 0
        doomed = [key for key in cache if key_method(key) is method]
        for key in doomed:
            cache.pop(key, None)
        return len(doomed)

    return clear_cache


def ormcache(
    *exprs: str,
    cache: str = "default",
    ttl: float | None = None,
    single_flight: bool | None = None,
    skiparg: int | None = None,
) -> Callable[[F], F]:
    """Caches a model method's result in ``self.pool._Registry__caches[cache]``.

    ``exprs`` are Python expressions over the method's parameters (e.g.
    ``'self.env.uid'``, ``'frozenset(groups)'``); ``ttl`` (seconds) bounds the
    life of the entry in both tiers. ``self.method.clear_cache(self)`` (or
    ``Model.method.clear_cache(record)``) invalidates that method's entries
    only, in this process and, through Redis, in every other one.

    ``single_flight``: on a shared miss, one process computes and the others
    wait for its value (True), never (False), or when the method's measured
    compute time reaches the cache's ``single_flight_after`` (None).
    """
    if skiparg is not None:
        raise TypeError("skiparg is not supported: name the key expressions instead")
    check_decorator_arguments(exprs, ttl)

    def decorate(method: F) -> F:
        key = build_key_function(method, exprs)
        plan = key_plan.key_plan(method, exprs, method.__globals__)
        parts, defaults = plan if plan is not None else (None, None)
        cached = CachedMethod(
            method, key, cache, ttl, _report_unhashable, key_parts=parts, defaults=defaults
        )
        functools.update_wrapper(cached, method)
        cached.clear_cache = _clear_function(cached)
        if single_flight is not None:
            set_single_flight(method, single_flight)
        return cached  # type: ignore[return-value]

    return decorate
