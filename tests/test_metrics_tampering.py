"""Metrics records planted by someone who can write to Redis (issue 17).

Each record is planted from another client in the suite's real Redis, next
to records of honest processes. Every output form (``ormcache-redis stats``,
``stats --json`` and the Prometheus text the metrics route serves) runs as
a subprocess measured from outside: it ends within the issue's bounds
(5 s, 300 MB of peak RSS), shows the honest processes, and counts what it
skipped. The bounds are the issue's goals, not tight figures: the machine
that runs the suite is shared.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from test_metrics import samples

from ormcache_redis import RedisClient
from ormcache_redis.metrics.cluster_reading import (
    MAX_INDEX_ENTRIES,
    ClusterFigures,
    cluster_totals,
    read_cluster,
)
from ormcache_redis.metrics.cluster_sums import MAX_SERIES
from ormcache_redis.metrics.process_record import encode_figures, process_figures
from ormcache_redis.metrics.prometheus_text import exposition, render
from ormcache_redis.metrics.publisher import MetricsPublisher
from ormcache_redis.metrics.record_check import check_process
from ormcache_redis.metrics.record_format import (
    LATENCY_BUCKETS,
    MAX_CACHE_NAME,
    MAX_DB_NAME,
    MAX_NAME,
    MAX_PROCESS_BYTES,
    MAX_RECORD_SERIES,
    index_key,
    process_key,
)
from ormcache_redis.testing.topologies import RedisClusterSet

PREFIX = "ormcache:"
SECONDS = 5.0
MEGABYTES = 300
LATENCY = [0] * (len(LATENCY_BUCKETS) + 1)
HONEST_METHOD = "odoo.addons.base.models.res_partner.Partner._compute_display_name"


def honest_record(hits: int = 5) -> bytes:
    """What an honest process publishes (the shape of process_figures)."""
    method = {"l1_hits": hits, "l2_hits": 1, "misses": 1, "latency": [0, 1, *LATENCY[2:]]}
    return json.dumps(
        {
            "format": 1,
            "databases": {
                "prod": {
                    "caches": {
                        "default": {"hits": hits, "misses": 1, "methods": {HONEST_METHOD: method}}
                    },
                    "dropped": {"rollback": 1},
                }
            },
            "clients": {"cache": {"calls": 10, "healthy": 1}},
            "sessions": {"saved": 1},
        },
        separators=(",", ":"),
    ).encode()


@cache
def huge_record(size: int = 4 << 20) -> bytes:
    """A record of ``size`` bytes that would be valid but for its size:
    long names of databases, caches and methods (the issue's 4 MiB)."""
    caches, total, method = {}, 0, 0
    while total < size - 4096:
        methods = {}
        for _ in range(4096):
            methods[f"{'m' * 240}{method:09d}"] = {"latency": LATENCY}
            method += 1
            total += 300
        caches[f"{'c' * 250}{len(caches):06d}"] = {"methods": methods}
    data = json.dumps({"format": 1, "databases": {"d" * 256: {"caches": caches}}}).encode()
    return data + b" " * (size - len(data)) if len(data) < size else data


@cache
def record_at_the_caps(number: int) -> bytes:
    """A record within every cap, each of its names as long as allowed and
    its own: the most a valid record can cost a reader."""
    methods = {
        f"{'m' * (MAX_NAME - 16)}{number:06d}.{method:09d}": {"l1_hits": 2**62, "latency": LATENCY}
        for method in range(MAX_RECORD_SERIES - 2)
    }
    data = json.dumps(
        {
            "format": 1,
            "databases": {
                f"{'d' * (MAX_DB_NAME - 6)}{number:06d}": {
                    "caches": {"c" * MAX_CACHE_NAME: {"methods": methods}}
                }
            },
        },
        separators=(",", ":"),
    ).encode()
    assert check_process(data)[0] is not None and len(data) <= MAX_PROCESS_BYTES
    return data


def plant(raw: RedisClient, process: str, value: bytes, expiry: object = None) -> None:
    raw.execute("SET", process_key(PREFIX, process), value, "EX", 300)
    raw.execute(
        "HSET", index_key(PREFIX), process, int(time.time()) + 60 if expiry is None else expiry
    )


def plant_honest(raw: RedisClient, count: int) -> None:
    # Named to sort after the planted ones: read last.
    for number in range(count):
        plant(raw, f"9-honest{number:03d}", honest_record())


# --------------------------------------------------------------------------- output forms

# The metrics route serves exposition() of the addon's client and prefix.
ROUTE = (
    "import sys; from ormcache_redis import RedisClient; "
    "from ormcache_redis.metrics.prometheus_text import exposition; "
    "sys.stdout.write(exposition(RedisClient(sys.argv[1], socket_timeout=5.0), 'ormcache:'))"
)
# Runs a command and reports its peak RSS (kB) on the last line of stderr.
MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def cli() -> list[str]:
    script = Path(sys.executable).with_name("ormcache-redis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from ormcache_redis.cli import main; raise SystemExit(main())"]


FORMS = {
    "stats": lambda url: [*cli(), "stats", "--url", url],
    "stats --json": lambda url: [*cli(), "stats", "--json", "--url", url],
    "route": lambda url: [sys.executable, "-c", ROUTE, url],
}


@dataclass
class Run:
    seconds: float
    megabytes: float
    returncode: int
    stdout: str
    stderr: str


def run_form(form: str, url: str) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *FORMS[form](url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    seconds = time.monotonic() - started
    *stderr, peak = done.stderr.splitlines()
    return Run(seconds, int(peak) / 1024, done.returncode, done.stdout, "\n".join(stderr))


@dataclass
class Shown:
    processes: int
    skipped: int
    dropped_series: int
    honest_hits: float | None
    """L1 hits of the honest method, summed (None: not shown)."""


def shown(form: str, output: str) -> Shown:
    """What an output form says, read as its reader would."""
    if form == "stats":
        line = re.search(r"processes (\d+) \(unreadable (\d+)\)", output)
        assert line, output[-2000:]
        dropped = re.search(r"over \d+ names\): (\d+)", output)
        honest = re.search(rf"{re.escape(HONEST_METHOD[-48:])}\s+(\d+)", output)
        return Shown(
            int(line[1]),
            int(line[2]),
            int(dropped[1]) if dropped else 0,
            float(honest[1]) if honest else None,
        )
    if form == "stats --json":
        totals = json.loads(output)
        methods = totals["databases"].get("prod", {}).get("caches", {}).get("default", {})
        honest_method = methods.get("methods", {}).get(HONEST_METHOD)
        return Shown(
            totals["processes"],
            totals["skipped_processes"],
            totals["dropped_series"],
            honest_method["l1_hits"] if honest_method else None,
        )
    values = samples(output)
    labels = (("cache", "default"), ("db", "prod"), ("method", HONEST_METHOD))
    return Shown(
        int(values[("ormcache_redis_processes", ())]),
        int(values[("ormcache_redis_processes_skipped", ())]),
        int(values[("ormcache_redis_series_dropped", ())]),
        values.get(("ormcache_redis_l1_hits_total", labels)),
    )


def within_bounds(run: Run) -> None:
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.seconds <= SECONDS, f"{run.seconds:.2f} s"
    assert run.megabytes <= MEGABYTES, f"{run.megabytes:.0f} MB"


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("form", FORMS)
def test_oversized_records_cost_the_reader_nothing(
    redis_url: str, raw: RedisClient, form: str
) -> None:
    """16 records of 4 MiB (on the old code, 4 of them made ``stats`` take
    5.3 s and 474 MB and 16 a MemoryError): Redis measures them, they never
    reach the reader."""
    for number in range(16):
        plant(raw, f"1-huge{number:02d}", huge_record())
    plant_honest(raw, 3)
    run = run_form(form, redis_url)
    within_bounds(run)
    assert shown(form, run.stdout) == Shown(3, 16, 0, 15)
    if form == "stats":
        assert "skipped 16: 16 too big" in run.stdout
    if form == "stats --json":
        assert json.loads(run.stdout)["skipped_reasons"] == {"too big": 16}


@pytest.mark.parametrize("form", FORMS)
def test_records_at_every_cap_stay_within_bounds(
    redis_url: str, raw: RedisClient, form: str
) -> None:
    """Six valid records each with as many names, as long, as the caps let
    them, all their own: the sums keep the names most processes report
    (the honest ones), the others are left out and counted."""
    for number in range(6):
        plant(raw, f"1-full{number}", record_at_the_caps(number))
    plant_honest(raw, 3)
    run = run_form(form, redis_url)
    within_bounds(run)
    result = shown(form, run.stdout)
    assert result.processes == 9 and result.skipped == 0 and result.honest_hits == 15
    # The planted names are reported once each; the 4 honest ones, thrice, are kept.
    assert result.dropped_series == 6 * MAX_RECORD_SERIES + 4 - MAX_SERIES
    assert len(run.stdout) < 64 << 20


def test_one_wrongtype_key_hides_nothing(redis_url: str, raw: RedisClient) -> None:
    """On the old code the batch's WRONGTYPE error hid all 99 others."""
    raw.execute("HSET", process_key(PREFIX, "0-wrongtype"), "field", "value")
    raw.execute("HSET", index_key(PREFIX), "0-wrongtype", int(time.time()) + 60)
    raw.execute("RPUSH", process_key(PREFIX, "5-list"), "x")
    raw.execute("HSET", index_key(PREFIX), "5-list", int(time.time()) + 60)
    plant_honest(raw, 99)
    figures = read_cluster(RedisClient(redis_url), PREFIX)
    assert figures.error is None
    assert figures.process_count == 99
    assert figures.skipped_reasons == {"not a string": 2}
    values = samples(exposition(RedisClient(redis_url), PREFIX))
    assert values[("ormcache_redis_processes", ())] == 99
    assert values[("ormcache_redis_processes_skipped", ())] == 2


@pytest.mark.parametrize(
    "expiry",
    ["9" * 5000, "9" * 20, "-5", "12.5", "soon", "", "\u0661\u0662"],
)
def test_an_absurd_expiry_is_skipped_and_removed(
    redis_url: str, raw: RedisClient, expiry: str
) -> None:
    """On the old code a 5,000-digit expiry made read_cluster raise
    ValueError (int() of more than 4,300 digits)."""
    plant(raw, "1-absurd", honest_record(), expiry=expiry)
    plant_honest(raw, 2)
    figures = read_cluster(RedisClient(redis_url), PREFIX)
    assert figures.process_count == 2
    assert figures.skipped_reasons == {"bad index entry": 1}
    assert raw.execute("HEXISTS", index_key(PREFIX), "1-absurd") == 0


def test_absurd_index_entries_are_removed_by_redis(redis_url: str, raw: RedisClient) -> None:
    """Names or expiries longer than any publisher writes never leave Redis."""
    raw.execute("HSET", index_key(PREFIX), "1-" + "x" * 10_000, int(time.time()) + 60)
    raw.execute("HSET", index_key(PREFIX), "1-long-expiry", "1" * 100_000)
    raw.execute("HSET", index_key(PREFIX), "bad id with spaces", int(time.time()) + 60)
    plant_honest(raw, 2)
    figures = read_cluster(RedisClient(redis_url), PREFIX)
    assert figures.process_count == 2
    assert figures.skipped_reasons == {"bad index entry": 3}
    assert raw.execute("HLEN", index_key(PREFIX)) == 2


# --------------------------------------------------------------------------- bad records


def variant(**changes: object) -> bytes:
    """The honest record with some of its parts replaced."""
    data = json.loads(honest_record())
    database = data["databases"]["prod"]
    cache_ = database["caches"]["default"]
    method = cache_["methods"][HONEST_METHOD]
    for path, value in changes.items():
        target = {"record": data, "database": database, "cache": cache_, "method": method}[
            path.split("__")[0]
        ]
        target[path.split("__")[1]] = value
    return json.dumps(data).encode()


def with_name(kind: str, name: str) -> bytes:
    data = json.loads(honest_record())
    database = data["databases"]["prod"]
    if kind == "database":
        data["databases"] = {name: database}
    elif kind == "cache":
        database["caches"] = {name: database["caches"]["default"]}
    elif kind == "method":
        methods = database["caches"]["default"]["methods"]
        methods[name] = methods.pop(HONEST_METHOD)
    else:
        database["dropped"] = {name: 1}
    return json.dumps(data).encode()


def too_many_series() -> bytes:
    methods = {f"m{n}": {"latency": LATENCY} for n in range(MAX_RECORD_SERIES)}
    return json.dumps(
        {"format": 1, "databases": {"prod": {"caches": {"default": {"methods": methods}}}}}
    ).encode()


BAD_RECORDS = {
    "negative count": variant(method__l1_hits=-1),
    "float count": variant(method__l1_hits=1.5),
    "boolean count": variant(method__misses=True),
    "count over 2**63": variant(cache__hits=2**63),
    "5000-digit count": variant(cache__hits=0).replace(b'"hits": 0', b'"hits": ' + b"9" * 5000),
    "NaN count": variant(method__l2_hits=0).replace(b'"l2_hits": 0', b'"l2_hits": NaN'),
    "string count": variant(method__l1_hits="12"),
    "databases a list": variant(record__databases=["prod"]),
    "caches a string": variant(database__caches="default"),
    "methods a list": variant(cache__methods=[HONEST_METHOD]),
    "latency an object": variant(method__latency={"0.1": 1}),
    "latency too short": variant(method__latency=LATENCY[1:]),
    "latency nested": variant(method__latency=[[0]] * len(LATENCY)),
    "client healthy 2": variant(record__clients={"cache": {"healthy": 2}}),
    "sessions a list": variant(record__sessions=[1]),
    "dropped a string": variant(database__dropped={"rollback": "1"}),
    "format 2": variant(record__format=2),
    "format true": variant(record__format=True),
    "no format": b'{"databases": {}}',
    "not UTF-8": b'{"format": 1, "databases": {"\xff\xfe": {}}}',
    "UTF-16": honest_record().decode().encode("utf-16"),
    "not JSON": b"\x00\x01garbage",
    "a list": b"[1, 2, 3]",
    "empty": b"",
    "deep nesting": b"[" * 100_000,
    "lone surrogate name": with_name("method", "\ud800"),
    "control character name": with_name("cache", "default\nfake_metric 1"),
    "line separator name": with_name("database", "prod\u2028x"),
    "empty name": with_name("reason", ""),
    "long method name": with_name("method", "m" * (MAX_NAME + 1)),
    "long database name": with_name("database", "d" * (MAX_DB_NAME + 1)),
    "huge label": with_name("method", "x" * 200_000),
    "too many series": too_many_series(),
}


@pytest.mark.parametrize("bad", BAD_RECORDS)
def test_a_bad_record_is_skipped_and_counted(redis_url: str, raw: RedisClient, bad: str) -> None:
    plant(raw, "1-bad", BAD_RECORDS[bad])
    plant_honest(raw, 2)
    figures = read_cluster(RedisClient(redis_url), PREFIX)
    assert figures.error is None
    assert figures.process_count == 2 and figures.skipped == 1, figures.skipped_reasons
    totals = cluster_totals(figures)
    methods = totals["databases"]["prod"]["caches"]["default"]["methods"]
    assert list(methods) == [HONEST_METHOD] and methods[HONEST_METHOD]["l1_hits"] == 10
    assert list(totals["databases"]) == ["prod"]
    assert totals["sessions"]["saved"] == 2 and totals["clients"]["cache"]["calls"] == 20
    # The reason names what is wrong, never the record's own text.
    (reason,) = totals["skipped_reasons"]
    assert len(reason) < 100 and "ffff" not in reason and "xxx" not in reason
    values = samples(render(totals))
    assert values[("ormcache_redis_processes_skipped", ())] == 1
    assert values[("ormcache_redis_processes", ())] == 2


def test_unknown_fields_are_ignored_and_never_shown(redis_url: str, raw: RedisClient) -> None:
    """A newer publisher may add fields: the record counts, its known
    figures are summed, and nothing unknown reaches any output."""
    data = json.loads(honest_record())
    data["extra"] = {"x" * 100: list(range(100))}
    data["clients"]["zzrole"] = {"healthy": 1, "calls": 5}
    data["databases"]["prod"]["caches"]["default"]["methods"][HONEST_METHOD]["new"] = [1]
    plant(raw, "1-newer", json.dumps(data).encode())
    figures = read_cluster(RedisClient(redis_url), PREFIX)
    assert figures.process_count == 1 and figures.skipped == 0
    totals = cluster_totals(figures)
    assert set(totals["clients"]) == {"cache"}
    text = render(totals) + json.dumps(totals)
    assert "xxxx" not in text and "zzrole" not in text and '"new"' not in text


def test_values_of_any_size_stay_numbers(redis_url: str, raw: RedisClient) -> None:
    """The largest counts, summed over processes, render as numbers."""
    data = json.loads(honest_record())
    data["databases"]["prod"]["caches"]["default"]["methods"][HONEST_METHOD]["l1_hits"] = 2**63 - 1
    for number in range(3):
        plant(raw, f"1-big{number}", json.dumps(data).encode())
    values = samples(exposition(RedisClient(redis_url), PREFIX))
    labels = (("cache", "default"), ("db", "prod"), ("method", HONEST_METHOD))
    assert values[("ormcache_redis_l1_hits_total", labels)] == 3 * float(2**63 - 1)


# --------------------------------------------------------------------------- the index


@pytest.mark.parametrize("tampered", ["a string", "too many entries"])
def test_a_bad_index_is_deleted_and_rebuilt_by_the_publishers(
    redis_url: str, raw: RedisClient, tampered: str
) -> None:
    if tampered == "a string":
        raw.execute("SET", index_key(PREFIX), "x" * 1000)
    else:
        fields = [part for n in range(MAX_INDEX_ENTRIES + 1) for part in (f"1-p{n}", 1)]
        raw.execute("HSET", index_key(PREFIX), *fields)
    client = RedisClient(redis_url)
    figures = read_cluster(client, PREFIX)
    assert figures.reachable and figures.skipped_reasons == {"bad index": 1}
    assert figures.error is not None and "index" in figures.error
    assert raw.execute("EXISTS", index_key(PREFIX)) == 0
    # Each publisher lists itself again at its next round.
    publisher = MetricsPublisher(client, lambda: process_figures({}), prefix=PREFIX)
    assert publisher.publish() and client.flush(5)
    assert read_cluster(client, PREFIX).process_count == 1


def test_stats_reports_a_bad_index_and_exits_1(redis_url: str, raw: RedisClient) -> None:
    raw.execute("SET", index_key(PREFIX), "x")
    done = subprocess.run(
        [*cli(), "stats", "--url", redis_url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "metrics index" in done.stderr and "skipped 1: 1 bad index" in done.stdout


# --------------------------------------------------------------------------- ACL


@pytest.fixture
def acl_url(redis_server, redis_url: str) -> Iterator[Callable[..., str]]:
    """Makes an ACL user with the given rules; deleted afterwards."""
    made: list[str] = []

    def make(name: str, *rules: str) -> str:
        redis_server.command("ACL", "SETUSER", name, "reset", "on", ">pw-metrics", *rules)
        made.append(name)
        return redis_url.replace("redis://", f"redis://{name}:pw-metrics@")

    yield make
    for name in made:
        redis_server.command("ACL", "DELUSER", name)


# SECURITY.md's list before this change: no +strlen.
OLD_ACL = (
    "~ormcache:*", "-@all", "+get", "+set", "+expire", "+hget", "+hset", "+hsetnx",
    "+hgetall", "+hdel", "+del", "+exists", "+pttl", "+pexpire", "+multi", "+exec",
    "+eval", "+ping", "+auth", "+select",
)  # fmt: skip


def test_an_acl_without_strlen_still_reads_within_the_caps(
    raw: RedisClient, acl_url: Callable[..., str]
) -> None:
    """The script then reads a record inside Redis to measure it: the
    reader still never receives one too big."""
    plant(raw, "1-huge", huge_record())
    raw.execute("HSET", process_key(PREFIX, "2-wrongtype"), "f", "v")
    raw.execute("HSET", index_key(PREFIX), "2-wrongtype", int(time.time()) + 60)
    plant_honest(raw, 2)
    figures = read_cluster(RedisClient(acl_url("old", *OLD_ACL)), PREFIX)
    assert figures.error is None and figures.process_count == 2
    assert figures.skipped_reasons == {"too big": 1, "not a string": 1}


def test_an_acl_refusing_the_scripts_is_an_error_not_an_exception(
    raw: RedisClient, acl_url: Callable[..., str]
) -> None:
    plant_honest(raw, 1)
    url = acl_url("noeval", *OLD_ACL, "-eval")
    figures = read_cluster(RedisClient(url), PREFIX)
    assert figures.reachable and figures.error is not None and "no permissions" in figures.error
    assert samples(exposition(RedisClient(url), PREFIX))[("ormcache_redis_redis_up", ())] == 1
    done = subprocess.run(
        [*cli(), "stats", "--url", url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "no permissions" in done.stderr
    assert "pw-metrics" not in done.stderr + done.stdout


# --------------------------------------------------------------------------- publishers


class EngineCache:
    """Stands for an engine cache: what ``stats()`` returns."""

    def __init__(self, methods: dict[str, int]) -> None:
        self.methods = methods

    def stats(self) -> dict:
        return {
            "hits": sum(self.methods.values()),
            "methods": {name: {"l1_hits": hits} for name, hits in self.methods.items()},
        }


def test_a_publisher_keeps_its_busiest_methods_within_the_caps(redis_url: str) -> None:
    """Readers would skip a record over a cap: a process with more methods
    publishes those of most lookups, checked by the readers' own routine."""
    methods = {f"module.Model.method_{n:05d}": n for n in range(3000)}
    methods["m" * (MAX_NAME + 1)] = 10**6  # a name readers refuse: left out
    figures = process_figures({"prod": {"default": EngineCache(methods)}})
    assert "m" * (MAX_NAME + 1) not in figures["databases"]["prod"]["caches"]["default"]["methods"]
    data, reason = encode_figures(figures)
    assert data is not None and "series" in reason
    checked, _ = check_process(data)
    assert checked is not None
    kept = checked["databases"]["prod"]["caches"]["default"]["methods"]
    assert len(kept) == MAX_RECORD_SERIES - 2  # besides the database and the cache
    assert min(method["l1_hits"] for method in kept.values()) == 3000 - len(kept)
    client = RedisClient(redis_url)
    publisher = MetricsPublisher(client, lambda: figures, prefix=PREFIX)
    assert publisher.publish() and client.flush(5)
    totals = cluster_totals(read_cluster(client, PREFIX))
    assert totals["processes"] == 1 and totals["skipped_processes"] == 0


def test_names_are_escaped_in_the_exposition() -> None:
    data = json.loads(honest_record())
    methods = data["databases"]["prod"]["caches"]["default"]["methods"]
    methods['odd "name" \\ with,method="x"'] = methods.pop(HONEST_METHOD)
    checked, reason = check_process(json.dumps(data))
    assert checked is not None, reason
    text = render(cluster_totals(ClusterFigures(reachable=True, processes=[checked])))
    labels = (("cache", "default"), ("db", "prod"), ("method", 'odd "name" \\ with,method="x"'))
    values = samples(text)
    assert values[("ormcache_redis_l1_hits_total", labels)] == 5
    assert values[("ormcache_redis_redis_latency_seconds_count", labels)] == 1
    bucket = tuple(sorted((*labels, ("le", "0.00025"))))
    assert values[("ormcache_redis_redis_latency_seconds_bucket", bucket)] == 1


# --------------------------------------------------------------------------- Redis Cluster


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with RedisClusterSet(masters=3, replicas=0) as cluster:
        yield cluster.url()


@pytest.mark.slow
def test_a_cluster_reads_every_slot_and_skips_bad_keys(cluster_url: str) -> None:
    """Keys of processes lie in every slot: each is measured where it lives."""
    raw = RedisClient(cluster_url, socket_timeout=5.0)
    prefix = f"t{time.monotonic_ns()}:"
    expiry = int(time.time()) + 60
    processes = [f"9-honest{n:03d}" for n in range(40)]
    for process in processes:
        raw.execute("SET", process_key(prefix, process), honest_record(), "EX", 60)
    raw.execute("SET", process_key(prefix, "1-huge"), b"x" * (MAX_PROCESS_BYTES + 1), "EX", 60)
    raw.execute("HSET", process_key(prefix, "2-wrongtype"), "f", "v")
    raw.execute("EXPIRE", process_key(prefix, "2-wrongtype"), 60)
    entries = [part for p in [*processes, "1-huge", "2-wrongtype"] for part in (p, expiry)]
    raw.execute("HSET", index_key(prefix), *entries)
    figures = read_cluster(RedisClient(cluster_url, socket_timeout=5.0), prefix)
    assert figures.error is None
    assert figures.process_count == 40
    assert figures.skipped_reasons == {"not a string": 1, "too big": 1}
    replies = raw.stats().get("node_replies") or {}
    assert len(replies) == 3  # every master answered some of them
