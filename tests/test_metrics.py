"""Cluster-wide metrics: processes publish to a real Redis, a reader sums
them, and Prometheus's own text parser reads the exposition."""

from __future__ import annotations

import json
import os
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ormcache_redis import Codec, ConfigError, RedisClient, TwoTierCache, l1_memory
from ormcache_redis.cli import main
from ormcache_redis.config import OptionSource
from ormcache_redis.metrics.cluster_reading import cluster_totals, read_cluster
from ormcache_redis.metrics.process_record import process_figures
from ormcache_redis.metrics.prometheus_text import exposition
from ormcache_redis.metrics.publisher import MetricsPublisher
from ormcache_redis.metrics.record_check import checked_process
from ormcache_redis.metrics.record_format import LATENCY_BUCKETS, index_key, process_key
from ormcache_redis.odoo_support.metrics_access import load_metrics_access

SECRET = "metrics-test-secret-value"
PREFIX = "ormcache:"


def partner_name(partner_id: int) -> str:
    """Stands for a cached model method."""
    return f"partner {partner_id}"


def key(partner_id: int) -> tuple:
    return ("res.partner", partner_name, partner_id)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def method_labels(db: str = "db1") -> tuple[tuple[str, str], ...]:
    return (("cache", "default"), ("db", db), ("method", f"{__name__}.partner_name"))


def run_process(url: str, hits: int) -> None:
    """A worker: fills Redis through one cache, reads it back through a cold
    one (L2 hits), hits L1 ``hits`` times, publishes once and exits."""
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        return
    code = 1
    try:
        client = RedisClient(url)
        make = lambda: TwoTierCache(  # noqa: E731
            "default", 100, client=client, codec=Codec(), namespace=b"db1:r1", secret=SECRET
        )
        writer, reader = make(), make()
        try:
            writer[key(1)]  # the second process finds the first one's value
        except KeyError:
            writer[key(1)] = partner_name(1)
        client.flush(5)
        assert reader[key(1)] == "partner 1"  # L2 hit
        for _ in range(hits):
            assert reader[key(1)] == "partner 1"  # L1 hits
        publisher = MetricsPublisher(
            client,
            lambda: process_figures({"db1": {"default": reader}}, clients={"cache": client}),
            prefix=PREFIX,
        )
        assert publisher.publish()
        assert client.flush(5)
        code = 0
    finally:
        os._exit(code)


def test_exposition_sums_every_process(redis_url: str, raw: RedisClient) -> None:
    run_process(redis_url, hits=3)
    run_process(redis_url, hits=5)
    text = exposition(RedisClient(redis_url), PREFIX)
    values = samples(text)
    labels = method_labels()
    assert values[("ormcache_redis_processes", ())] == 2
    assert values[("ormcache_redis_redis_up", ())] == 1
    assert values[("ormcache_redis_l1_hits_total", labels)] == 8
    assert values[("ormcache_redis_l2_hits_total", labels)] == 2
    assert values[("ormcache_redis_computations_total", labels)] == 0  # the reader computed none
    assert values[("ormcache_redis_hit_ratio", labels)] == 1.0
    # Two L2 reads, one per process: the histogram counts them, cumulatively.
    assert values[("ormcache_redis_redis_latency_seconds_count", labels)] == 2
    assert values[("ormcache_redis_redis_latency_seconds_sum", labels)] > 0
    buckets = [
        values[
            ("ormcache_redis_redis_latency_seconds_bucket", tuple(sorted((*labels, ("le", bound)))))
        ]
        for bound in (*map(str, LATENCY_BUCKETS), "+Inf")
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 2
    assert values[("ormcache_redis_processes_redis_unhealthy", (("role", "cache"),))] == 0
    # Every process has its own key, with a TTL, listed in the index.
    index = raw.execute("HGETALL", index_key(PREFIX))
    assert len(index) == 4
    for process in index[::2]:
        ttl = raw.execute("PTTL", process_key(PREFIX, process.decode()))
        assert 0 < ttl <= 45_000


def test_computations_and_misses_are_published(redis_url: str) -> None:
    client = RedisClient(redis_url)
    cache = TwoTierCache(
        "default", 100, client=client, codec=Codec(), namespace=b"db2:r1", secret=SECRET
    )
    for partner_id in (1, 2, 3):
        with pytest.raises(KeyError):
            cache[key(partner_id)]
        cache[key(partner_id)] = partner_name(partner_id)
    figures = process_figures({"db2": {"default": cache}}, clients={"cache": client})
    MetricsPublisher(client, lambda: figures, prefix=PREFIX).publish()
    assert client.flush(5)
    values = samples(exposition(client, PREFIX))
    labels = method_labels("db2")
    assert values[("ormcache_redis_misses_total", labels)] == 3
    assert values[("ormcache_redis_computations_total", labels)] == 3
    assert values[("ormcache_redis_compute_seconds_total", labels)] > 0
    assert values[("ormcache_redis_hit_ratio", labels)] == 0.0
    assert values[("ormcache_redis_cache_entries", (("cache", "default"), ("db", "db2")))] == 3
    # No secret, address or value in what was published.
    processes = client.execute("HGETALL", index_key(PREFIX))[::2]
    for value in client.pipeline([("GET", process_key(PREFIX, p.decode())) for p in processes]):
        assert SECRET.encode() not in value and b"redis://" not in value
        assert b"partner 1" not in value


def test_dead_processes_leave_the_index(redis_url: str, raw: RedisClient) -> None:
    client = RedisClient(redis_url)
    raw.execute("HSET", index_key(PREFIX), "999-expired", int(time.time()) - 10)
    raw.execute("HSET", index_key(PREFIX), "998-keygone", int(time.time()) + 60)
    raw.execute("HSET", index_key(PREFIX), "bad id with spaces", int(time.time()) + 60)
    figures = read_cluster(client, PREFIX)
    assert figures.process_count == 0 and figures.reachable
    # Dead processes leave quietly; a malformed entry is counted.
    assert figures.skipped_reasons == {"bad index entry": 1}
    assert raw.execute("HGETALL", index_key(PREFIX)) == []


def good_record(**method: object) -> dict:
    """A record in the published format, with one method of the given figures."""
    return {
        "format": 1,
        "databases": {
            "db1": {
                "caches": {
                    "default": {
                        "hits": 5,
                        "misses": 1,
                        "entries": 2,
                        "methods": {
                            "m.good": {"l1_hits": 4, "latency": [0] * (len(LATENCY_BUCKETS) + 1)}
                            | method
                        },
                    }
                },
                "dropped": {"rollback": 1},
            }
        },
        "clients": {"cache": {"healthy": 1, "calls": 3}},
        "sessions": {"saved": 2},
    }


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xff\xfe garbage",
        b"[1, 2, 3]",
        b'{"format": 2}',
        b"null",
        b"[" * 100_000,
        b'{"format": 1, "databases": ' + b"1" * 10_000 + b"}",
        json.dumps({"format": 1, "databases": {"x" * 1000: {}}}).encode(),
    ],
)
def test_garbage_from_redis_is_skipped(redis_url: str, raw: RedisClient, garbage: bytes) -> None:
    raw.execute("SET", process_key(PREFIX, "1-garbage"), garbage, "EX", 60)
    raw.execute("HSET", index_key(PREFIX), "1-garbage", int(time.time()) + 60)
    client = RedisClient(redis_url)
    values = samples(exposition(client, PREFIX))
    assert (
        values[("ormcache_redis_processes", ())] + values[("ormcache_redis_processes_skipped", ())]
        == 1
    )
    assert not any(name.startswith("ormcache_redis_l1_hits") for name, _ in values)


def test_the_l1_memory_of_every_process_is_published(redis_url: str, capsys) -> None:
    """Each process's L1 bytes, bound, byte evictions and values too large
    reach the sums, Prometheus and the ``stats`` command."""
    client = RedisClient(redis_url)
    cache = TwoTierCache("default", 100, client=None, codec=Codec(), max_bytes=10_000)
    cache[key(1)] = "x" * 2_000
    cache[key(2)] = "y" * 20_000  # larger than the cache's bound: not kept
    figures = process_figures({"db3": {"default": cache}})
    memory = l1_memory()
    assert figures["l1"] == {name: memory[name] for name in figures["l1"]}
    assert figures["l1"]["too_large"] >= 1 and figures["l1"]["bytes"] >= cache.total_bytes > 2_000
    for _ in range(2):  # two processes (each publisher names one) with these figures
        assert MetricsPublisher(client, lambda: figures, prefix=PREFIX).publish()
    assert client.flush(5)
    values = samples(exposition(client, PREFIX))
    l1 = {name: 2 * figures["l1"][name] for name in figures["l1"]}
    assert values[("ormcache_redis_l1_bytes", ())] == l1["bytes"]
    assert values[("ormcache_redis_l1_max_bytes", ())] == l1["max_bytes"]
    assert values[("ormcache_redis_l1_byte_evictions_total", ())] == l1["byte_evictions"]
    assert values[("ormcache_redis_l1_too_large_total", ())] == l1["too_large"]
    cache_labels = (("cache", "default"), ("db", "db3"))
    assert values[("ormcache_redis_cache_bytes", cache_labels)] == 2 * cache.total_bytes
    assert cluster_totals(read_cluster(client, PREFIX))["l1"] == l1
    assert main(["stats", "--url", redis_url]) == 0
    assert f"L1 {l1['bytes'] / 2**20:.1f} MiB of {l1['max_bytes'] / 2**20:.0f} MiB" in (
        capsys.readouterr().out
    )
    # A record whose L1 figures are not counts is refused whole.
    assert checked_process(json.dumps(good_record() | {"l1": {"bytes": -1}})) is None
    assert checked_process(json.dumps(good_record()))["l1"]["max_bytes"] == 0  # absent: 0


def test_a_record_is_checked_whole() -> None:
    """One value out of type or range and the whole record is refused:
    figures are never half-summed from a tampered record."""
    checked = checked_process(json.dumps(good_record()))
    assert checked is not None
    method = checked["databases"]["db1"]["caches"]["default"]["methods"]["m.good"]
    assert method["l1_hits"] == 4 and method["misses"] == 0  # absent counts are 0
    assert checked["clients"]["cache"]["calls"] == 3 and checked["sessions"]["saved"] == 2
    for bad in ({"l1_hits": -4}, {"l1_hits": 4.5}, {"l1_hits": True}, {"l1_hits": 2**70}):
        assert checked_process(json.dumps(good_record(**bad))) is None, bad
    assert checked_process(json.dumps(good_record(latency=[1, 2]))) is None
    # Unknown fields (a newer publisher's) are ignored, never passed on.
    checked = checked_process(json.dumps(good_record(new_counter=7) | {"new": {"x": 1}}))
    assert checked is not None and "new" not in checked
    assert (
        "new_counter" not in checked["databases"]["db1"]["caches"]["default"]["methods"]["m.good"]
    )
    assert checked_process(b"x" * (5 << 20)) is None


def test_a_redis_that_does_not_answer_is_reported_down() -> None:
    client = RedisClient("redis://:hunter2@127.0.0.1:1/0", socket_timeout=0.2)
    text = exposition(client)
    values = samples(text)
    assert values[("ormcache_redis_redis_up", ())] == 0
    assert values[("ormcache_redis_processes", ())] == 0
    assert "hunter2" not in text


def test_session_counts_are_summed(redis_url: str) -> None:
    client = RedisClient(redis_url)
    figures = process_figures({}, session_counts={"saved": 4, "forged": 1})
    MetricsPublisher(client, lambda: figures, prefix=PREFIX).publish()
    assert client.flush(5)
    totals = cluster_totals(read_cluster(client, PREFIX))
    assert totals["sessions"] == {
        "saved": 4,
        "forged": 1,
        "no_key": 0,
        "unreadable": 0,
        "oversized": 0,
    }
    values = samples(exposition(client, PREFIX))
    assert values[("ormcache_redis_sessions_saved_total", ())] == 4
    assert values[("ormcache_redis_sessions_refused_total", (("reason", "forged"),))] == 1


def test_publisher_thread_publishes_in_each_process(redis_url: str) -> None:
    client = RedisClient(redis_url)
    publisher = MetricsPublisher(client, lambda: process_figures({}), prefix=PREFIX, interval=0.05)
    publisher.start()
    publisher.start()  # idempotent
    try:
        check_publisher_in_a_fork(client, publisher)
    finally:
        publisher.stop()


def check_publisher_in_a_fork(client: RedisClient, publisher: MetricsPublisher) -> None:
    deadline = time.monotonic() + 5
    while publisher.published < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert publisher.published >= 2
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            before = publisher.process
            publisher.start()  # the child has no thread: it starts its own
            end = time.monotonic() + 5
            while time.monotonic() < end and read_cluster(client, PREFIX).process_count < 2:
                time.sleep(0.02)
            code = 0 if read_cluster(client, PREFIX).process_count == 2 and before else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_bad_interval_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        MetricsPublisher(RedisClient(redis_url), dict, interval=0)


# --------------------------------------------------------------------------- route options


def options(**values: str) -> OptionSource:
    return OptionSource(values.get, environ={})


def test_metrics_route_is_closed_by_default() -> None:
    access = load_metrics_access(options())
    assert not access.open
    assert not access.allows("127.0.0.1", None)
    assert access.interval == 15.0


def test_metrics_route_options_allow_addresses_and_tokens() -> None:
    access = load_metrics_access(
        options(
            ormcache_redis_metrics_allow="127.0.0.1, 10.0.0.0/8,::1",
            ormcache_redis_metrics_token="k" * 32,
            ormcache_redis_metrics_interval="5",
        )
    )
    assert access.open and access.interval == 5.0
    assert access.allows("10.1.2.3", None) and access.allows("::ffff:127.0.0.1", None)
    assert access.allows("::1", None) and not access.allows("192.0.2.1", None)
    assert access.allows("192.0.2.1", "Bearer " + "k" * 32)
    assert not access.allows("192.0.2.1", "Bearer " + "k" * 31)
    assert not access.allows("not an address", "Basic " + "k" * 32)
    assert "k" * 32 not in repr(access)


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("ormcache_redis_metrics_allow", "127.0.0.1, example.com", "IP addresses or networks"),
        ("ormcache_redis_metrics_allow", "10.0.0.0/33", "IP addresses or networks"),
        ("ormcache_redis_metrics_token", "short", "at least 32 characters"),
        ("ormcache_redis_metrics_token", "a" * 20 + " " + "b" * 20, "without spaces"),
        ("ormcache_redis_metrics_interval", "0", "seconds"),
        ("ormcache_redis_metrics_interval", "soon", "seconds"),
        ("ormcache_redis_metrics_interval", "7200", "at most 3600"),
    ],
)
def test_bad_metrics_options_are_one_sentence_naming_the_option(
    name: str, value: str, sentence: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_metrics_access(options(**{name: value}))
    message = str(raised.value)
    assert message.startswith(name) and sentence in message
    assert message.count(". ") == 0 and message.endswith(".")
    if name.endswith("token"):
        assert value not in message  # a secret is never repeated


def test_metrics_options_come_from_the_environment_too() -> None:
    source = OptionSource(None, environ={"ORMCACHE_REDIS_METRICS_ALLOW": "127.0.0.1"})
    assert load_metrics_access(source).allows("127.0.0.1", None)
