"""Option parsing: one clear sentence naming the option for every bad value."""

from __future__ import annotations

import pytest

from ormcache_redis.config import (
    ConfigError,
    OptionSource,
    parse_redis_url,
    parse_seconds,
    redact_url,
)


def test_config_first_then_environment() -> None:
    config = {"ormcache_redis_url": "redis://conf:6379/0", "empty": "", "unset": False}
    source = OptionSource(config.get, {"ORMCACHE_REDIS_URL": "redis://env", "EMPTY": "redis://e"})
    assert source.raw("ormcache_redis_url") == "redis://conf:6379/0"
    assert source.raw("empty") == "redis://e"
    assert source.raw("unset") is None
    assert OptionSource(None, {"X": "  1 "}).raw("x") == "1"


@pytest.mark.parametrize(
    "url",
    ["redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///tmp/r.sock", "valkey://h", "redis://h"],
)
def test_valid_urls(url: str) -> None:
    assert parse_redis_url("ormcache_redis_url", url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "must be a redis://"),
        ("redis://", "has no host"),
        ("redis://h:notaport/0", "invalid port"),
        ("redis://h/zero", "by number"),
    ],
)
def test_invalid_urls_name_the_option(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_redis_url("ormcache_redis_url", url)
    text = str(info.value)
    assert text.startswith("ormcache_redis_url ") and message in text
    assert text.count(".") >= 1 and "\n" not in text


def test_password_never_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_redis_url("session_store_url", "http://user:hunter2@h")
    assert "hunter2" not in str(info.value)
    assert redact_url("redis://user:hunter2@h:1/0") == "redis://***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_seconds() -> None:
    assert parse_seconds("ormcache_redis_expire", None, 3600) == 3600
    assert parse_seconds("ormcache_redis_expire", "90", 3600) == 90
    for bad in ("abc", "-1", "0", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"^ormcache_redis_expire must be"):
            parse_seconds("ormcache_redis_expire", bad, 3600)
    with pytest.raises(ConfigError, match="at most 60"):
        parse_seconds("session_store_timeout", "61", 1.0, maximum=60)
