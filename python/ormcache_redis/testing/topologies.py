"""Real multi-node Redis set-ups on loopback, for failover tests and the
sizing benchmark: a Sentinel set-up (master, replica, three sentinels) and
a Redis Cluster (masters with one replica each, made by
``redis-cli --cluster create``). Every server is a :class:`RedisServer`:
its own process, port and temporary directory, stopped on close."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from types import TracebackType

from .redis_server import RedisServer, free_port


def _ask(port: int, *args: str | int, password: str | None = None) -> object:
    """One command to a server, on a client of its own."""
    from ormcache_redis import RedisClient

    auth = f":{password}@" if password else ""
    return RedisClient(f"redis://{auth}127.0.0.1:{port}/0", socket_timeout=2.0).execute(*args)


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _pairs(reply: object) -> dict[str, str]:
    """A flat field/value reply (or a RESP3 map) as a dict of strings."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = [_text(item) for item in reply]  # type: ignore[attr-defined]
    return dict(zip(items[::2], items[1::2], strict=True))


def _info(port: int, section: str, password: str | None = None) -> dict[str, str]:
    lines = _text(_ask(port, "INFO", section, password=password)).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``condition`` (errors count as not yet) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # a server still starting
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


class SentinelSet:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels watching
    it as ``service``; failover after ``down_after_ms`` of silence."""

    def __init__(
        self,
        service: str = "ormcache",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 500,
        password: str | None = None,
    ) -> None:
        """``password``: every server and sentinel requires it."""
        self.service = service
        self.down_after_ms = down_after_ms
        self.password = password
        # Diskless full syncs start at once (Redis waits 5 s by default for
        # more replicas to join the same transfer).
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        if password:
            fast_sync += ["--requirepass", password, "--masterauth", password]
        self.master = RedisServer(args=fast_sync)
        self.replicas = [RedisServer(args=fast_sync) for _ in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{self.service}/{db}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, timeout: float = 30.0) -> SentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
            replica.start()
        wait_for(
            lambda: all(
                _info(replica.port, "replication", self.password).get("master_link_status") == "up"
                for replica in self.replicas
            ),
            timeout,
            "replicas in sync",
        )
        for port in self.sentinel_ports:
            config = os.path.join(self.master.workdir, f"sentinel-{port}.conf")
            with open(config, "w") as file:
                file.write(
                    f"port {port}\nbind 127.0.0.1\ndir {self.master.workdir}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
                if self.password:
                    file.write(
                        f"sentinel auth-pass {self.service} {self.password}\n"
                        f"requirepass {self.password}\n"
                    )
            self.sentinels.append(
                subprocess.Popen(
                    [self.master.binary, config, "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # A failover needs the sentinels to know each other and the replicas.
        wait_for(self._sentinels_ready, timeout, "sentinels aware of each other")
        return self

    def _sentinel_view(self, port: int) -> dict[str, str]:
        return _pairs(_ask(port, "SENTINEL", "MASTER", self.service, password=self.password))

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            view = self._sentinel_view(port)
            if int(view["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
            if int(view["num-slaves"]) < len(self.replicas):
                return False
        return True

    def master_port(self) -> int:
        """The master's port according to the first sentinel that answers."""
        for port in self.sentinel_ports:
            try:
                _host, master = _ask(  # type: ignore[misc]
                    port,
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    self.service,
                    password=self.password,
                )
                return int(_text(master))
            except Exception:  # a stopped sentinel
                continue
        raise RuntimeError("no sentinel answered")

    def kill_master(self, timeout: float = 30.0) -> RedisServer:
        """Kills the master and waits until a replica is promoted and every
        sentinel names it; returns the new master."""
        old = self.master
        old.stop()

        def promoted() -> bool:
            ports = {self.master_port()} | {
                int(
                    _text(
                        _ask(  # type: ignore[index]
                            p,
                            "SENTINEL",
                            "GET-MASTER-ADDR-BY-NAME",
                            self.service,
                            password=self.password,
                        )[1]
                    )
                )
                for p in self.sentinel_ports
            }
            if ports == {old.port}:
                return False
            (port,) = ports
            return _info(port, "replication", self.password).get("role") == "master"

        wait_for(promoted, timeout, "a replica promoted by the sentinels")
        port = self.master_port()
        self.master = next(server for server in self.replicas if server.port == port)
        self.replicas = [server for server in self.replicas if server is not self.master] + [old]
        return self.master

    def revive(self, server: RedisServer, timeout: float = 30.0) -> None:
        """Starts a killed server again as a replica of the current master,
        and waits until it is in sync and every sentinel sees it up: the
        set can fail over again."""
        server.args = [
            "--repl-diskless-sync-delay",
            "0",
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
        ]
        if self.password:
            server.args += ["--requirepass", self.password, "--masterauth", self.password]
        server.start()
        wait_for(
            lambda: (
                _info(server.port, "replication", self.password).get("master_link_status") == "up"
            ),
            timeout,
            "the revived replica in sync",
        )

        def seen_up() -> bool:
            for port in self.sentinel_ports:
                replicas = _ask(port, "SENTINEL", "REPLICAS", self.service, password=self.password)
                for replica in replicas:  # type: ignore[union-attr]
                    view = _pairs(replica)
                    if view["port"] == str(server.port) and (
                        "s_down" in view["flags"] or "disconnected" in view["flags"]
                    ):
                        return False
            return True

        wait_for(seen_up, timeout, "the revived replica seen up by every sentinel")

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.kill()
            sentinel.wait(timeout=10)
        self.sentinels = []
        for server in self.servers:
            server.close()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisClusterSet:
    """``masters`` cluster masters with ``replicas`` replicas each; a node
    is failed after ``node_timeout_ms`` of silence."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.replicas_per_master = replicas
        self.nodes = [
            RedisServer(
                args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ]
            )
            for _ in range(masters * (1 + replicas))
        ]
        for node in self.nodes:
            node.port = _free_cluster_port()

    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self, timeout: float = 60.0) -> RedisClusterSet:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        wait_for(self._healthy, timeout, "cluster_state:ok on every node")
        return self

    def _healthy(self) -> bool:
        running = [node for node in self.nodes if node.running]
        if not all(_info_cluster(node.port)["cluster_state"] == "ok" for node in running):
            return False
        # Every replica attached: a kill must leave one to promote.
        roles = [_info(node.port, "replication") for node in running]
        return all(
            info.get("master_link_status") == "up" for info in roles if info["role"] == "slave"
        )

    def masters(self) -> list[RedisServer]:
        return [
            node
            for node in self.nodes
            if node.running and _info(node.port, "replication")["role"] == "master"
        ]

    def dbsize(self) -> dict[int, int]:
        """Keys per master, by port."""
        return {node.port: int(_ask(node.port, "DBSIZE")) for node in self.masters()}  # type: ignore[arg-type]

    def kill_master(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Kills ``node`` and waits until its replica took over and every
        slot is served again."""
        node.stop()

        def recovered() -> bool:
            running = [other for other in self.nodes if other.running]
            return all(_info_cluster(other.port)["cluster_state"] == "ok" for other in running)

        # The survivors first notice the failure (the state goes to fail),
        # then promote: wait until the promotion is done.
        wait_for(
            lambda: len(self.masters()) == len(self.nodes) // (1 + self.replicas_per_master),
            timeout,
            "a replica promoted",
        )
        wait_for(recovered, timeout, "cluster_state:ok after the failover")

    def move_slots(self, source: RedisServer, target: RedisServer, count: int) -> None:
        """Moves ``count`` slots, with their keys, from one master to
        another (``redis-cli --cluster reshard``): clients meet MOVED."""
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "reshard",
                f"127.0.0.1:{source.port}",
                "--cluster-from",
                _text(_ask(source.port, "CLUSTER", "MYID")),
                "--cluster-to",
                _text(_ask(target.port, "CLUSTER", "MYID")),
                "--cluster-slots",
                str(count),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        wait_for(self._healthy, 30, "cluster_state:ok after the resharding")

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import random
    import socket

    for _ in range(1000):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


def _info_cluster(port: int) -> dict[str, str]:
    lines = _text(_ask(port, "CLUSTER", "INFO")).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)
