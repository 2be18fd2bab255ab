"""Sentinel and Redis Cluster: real multi-node set-ups on loopback, a master
killed while threads use the cache and the session store.

What must hold through the failover: no exception reaches a cache caller
(the cache serves from L1 and computes), sessions are unavailable (503)
only until the promotion is done, and what is written after it is read by
another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from session_support import CONFIGURED_SECRET, PREFIX, database_secrets, logged_in, make_store

from ormcache_redis import (
    Codec,
    ConfigError,
    RedisClient,
    RedisReplyError,
    RedisUnavailable,
    TwoTierCache,
)
from ormcache_redis._native import redact_url
from ormcache_redis.metrics.cluster_reading import ClusterFigures, cluster_totals
from ormcache_redis.metrics.process_record import process_figures
from ormcache_redis.metrics.prometheus_text import render
from ormcache_redis.metrics.record_check import checked_process
from ormcache_redis.sessions.migrate import main as run_migration
from ormcache_redis.sessions.redis_layout import MAX_RECORD_BYTES, address_of, hash_key
from ormcache_redis.sessions.store_errors import SessionStoreUnavailable
from ormcache_redis.testing import (
    FaultProxy,
    RedisServer,
    free_port,
    paused_gc,
    run_through_fault,
)
from ormcache_redis.testing.topologies import (
    RedisClusterSet,
    SentinelSet,
    _free_cluster_port,
    wait_for,
)

pytestmark = pytest.mark.slow

MARGIN = 0.020
DEADLINE = 0.25
# After the topology says the promotion is done: the circuit's next probe
# (retry_max) plus one lookup of the new master.
RECOVERY = 1.0


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[SentinelSet]:
    with SentinelSet() as running:
        yield running


@pytest.fixture(scope="module")
def cluster_set() -> Iterator[RedisClusterSet]:
    with RedisClusterSet() as running:
        yield running


@dataclass
class SessionLoad:
    """Threads saving and reading sessions; what they saw, and when."""

    url: str
    saves: int = 0
    unavailable_at: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> SessionLoad:
        # The circuit's probes as the cache client's in `run_failover` (every
        # 0.05 s): RECOVERY counts on that. With the default interval
        # (0.25 s) and a probe's deadline, the first probe that reaches the
        # promoted replica could land past RECOVERY on a loaded machine.
        client = RedisClient(self.url, socket_timeout=0.5, retry_initial=0.05, retry_max=0.5)
        store = make_store(self.url, 19, client=client)

        def work() -> None:
            while not self.stop.is_set():
                try:
                    session = logged_in(store)
                    store.save(session)
                    assert store.get(session.sid)["uid"] == 2
                    self.saves += 1
                except SessionStoreUnavailable:
                    self.unavailable_at.append(time.monotonic())
                except Exception as exc:  # every other exception is a failure
                    self.errors.append(exc)
                time.sleep(0.002)

        self.threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


READER = textwrap.dedent(
    """
    import json, os, sys
    from ormcache_redis import Codec, RedisClient, TwoTierCache
    url, namespace, count = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
    cache = TwoTierCache("scaleout", 16, client=RedisClient(url, socket_timeout=1.0),
                         codec=Codec(), namespace=namespace, hash_tag="db1")
    found = [cache.get(("res.users", os.path.join, n)) for n in range(count)]
    print(json.dumps({"found": found, "stats": cache.stats()}))
    """
)


def written_after_failover_is_read_elsewhere(url: str, count: int = 64) -> RedisClient:
    """Writes ``count`` entries here and reads them in another process."""
    namespace = f"after:{time.monotonic_ns()}"
    client = RedisClient(url, socket_timeout=1.0)
    cache = TwoTierCache(
        "scaleout", 16, client=client, codec=Codec(), namespace=namespace.encode(), hash_tag="db1"
    )
    for n in range(count):
        cache[("res.users", os.path.join, n)] = ["value", n]
    assert client.flush(5.0)
    assert client.stats()["writes_sent"] >= count
    result = subprocess.run(
        [sys.executable, "-c", READER, url, namespace, str(count)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["found"] == [["value", n] for n in range(count)]
    assert report["stats"]["l2_hits"] == count
    return client


def run_failover(url: str, kill: Callable[[], object]) -> None:
    done: list[float] = []

    def fail_over() -> None:
        kill()
        done.append(time.monotonic())

    with SessionLoad(url) as sessions:
        report = run_through_fault(
            "failover",
            url,
            fail_over,
            lambda: None,
            fault_seconds=0.0,
            recovery_timeout=10.0,
            retry_initial=0.05,
            retry_max=0.5,
            socket_timeout=DEADLINE,
        )
        time.sleep(RECOVERY + 0.5)
    print(report.row(), report.calls, "calls", report.client_stats)
    assert report.calls > 100, "the threads did not run"
    assert report.exceptions == []
    assert report.max_latency <= DEADLINE + MARGIN + 0.05, report.row()
    assert report.recovery is not None and report.recovery <= RECOVERY, report.row()
    assert report.client_stats["state"] == "closed"
    assert sessions.errors == []
    assert sessions.saves > 0
    (promoted,) = done
    late = [at - promoted for at in sessions.unavailable_at if at > promoted + RECOVERY]
    assert late == [], "sessions still unavailable after the promotion"


def test_sentinel_urls_are_checked_at_start() -> None:
    for url, expected in [
        ("redis+sentinel://h1,h2", "must name the Sentinel service"),
        ("redis+sentinel://h1:port/svc", "invalid port"),
        ("redis+sentinel:///svc", "empty host"),
        ("redis+cluster://h1:7000/1", "only database 0"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            RedisClient(url)


def test_sentinel_failover(sentinel_set: SentinelSet) -> None:
    url = sentinel_set.url()
    old = sentinel_set.master
    run_failover(url, sentinel_set.kill_master)
    assert sentinel_set.master is not old
    sentinel_set.revive(old)
    client = written_after_failover_is_read_elsewhere(url)
    stats = client.stats()
    assert stats["node"] == f"127.0.0.1:{sentinel_set.master.port}"


def test_sentinel_follows_a_promotion_without_losing_a_call(sentinel_set: SentinelSet) -> None:
    """A client that knew the old master: its first call after the promotion
    reaches the new master, and it counts the switch."""
    client = RedisClient(sentinel_set.url(), socket_timeout=1.0)
    client.execute("SET", "before", "1")
    old = sentinel_set.master
    sentinel_set.kill_master()
    assert client.execute("SET", "after", "2") == "OK"
    stats = client.stats()
    assert stats["node"] == f"127.0.0.1:{sentinel_set.master.port}" != f"127.0.0.1:{old.port}"
    assert stats["failovers"] == 1
    # Operators see it in the metrics too.
    figures = checked_process(json.dumps(process_figures({}, clients={"cache": client})))
    assert figures is not None and figures["clients"]["cache"]["failovers"] == 1
    totals = cluster_totals(ClusterFigures(processes=[figures], reachable=True))
    assert 'ormcache_redis_client_failovers_total{role="cache"} 1.0' in render(totals)
    # The killed master comes back as a replica: connections stay on the
    # master, which has every write.
    sentinel_set.revive(old)
    assert client.execute("GET", "after") == b"2"
    assert client.execute("ROLE")[0] == b"master"


@pytest.mark.parametrize("through", ["sentinels", "the master's own URL"])
def test_a_method_clear_is_confirmed_by_a_replica(sentinel_set: SentinelSet, through: str) -> None:
    """Replication is asynchronous: a clear the master acknowledged but had
    not passed on is lost when a replica is promoted, and the old entries
    are valid again. So a clear returns only once a replica has it; when
    none can confirm it (frozen replica), it fails within its deadline and
    the caller knows (the addon then signals through the database). A
    plain URL to a master with replicas is held to the same."""
    url = sentinel_set.url() if through == "sentinels" else sentinel_set.master.url
    client = RedisClient(url, socket_timeout=DEADLINE)
    master = RedisClient(sentinel_set.master.url)
    replicas = [s for s in sentinel_set.servers if s is not sentinel_set.master and s.running]
    ports = {str(replica.port).encode() for replica in replicas}
    wait_for(
        lambda: {replica[1] for replica in master.execute("ROLE")[2]} == ports,
        10,
        "every replica connected to the master",
    )
    cache = confirmed_cache(client)
    cache.clear_method(os.path.join)
    on_master = master.execute("HGETALL", cache.generations_key)
    assert on_master
    for replica in replicas:
        assert RedisClient(replica.url).execute("HGETALL", cache.generations_key) == on_master
    assert_refused_while_frozen(cache, master, replicas, on_master)


def confirmed_cache(client: RedisClient) -> TwoTierCache:
    return TwoTierCache(
        "confirmed", 16, client=client, codec=Codec(),
        namespace=f"confirm:{time.monotonic_ns()}".encode(), hash_tag="db1",
    )  # fmt: skip


def assert_refused_while_frozen(
    cache: TwoTierCache, master: RedisClient, replicas: list[RedisServer], on_master: object
) -> None:
    """With every replica frozen, a clear fails within its deadline (it ran
    on the master all the same); thawed, clears succeed again."""
    for replica in replicas:
        replica.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RedisReplyError, match="no replica confirmed the clear"):
            cache.clear_method(os.path.join)
        assert time.monotonic() - started <= DEADLINE + MARGIN
        assert master.execute("HGETALL", cache.generations_key) != on_master
    finally:
        for replica in replicas:
            replica.resume()
    cache.clear_method(os.path.join)


def test_a_cluster_method_clear_is_confirmed_by_the_slot_s_replica(
    cluster_set: RedisClusterSet,
) -> None:
    """The same in a cluster: the master of the generations' slot waits for
    its replica; a frozen replica makes the clear fail within its deadline."""
    client = RedisClient(cluster_set.url(), socket_timeout=DEADLINE)
    cache = confirmed_cache(client)
    slot = client.execute("CLUSTER", "KEYSLOT", cache.generations_key)
    by_port = {node.port: node for node in cluster_set.nodes if node.running}
    _start, _end, owner, *_ = next(
        entry for entry in client.execute("CLUSTER", "SLOTS") if entry[0] <= slot <= entry[1]
    )
    master = by_port[int(owner[1])]
    # The replicas the master waits for: those its ROLE lists (a replica
    # still in its first sync is not there yet).
    wait_for(
        lambda: RedisClient(master.url).execute("ROLE")[2],
        10,
        "a replica connected to the slot's master",
    )
    role = RedisClient(master.url).execute("ROLE")
    replicas = [by_port[int(replica[1])] for replica in role[2]]
    cache.clear_method(os.path.join)
    on_master = RedisClient(master.url).execute("HGETALL", cache.generations_key)
    for replica in replicas:
        # A cluster replica answers reads once told READONLY.
        read = [["READONLY"], ["HGETALL", cache.generations_key]]
        assert RedisClient(replica.url).pipeline(read)[1] == on_master
    assert_refused_while_frozen(cache, RedisClient(master.url), replicas, on_master)


def test_cluster_failover(cluster_set: RedisClusterSet) -> None:
    url = cluster_set.url()
    masters = cluster_set.masters()
    run_failover(url, lambda: cluster_set.kill_master(masters[0]))
    assert masters[0] not in cluster_set.masters()
    client = written_after_failover_is_read_elsewhere(url)
    # Entries spread over every master; the client saw them all answer.
    assert all(size > 0 for size in cluster_set.dbsize().values())
    replies = client.stats()["node_replies"]
    assert {f"127.0.0.1:{node.port}" for node in cluster_set.masters()} <= set(replies)


def test_cluster_keeps_a_database_s_bookkeeping_in_one_slot(
    cluster_set: RedisClusterSet,
) -> None:
    """A method clear moves the generation and the methods-version key in
    one MULTI/EXEC: the addon's keys of a database share a hash tag, while
    entries spread."""
    client = RedisClient(cluster_set.url(), socket_timeout=1.0)
    caches = [
        TwoTierCache(
            name, 16, client=client, codec=Codec(), namespace=f"db1:r1:{name}:g0".encode(),
            hash_tag="db1",
        )
        for name in ("default", "assets", "templates")
    ]  # fmt: skip
    version_key = b"ormcache:{db1}:methods-version"
    for cache in caches:
        cache.clear_method(os.path.join, with_commands=[[b"SET", version_key, b"v2"]])
    slots = {client.execute("CLUSTER", "KEYSLOT", version_key)} | {
        client.execute("CLUSTER", "KEYSLOT", cache.generations_key) for cache in caches
    }
    assert len(slots) == 1
    assert client.execute("GET", version_key) == b"v2"
    for cache in caches:
        assert client.execute("HLEN", cache.generations_key) == 1
    entry_slots = {client.execute("CLUSTER", "KEYSLOT", f"ormcache:c:{n:032x}") for n in range(64)}
    assert len(entry_slots) > 32


def test_cluster_sessions_rotate_across_slots(cluster_set: RedisClusterSet) -> None:
    store = make_store(cluster_set.url(), 19)
    session = logged_in(store)
    store.save(session)
    old_sid = session.sid
    store.rotate(session, env=object())
    assert session.sid != old_sid
    assert store.get(old_sid).is_new
    assert dict(store.get(session.sid)) == dict(session)
    identifiers = [sid[:42] for sid in (old_sid, session.sid)]
    assert store.get_missing_session_identifiers(identifiers) == {old_sid[:42]}


def test_cluster_session_reads_refuse_oversized_records_unread(
    cluster_set: RedisClusterSet,
) -> None:
    """The length check is a one-key script: it runs on the session's own
    master, for sessions in every slot."""
    store = make_store(cluster_set.url(), 18)
    client = RedisClient(cluster_set.url(), socket_timeout=5.0)
    sessions = [logged_in(store, uid) for uid in range(2, 10)]
    for session in sessions:
        store.save(session)
        assert dict(store.get(session.sid)) == dict(session)
        client.execute("HSET", *address_of(PREFIX, session.sid), b"x" * (MAX_RECORD_BYTES + 1))
        assert store.get(session.sid).is_new
    assert store.refused.total["oversized"] == len(sessions)
    assert len({client.execute("CLUSTER", "KEYSLOT", hash_key(PREFIX, s.sid[:42]))
                for s in sessions}) > 1  # fmt: skip


def test_cluster_session_migration_reaches_every_master(
    cluster_set: RedisClusterSet, tmp_path: Path
) -> None:
    """ormcache-redis-sessions to-files walks every master (SCAN sees one
    node), and to-redis writes one transaction per session hash."""
    url = cluster_set.url()
    store = make_store(url, 19, record_secret_for=database_secrets(configured=CONFIGURED_SECRET),
                       secret="s3cret", prefix="scaleout:session:")  # fmt: skip
    sessions = [logged_in(store, uid) for uid in range(2, 26)]
    for session in sessions:
        store.save(session)
    common = ("--session-dir", str(tmp_path), "--url", url, "--prefix", "scaleout:session:",
              "--session-store-secret", "s3cret", "--secret", CONFIGURED_SECRET)  # fmt: skip
    assert run_migration(["to-files", *common]) == 0
    assert sorted(path.name for path in tmp_path.glob("*/*")) == sorted(s.sid for s in sessions)
    client = RedisClient(url)
    client.execute("DEL", *(hash_key("scaleout:session:", s.sid[:42]) for s in sessions))
    assert store.get(sessions[0].sid).is_new
    assert run_migration(["to-redis", *common]) == 0
    for session in sessions:
        assert dict(store.get(session.sid)) == dict(session)


def test_a_silent_sentinel_costs_no_call_more_than_its_deadline(
    sentinel_set: SentinelSet,
) -> None:
    """The first sentinel of the URL accepts connections and never answers
    (a stopped process): each call still ends within socket_timeout, and
    once a lookup is given up the next one starts with another sentinel."""
    with FaultProxy(sentinel_set.sentinel_ports[0]) as silent:
        silent.black_hole()
        others = ",".join(f"127.0.0.1:{port}" for port in sentinel_set.sentinel_ports[1:])
        url = f"redis+sentinel://127.0.0.1:{silent.port},{others}/{sentinel_set.service}/0"
        client = RedisClient(url, connect_timeout=0.25, socket_timeout=DEADLINE)
        answered, longest = False, 0.0
        deadline = time.monotonic() + 10
        with paused_gc():
            while not answered and time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    answered = client.execute("PING") == "PONG"
                except RedisUnavailable:
                    pass
                longest = max(longest, time.perf_counter() - started)
                time.sleep(0.05)
        assert answered
        assert longest <= DEADLINE + MARGIN, longest
        # The master the sentinels name now: a loaded machine may have seen
        # a failover since the set started.
        assert client.stats()["node"] == f"127.0.0.1:{sentinel_set.master_port()}"


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_a_forked_child_opens_its_own_connections(
    topology: str,
    sentinel_set: SentinelSet,
    cluster_set: RedisClusterSet,
    run_in_fork: Callable[[Callable[[], bool]], None],
) -> None:
    """Odoo's master process builds clients before forking its workers:
    a child neither shares the parent's connections nor its write queue."""
    url = sentinel_set.url() if topology == "sentinel" else cluster_set.url()
    client = RedisClient(url, socket_timeout=1.0)
    client.execute("SET", "forked:parent", "1")
    assert client.enqueue("SET", "forked:queued-by-parent", "1")
    assert client.flush(5.0)

    def child() -> bool:
        fresh = client.stats()["connects"] == 0 and client.stats()["writes_sent"] == 0
        client.execute("SET", "forked:child", "2")
        client.enqueue("SET", "forked:queued-by-child", "2")
        return fresh and client.flush(5.0) and client.execute("GET", "forked:parent") == b"1"

    run_in_fork(child)
    assert client.execute("GET", "forked:child") == b"2"
    assert client.execute("GET", "forked:queued-by-child") == b"2"
    assert client.stats()["writes_sent"] == 1


def test_cluster_follows_slots_moved_by_a_resharding(cluster_set: RedisClusterSet) -> None:
    """Pipelines go to the nodes that last served their slots; when slots
    move (MOVED), the client follows and every reply is still right."""
    client = RedisClient(cluster_set.url(), socket_timeout=2.0)
    keys = [f"reshard:{n}" for n in range(500)]
    client.pipeline([("SET", key, key) for key in keys])
    expected = [key.encode() for key in keys]
    assert client.pipeline([("GET", key) for key in keys]) == expected
    source, target, *_ = cluster_set.masters()
    cluster_set.move_slots(source, target, 2000)
    redirects = client.stats()["failovers"]
    assert client.pipeline([("GET", key) for key in keys]) == expected
    assert client.stats()["failovers"] > redirects
    assert client.pipeline([("GET", key) for key in keys]) == expected


def make_certificates(directory: Path) -> None:
    """A private CA and a server certificate for 127.0.0.1 (what cluster
    nodes announce themselves as)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    key_and_request = ["req", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    openssl(*key_and_request, "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ca")
    openssl(*key_and_request, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=node")
    (directory / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        *["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
        *["-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
    )


def test_cluster_over_tls(tmp_path: Path) -> None:
    """rediss+cluster://: every node the cluster names is reached over TLS,
    its certificate checked against the private CA, with the password."""
    make_certificates(tmp_path)
    ports = [_free_cluster_port() for _ in range(3)]
    password = "s3cret-pass"
    processes = []
    try:
        for port in ports:
            workdir = tmp_path / str(port)
            workdir.mkdir()
            server = [
                *["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"],
                *["--dir", str(workdir), "--save", "", "--appendonly", "no"],
                *["--cluster-enabled", "yes", "--tls-cluster", "yes"],
                *["--requirepass", password, "--masterauth", password],
                *["--tls-cert-file", str(tmp_path / "server.pem")],
                *["--tls-key-file", str(tmp_path / "server.key")],
                *["--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no"],
            ]
            processes.append(
                subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        cli = ["redis-cli", "--tls", "--cacert", str(tmp_path / "ca.pem"), "-a", password]

        def answers(port: int) -> bool:
            ping = subprocess.run([*cli, "-p", str(port), "PING"], capture_output=True, timeout=5)
            return ping.stdout.strip() == b"PONG"

        wait_for(lambda: all(answers(port) for port in ports), 20, "TLS nodes up")
        nodes = [f"127.0.0.1:{port}" for port in ports]
        create = [*cli, "--cluster", "create", *nodes, "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        client = RedisClient(
            f"rediss+cluster://:{password}@{','.join(nodes)}",
            tls_ca_file=tmp_path / "ca.pem",
            socket_timeout=1.0,
        )
        keys = [f"tls:{n}" for n in range(60)]

        def written() -> bool:
            return client.pipeline([("SET", key, key) for key in keys]) == ["OK"] * len(keys)

        wait_for(written, 20, "cluster_state:ok")
        assert client.pipeline([("GET", key) for key in keys]) == [key.encode() for key in keys]
        assert len(client.stats()["node_replies"]) == 3
        assert password not in repr(client)
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_sentinel_over_tls(tmp_path: Path) -> None:
    """rediss+sentinel://: the sentinel is asked over TLS (the redis
    crate's client, given the private CA) and the master reached over TLS."""
    make_certificates(tmp_path)
    master_port, sentinel_port = free_port(), free_port()
    tls = [
        *["tls-cert-file", str(tmp_path / "server.pem")],
        *["tls-key-file", str(tmp_path / "server.key")],
        *["tls-ca-cert-file", str(tmp_path / "ca.pem")],
        *["tls-auth-clients", "no", "tls-replication", "yes"],
    ]
    options = [f"{name} {value}" for name, value in zip(tls[::2], tls[1::2], strict=True)]
    config = tmp_path / "sentinel.conf"
    config.write_text(
        "\n".join(
            [
                *["port 0", f"tls-port {sentinel_port}", "bind 127.0.0.1", f"dir {tmp_path}"],
                *options,
                f"sentinel monitor tlsmaster 127.0.0.1 {master_port} 1",
                "sentinel auth-pass tlsmaster s3cret-pass",
            ]
        )
        + "\n"
    )
    master = [
        *["redis-server", "--port", "0", "--tls-port", str(master_port), "--bind", "127.0.0.1"],
        *["--dir", str(tmp_path), "--save", "", "--requirepass", "s3cret-pass"],
        *[f"--{arg}" if index % 2 == 0 else arg for index, arg in enumerate(tls)],
    ]
    processes = [
        subprocess.Popen(master, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(
            ["redis-server", str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        client = RedisClient(
            f"rediss+sentinel://:s3cret-pass@127.0.0.1:{sentinel_port}/tlsmaster/0",
            tls_ca_file=tmp_path / "ca.pem",
            socket_timeout=1.0,
        )
        wait_for(lambda: client.execute("SET", "tls", "1") == "OK", 20, "the TLS master")
        assert client.execute("GET", "tls") == b"1"
        assert client.stats()["node"] == f"127.0.0.1:{master_port}"
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_cluster_flush_command_moves_a_database_s_keys_in_one_slot(
    cluster_set: RedisClusterSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """ormcache-redis flush runs its MULTI/EXEC (flush epoch and methods
    version of the database) on a cluster: both keys carry the database's
    hash tag."""
    from ormcache_redis.cli import main as cli
    from ormcache_redis.odoo_support.namespaces import flush_epochs_key, methods_version_key

    url = cluster_set.url()
    assert cli(["flush", "--url", url, "--db", "db7"]) == 0
    assert "db7" in capsys.readouterr().out
    client = RedisClient(url)
    keys = [flush_epochs_key("ormcache:", "db7"), methods_version_key("ormcache:", "db7")]
    assert client.execute("EXISTS", *keys) == 2
    assert len({client.execute("CLUSTER", "KEYSLOT", key) for key in keys}) == 1


def test_doctor_on_a_cluster_finds_no_blocking_problem(
    cluster_set: RedisClusterSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its permission probe (a MULTI/EXEC over two keys) stays in one slot,
    and the version is read from a node's INFO."""
    from ormcache_redis.cli import main as cli

    assert cli(["doctor", cluster_set.url()]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out
    assert "version: Redis 7" in out or "version: Valkey" in out


def test_password_protected_sentinels_and_servers() -> None:
    """Sentinels with ``requirepass`` take the URL's credentials (the same
    ones as the master); the client follows a promotion through them."""
    with SentinelSet(password="sentinel-and-master-secret") as protected:
        url = protected.url()
        writer = RedisClient(url)
        writer.execute("SET", "before", "1")
        assert RedisClient(url).execute("GET", "before") == b"1"
        protected.kill_master()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                writer.execute("SET", "after", "2")
                break
            except (RedisUnavailable, RedisReplyError):
                time.sleep(0.1)
        assert RedisClient(url).execute("GET", "after") == b"2"
    assert "sentinel-and-master-secret" not in redact_url(url)
