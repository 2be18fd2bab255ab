"""One definition of every option: src/settings/options.rs.

Every option's name, default and bounds are written there once; the
engine's parsers, the client, the cache, the commands, the metrics and the
addon read them from there (``ormcache_redis.config.OPTIONS`` in Python).
These tests hold the documentation and every default to that table.
"""

from __future__ import annotations

import inspect
import ipaddress
import re
from pathlib import Path

import pytest

from ormcache_redis import Codec, RedisClient, TwoTierCache
from ormcache_redis._native import CacheSettings, MetricsSettings, SessionSettings
from ormcache_redis.config import CACHE_PREFIX, OPTIONS, SESSION_PREFIX, ConfigError, OptionSource
from ormcache_redis.metrics.cluster_reading import read_cluster
from ormcache_redis.metrics.prometheus_text import exposition
from ormcache_redis.metrics.publisher import MetricsPublisher
from ormcache_redis.odoo_support.metrics_access import MetricsAccess
from ormcache_redis.odoo_support.shared_tier import SharedTier
from ormcache_redis.sessions.store import RedisSessionStore

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "odoo_addon" / "ormcache_redis" / "readme"
OPTION_TABLES = [README / "CONFIGURE.md"]
UNSET_WORDS = {"unset", "none", "(none)", "(required)"}


def documented_rows() -> list[tuple[str, str, str, str]]:
    """(file, option, default cell, meaning cell) of every option table row."""
    rows = []
    for path in OPTION_TABLES:
        header: list[str] = []
        for line in path.read_text().splitlines():
            if not line.startswith("|"):
                header = []
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not header:
                header = cells
                continue
            if "option" not in header or set(line) <= set("|-: "):
                continue
            name = cells[header.index("option")].strip("`")
            rows.append(
                (path.name, name, cells[header.index("default")], cells[header.index("meaning")])
            )
    return rows


ROWS = documented_rows()


def test_the_tables_document_every_option_and_no_other() -> None:
    documented = {name for _file, name, _default, _meaning in ROWS}
    assert documented == set(OPTIONS), documented ^ set(OPTIONS)
    # The sessions' table repeats the secret, which records need too.
    assert len(ROWS) == len(OPTIONS) + 1


@pytest.mark.parametrize(("file", "name", "default", "meaning"), ROWS)
def test_a_documented_default_is_the_default(file: str, name: str, default: str, meaning: str):
    spec = OPTIONS[name]
    if spec.default in (None, []):
        assert default in UNSET_WORDS, (file, name, default)
        return
    written = re.match(r"`([^`]*)`", default)
    assert written, (file, name, default)
    # What the documentation shows, read by the option's own rule.
    assert spec.parse(written.group(1)) == spec.default, (file, name, default)


@pytest.mark.parametrize(("file", "name", "default", "meaning"), ROWS)
def test_documented_bounds_are_the_bounds(file: str, name: str, default: str, meaning: str):
    spec = OPTIONS[name]
    for low, high in re.findall(r"\((\d+) to (\d+)\)", meaning):
        assert spec.bounds == (float(low), float(high)), (file, name)
    for high in re.findall(r"\(0 < s <= (\d+)\)", meaning):
        assert spec.bounds == (0.0, float(high)), (file, name)


def test_every_bad_value_is_one_sentence_naming_the_option() -> None:
    bad = {
        "url": "http://u:hunter2@h",
        "prefix": "a b",
        "names": "a b, c",
        "seconds": "soon",
        "whole": "many",
        "switch": "sometimes",
        "choice": "memcached",
        "secret": "hunter2",
        "token": "hunter2",
        "networks": "example.com",
    }
    for name, spec in OPTIONS.items():
        if spec.kind == "text":
            assert spec.parse("anything at all") == "anything at all"
            continue
        with pytest.raises(ConfigError) as raised:
            spec.parse(bad[spec.kind])
        message = str(raised.value)
        assert message.startswith(name + " ") and message.endswith("."), message
        assert "\n" not in message and "hunter2" not in message, message
        with pytest.raises(ConfigError, match=r"^--flag "):
            spec.parse(bad[spec.kind], "--flag")


def test_the_parsers_default_to_the_table() -> None:
    known = ["default", "stable", "assets", "templates", "routing", "groups"]
    cache = CacheSettings.parse({}, known)
    assert cache.url is OPTIONS["ormcache_redis_url"].default is None
    assert cache.prefix == CACHE_PREFIX == OPTIONS["ormcache_redis_prefix"].default
    assert cache.expire == OPTIONS["ormcache_redis_expire"].default
    assert cache.shared_caches == OPTIONS["ormcache_redis_shared_caches"].default
    assert cache.connect_timeout == OPTIONS["ormcache_redis_connect_timeout"].default
    assert cache.socket_timeout == OPTIONS["ormcache_redis_socket_timeout"].default
    assert cache.write_queue == OPTIONS["ormcache_redis_write_queue"].default
    assert cache.write_queue_bytes == OPTIONS["ormcache_redis_write_queue_mb"].default << 20
    assert cache.max_value_bytes == OPTIONS["ormcache_redis_max_value_mb"].default << 20
    assert cache.native_lookup is OPTIONS["ormcache_redis_native_lookup"].default
    sessions = SessionSettings.parse({"session_store": "redis", "session_store_url": "redis://h"})
    assert sessions == SessionSettings("redis://h")
    assert sessions.prefix == SESSION_PREFIX == OPTIONS["session_store_prefix"].default
    assert sessions.anonymous_ttl == OPTIONS["session_store_anonymous_ttl"].default
    assert sessions.timeout == OPTIONS["session_store_timeout"].default
    assert SessionSettings.parse({}) is None  # session_store defaults to filesystem
    metrics = MetricsSettings.parse({})
    assert metrics.interval == MetricsAccess().interval
    assert metrics.interval == OPTIONS["ormcache_redis_metrics_interval"].default


def test_the_engine_and_the_package_default_to_the_table(redis_url: str) -> None:
    client = RedisClient(redis_url)
    assert client.stats()["max_value_bytes"] == OPTIONS["ormcache_redis_max_value_mb"].default << 20
    cache = TwoTierCache("c", 10, client=client, codec=Codec())
    assert cache.prefix == CACHE_PREFIX
    assert cache.ttl == OPTIONS["ormcache_redis_expire"].default

    def default(function: object, parameter: str) -> object:
        return inspect.signature(function).parameters[parameter].default  # type: ignore[arg-type]

    for function in (read_cluster, exposition, MetricsPublisher, SharedTier):
        assert default(function, "prefix") == CACHE_PREFIX, function
    assert (
        default(MetricsPublisher, "interval") == OPTIONS["ormcache_redis_metrics_interval"].default
    )
    assert default(RedisSessionStore, "prefix") == SESSION_PREFIX
    assert (
        default(RedisSessionStore, "anonymous_ttl")
        == OPTIONS["session_store_anonymous_ttl"].default
    )


def test_each_default_prefix_is_written_once() -> None:
    """The literal lives in options.rs only (Rust unit tests and the test
    suites aside): everything else reads the table."""
    sources = [
        *(ROOT / "src").rglob("*.rs"),
        *(ROOT / "python").rglob("*.py"),
        *(ROOT / "odoo_addon").rglob("*.py"),
    ]
    for literal in ('"ormcache:"', '"odoo:session:"'):
        writers = []
        for path in sources:
            if "tests" in path.relative_to(ROOT).parts or "testing" in path.parts:
                continue
            text = path.read_text()
            if path.suffix == ".rs":
                text = text.split("#[cfg(test)]")[0]
            if literal in text:
                writers.append(str(path.relative_to(ROOT)))
        assert writers == ["src/settings/options.rs"], (literal, writers)


def test_the_url_options_are_the_options_of_kind_url() -> None:
    # REDIS_URL stands in for every one of them, and only for them.
    urls = {name for name, spec in OPTIONS.items() if spec.kind == "url"}
    assert urls == {"ormcache_redis_url", "session_store_url"}
    environ = {"REDIS_URL": "redis://shared:6379/0"}
    for name in OPTIONS:
        expected = environ["REDIS_URL"] if name in urls else None
        assert OptionSource(None, environ).raw(name) == expected, name


@pytest.mark.parametrize(
    "written",
    [
        "127.0.0.1",
        "10.1.2.3/8",
        "10.0.0.0/255.0.0.0",
        "10.0.0.0/0.255.255.255",
        "1.2.3.4/08",
        "0.0.0.0/0",
        "::1",
        "::/0",
        "2001:db8::1/32",
        "::ffff:1.2.3.4",
        "fe80::1%eth0/64",
        "fe80::1%eth0",
        "10.0.0.0/33",
        "1.2.3.4/+8",
        "1.2.3.4/",
        "1.2.3.4/8/8",
        "1.2.3.4/ 8",
        "10.0.0.0/255.0.255.0",
        "::/ffff::",
        "1.2.3.4%eth0",
        "fe80::1%",
        "example.com",
        "0/0",
        "010.0.0.1",
        "256.0.0.1",
        "1.2.3",
    ],
)
def test_allowed_networks_read_as_python_reads_them(written: str) -> None:
    """The metrics allow list moved from Python's ``ipaddress`` to the
    engine: it accepts the same texts, as the same networks."""
    try:
        expected = ipaddress.ip_network(written, strict=False)
    except ValueError:
        with pytest.raises(ConfigError, match=r"^ormcache_redis_metrics_allow must be"):
            MetricsSettings.parse({"ormcache_redis_metrics_allow": written})
        return
    (network,) = MetricsSettings.parse({"ormcache_redis_metrics_allow": written}).allow
    # An IPv6 scope plays no part in matching a request's address.
    address = str(expected.network_address).split("%")[0]
    assert ipaddress.ip_network(network) == ipaddress.ip_network(f"{address}/{expected.prefixlen}")
