"""Option parsing: one clear sentence naming the option for every bad value."""

from __future__ import annotations

import pytest

from ormcache_redis._native import RedisClient
from ormcache_redis.config import (
    OPTIONS,
    ConfigError,
    OptionSource,
    parse_redis_url,
    redact_url,
)
from ormcache_redis.odoo_support.settings import load_settings
from ormcache_redis.sessions.settings import session_store_settings


def test_config_first_then_environment() -> None:
    config = {"ormcache_redis_url": "redis://conf:6379/0", "empty": "", "unset": False}
    source = OptionSource(config.get, {"ORMCACHE_REDIS_URL": "redis://env", "EMPTY": "redis://e"})
    assert source.raw("ormcache_redis_url") == "redis://conf:6379/0"
    assert source.raw("empty") == "redis://e"
    assert source.raw("unset") is None
    assert OptionSource(None, {"X": "  1 "}).raw("x") == "1"


def test_redis_url_is_the_last_fallback_of_both_url_options() -> None:
    environ = {"REDIS_URL": "redis://shared:6379/0"}
    assert OptionSource(None, environ).raw("ormcache_redis_url") == "redis://shared:6379/0"
    assert OptionSource(None, environ).raw("session_store_url") == "redis://shared:6379/0"
    # Only the URLs: other options never read it.
    assert OptionSource(None, environ).raw("ormcache_redis_prefix") is None
    assert OptionSource(None, environ).raw("session_store") is None


def test_each_option_wins_over_redis_url() -> None:
    environ = {
        "REDIS_URL": "redis://shared:6379/0",
        "SESSION_STORE_URL": "redis://sessions:6379/1",
    }
    config = {"ormcache_redis_url": "redis://conf:6379/2"}
    source = OptionSource(config.get, environ)
    assert source.raw("ormcache_redis_url") == "redis://conf:6379/2"
    assert source.raw("session_store_url") == "redis://sessions:6379/1"
    # An empty variable is unset: the fallback still applies.
    blank = OptionSource(None, {"ORMCACHE_REDIS_URL": " ", "REDIS_URL": "redis://shared"})
    assert blank.raw("ormcache_redis_url") == "redis://shared"


def test_a_bad_redis_url_names_redis_url() -> None:
    source = OptionSource(None, {"REDIS_URL": "http://u:hunter2@host"})
    with pytest.raises(ConfigError, match=r"^REDIS_URL must be a redis://") as error:
        load_settings(source, ["default"])
    assert "hunter2" not in str(error.value)


def test_redis_url_alone_configures_the_cache_and_the_sessions(redis_url: str) -> None:
    source = OptionSource(None, {"REDIS_URL": redis_url, "SESSION_STORE": "redis"})
    cache = load_settings(source, ["default"])
    sessions = session_store_settings(source)
    assert cache.enabled and cache.url == redis_url
    assert sessions is not None and sessions.url == redis_url
    # The URL the options resolved to reaches the test's real Redis.
    assert RedisClient(cache.url).ping() > 0
    # Both share the server; their keys never meet.
    assert not sessions.prefix.startswith(cache.prefix)
    assert not cache.prefix.startswith(sessions.prefix)


def test_session_store_without_any_url_says_where_to_put_one() -> None:
    with pytest.raises(ConfigError, match="SESSION_STORE_URL or REDIS_URL"):
        session_store_settings(OptionSource(None, {"SESSION_STORE": "redis"}))


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
    timeout = OPTIONS["session_store_timeout"]
    assert timeout.parse(None) == timeout.default == 1.0
    assert timeout.parse(" 2.5 ") == 2.5
    for bad in ("abc", "-1", "0", "nan", "inf"):
        with pytest.raises(
            ConfigError, match=r"^session_store_timeout must be a number of seconds"
        ):
            timeout.parse(bad)
    with pytest.raises(ConfigError, match="at most 60"):
        timeout.parse("61")
    # A command line's value is named by its flag.
    with pytest.raises(ConfigError, match=r"^--timeout must be a number of seconds, got 'x'\.$"):
        timeout.parse("x", "--timeout")


def test_a_command_line_value_wins_and_is_named_by_its_flag() -> None:
    source = OptionSource(
        {"ormcache_redis_prefix": "conf:"}.get,
        {"ORMCACHE_REDIS_URL": "redis://env"},
        given={"ormcache_redis_prefix": ("--prefix", "a b"), "ormcache_redis_url": ("--url", None)},
    )
    assert source.raw("ormcache_redis_url") == "redis://env"  # nothing given: configured
    assert source.labels == {"ormcache_redis_prefix": "--prefix"}
    with pytest.raises(ConfigError, match=r"^--prefix must be at most 64 characters"):
        source.value("ormcache_redis_prefix")
    assert OptionSource({"ormcache_redis_prefix": "conf:"}.get).value("ormcache_redis_prefix") == (
        "conf:"
    )
