"""Real servers for tests, benchmarks and demos: nothing here is a mock.

- :class:`RedisServer`: a throwaway ``redis-server`` on a free loopback port,
  without persistence, in a temporary directory; it can be stopped, paused
  (SIGSTOP) and started again to simulate an outage.
- :class:`FaultProxy`: a TCP proxy in front of a real Redis whose faults
  (delay, black hole, cut replies, drip, refused or hanging connections)
  are switched at run time; :func:`run_through_fault` hammers a
  :class:`~ormcache_redis.TwoTierCache` through one and measures what its
  callers saw; :data:`FAULT_SCENARIOS` are the faults the test suite and
  ``bench/faults.py`` run.
- :class:`OdooProcess`: a real ``odoo-bin`` (given by the caller) serving HTTP
  on a free loopback port, for end-to-end tests and benchmarks.

Used by this project's test suite, benchmarks and demo, and handy for users'
own tests of cached code.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "FAULT_SCENARIOS",
    "FaultProxy",
    "FaultReport",
    "FaultScenario",
    "OdooProcess",
    "OdooProcessError",
    "RedisServer",
    "free_port",
    "paused_gc",
    "run_through_fault",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process owned by the caller."""

    def __init__(self, binary: str | None = None, args: Sequence[str] = ()) -> None:
        """``args`` are extra ``redis-server`` options (e.g. ``--rename-command``)."""
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "redis-server is not installed: install it (e.g. 'apt-get install "
                "redis-server') or run 'make install'."
            )
        self.binary = found
        self.args = list(args)
        self.port = free_port()
        self._workdir = tempfile.TemporaryDirectory(prefix="ormcache-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def workdir(self) -> str:
        """The server's own temporary directory (a place for test logs too)."""
        return self._workdir.name

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nobody answers."""
        assert self.process is not None, "the server is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None, "the server is not running"
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FaultProxy:
    """A TCP proxy on a free 127.0.0.1 port in front of a real Redis, whose
    fault is switched at run time (every switch applies at once):

    - :meth:`pass_through`: forwards both ways (the start state);
    - :meth:`delay`: holds every chunk of a reply ``ms`` before forwarding it
      (a slow server: each chunk waits, so big replies are slow too);
    - :meth:`black_hole`: swallows everything both ways on every connection,
      and new connections are accepted and never answered;
    - :meth:`cut_replies`: forwards the first ``after_bytes`` bytes of the
      next reply on each connection, then closes it;
    - :meth:`drip`: forwards replies one byte every ``every_ms``;
    - :meth:`refuse_new`: resets new connections at once; existing ones pass;
    - :meth:`hang_new`: accepts new connections and never answers them;
      existing ones pass;
    - :meth:`reset_existing_on_request`: a connection opened before this
      switch is reset when its next request arrives, unforwarded (a server
      that closed an idle connection just as a command was sent); newer
      connections pass.

    :meth:`close_existing` closes every current connection (with
    :meth:`refuse_new`: a server that went down).

    Connections accepted while black-holed or hanging stay dead for good.
    At most ``max_connections`` are served at once (more are reset), with two
    threads each; :meth:`stop` closes every socket and joins every thread.
    """

    _CHUNK = 65536

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", *, max_connections: int = 64
    ) -> None:
        self.target = (target_host, target_port)
        self.max_connections = max_connections
        self._mode: tuple[str, float, int] = ("pass", 0.0, 0)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> str:
        return self._mode[0]

    # ------------------------------------------------------------ switches

    def _switch(self, name: str, value: float = 0.0) -> None:
        self._mode = (name, value, self._mode[2] + 1)

    def pass_through(self) -> None:
        self._switch("pass")

    def delay(self, ms: float) -> None:
        self._switch("delay", ms / 1000)

    def black_hole(self) -> None:
        self._switch("black_hole")

    def cut_replies(self, after_bytes: int = 3) -> None:
        self._switch("cut", after_bytes)

    def drip(self, every_ms: float) -> None:
        self._switch("drip", every_ms / 1000)

    def refuse_new(self) -> None:
        self._switch("refuse_new")

    def hang_new(self) -> None:
        self._switch("hang_new")

    def reset_existing_on_request(self) -> None:
        self._switch("reset_existing")

    def close_existing(self) -> None:
        """Closes every connection open now, as a stopping server would."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)

    # ------------------------------------------------------------ running

    def start(self) -> FaultProxy:
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            self._close(sock)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, sock: socket.socket, *, reset: bool = False) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            name, _, epoch = self._mode
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                full = len(self._threads) >= 2 * self.max_connections
            if name == "refuse_new" or full:
                self._close(client, reset=True)
                continue
            self._track(client)
            if name in ("black_hole", "hang_new"):
                self._spawn(self._swallow, client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=1.0)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            self._track(upstream)
            self._spawn(self._requests, client, upstream, epoch)
            self._spawn(self._replies, upstream, client)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _swallow(self, client: socket.socket) -> None:
        """A connection nobody answers: reads until the client gives up."""
        try:
            while client.recv(self._CHUNK):
                pass
        except OSError:
            pass
        self._close(client)

    def _requests(self, client: socket.socket, upstream: socket.socket, born: int) -> None:
        try:
            while chunk := client.recv(self._CHUNK):
                name, _, epoch = self._mode
                if name == "reset_existing" and born < epoch:
                    self._close(client, reset=True)
                    break
                if name != "black_hole":
                    upstream.sendall(chunk)
        except OSError:
            pass
        self._close(client)
        self._close(upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := upstream.recv(self._CHUNK):
                name, value, _ = self._mode
                if name == "black_hole":
                    continue
                if name == "delay":
                    time.sleep(value)
                elif name == "cut":
                    client.sendall(chunk[: int(value)])
                    break
                elif name == "drip":
                    self._drip(client, chunk)
                    continue
                client.sendall(chunk)
        except OSError:
            pass
        self._close(upstream)
        self._close(client)

    def _drip(self, client: socket.socket, chunk: bytes) -> None:
        for index in range(len(chunk)):
            name, every, _ = self._mode
            if name != "drip" or self._stopping.is_set():
                client.sendall(chunk[index:])
                return
            client.sendall(chunk[index : index + 1])
            time.sleep(every)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while timing calls: a full
    collection of a big process (a test session) takes tens of milliseconds
    and would be charged to whichever call happened to trigger it, which
    says nothing about how long that call waited for Redis."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class FaultReport:
    """What the callers of a cache saw while a fault came and went."""

    fault: str
    calls: int
    exceptions: list[BaseException] = field(default_factory=list)
    max_latency: float = 0.0
    """Longest lookup or store, in seconds, over every call of every thread."""
    recovery: float | None = None
    """Seconds from the end of the fault to the first lookup answered by
    Redis again; None when Redis was not used again in time."""
    client_stats: dict[str, object] = field(default_factory=dict)

    def row(self) -> str:
        recovery = "never" if self.recovery is None else f"{self.recovery * 1000:.0f} ms"
        return (
            f"| {self.fault} | {self.max_latency * 1000:.1f} ms | {len(self.exceptions)} "
            f"| {recovery} |"
        )


def run_through_fault(
    fault: str,
    url: str,
    start_fault: Callable[[], object],
    end_fault: Callable[[], object],
    *,
    fault_seconds: float = 1.1,
    threads: int = 4,
    keys: int = 64,
    recovery_timeout: float = 5.0,
    **client_options: Any,
) -> FaultReport:
    """Hammers a TwoTierCache (lookups and stores from ``threads`` threads)
    on a new ``RedisClient(url, **client_options)`` before, during and after
    a fault, and reports every exception, the longest call and the time
    Redis took to be used again once ``end_fault()`` returned.

    L1 holds 8 entries for ``keys`` keys, so most lookups go to Redis.
    The default fault lasts 1.1 s: with the default probe schedule (every
    0.25 s, each waiting up to 0.25 s) the fault then ends while a probe is
    stuck in it, which is the slow case for recovery (a fault of exactly
    1 s ends just as a fresh probe starts).
    """
    from ormcache_redis import Codec, RedisClient, TwoTierCache

    client = RedisClient(url, **client_options)
    namespace = f"faults:{fault}:{time.monotonic_ns()}".encode()

    def make_cache(size: int) -> TwoTierCache:
        return TwoTierCache("faults", size, client=client, codec=Codec(), namespace=namespace)

    cache = make_cache(8)
    for key in range(keys):
        cache[key] = ("value", key, "x" * 64)
    client.flush(5.0)
    report = FaultReport(fault, calls=0)
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(seed: int) -> None:
        calls, longest, errors = 0, 0.0, []
        key = seed
        while not stop.is_set():
            key = (key * 7 + 3) % keys
            started = time.perf_counter()
            try:
                try:
                    cache[key]
                except KeyError:
                    cache[key] = ("value", key, "x" * 64)
            except Exception as exc:  # every exception is what the test counts
                errors.append(exc)
            longest = max(longest, time.perf_counter() - started)
            calls += 1
            time.sleep(0.001)
        with lock:
            report.calls += calls
            report.max_latency = max(report.max_latency, longest)
            report.exceptions.extend(errors)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    with paused_gc():
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.3)
            start_fault()
            time.sleep(fault_seconds)
            end_fault()
            ended = time.perf_counter()
            # A cache of its own, emptied before each lookup, so that every
            # lookup falls through L1: l2_hits and l2_misses count only the
            # lookups Redis answered.
            probe = make_cache(1)
            while time.perf_counter() - ended < recovery_timeout:
                probe.clear()
                probe.get(0)
                stats = probe.stats()
                if stats["l2_hits"] + stats["l2_misses"] > 0:
                    report.recovery = time.perf_counter() - ended
                    break
                time.sleep(0.005)
            time.sleep(0.3)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    report.client_stats = client.stats()
    return report


class OdooProcessError(RuntimeError):
    """odoo-bin exited or did not answer in time (the message names its log)."""


class OdooProcess:
    """A real ``odoo-bin`` serving HTTP on a free loopback port.

    ``command`` is the interpreter, odoo-bin and its options; the HTTP and
    gevent ports and the log file are added here. It runs in its own process
    group so that stopping it also stops its prefork workers.
    """

    def __init__(
        self,
        command: Sequence[str],
        log: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/web/health",
    ) -> None:
        self.port = free_port()
        self.log = Path(log)
        self.command = [
            *command,
            "--http-interface", "127.0.0.1",
            "--http-port", str(self.port),
            # Two servers with workers would otherwise both want 8072.
            "--gevent-port", str(free_port()),
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.env = dict(env) if env is not None else None
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> float:
        """Starts and waits until ``ready_path`` answers 200; returns the seconds it took."""
        started = time.perf_counter()
        # Odoo's own output goes to the log file; its children's stderr (a
        # worker failing to start) to a file beside it.
        with open(self.log.with_suffix(".stderr"), "ab") as stderr:
            self.process = subprocess.Popen(
                self.command, env=self.env, start_new_session=True, stdout=stderr, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OdooProcessError(f"odoo-bin exited; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise OdooProcessError(f"odoo-bin did not answer {self.ready_path}; see {self.log}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _server_down(proxy: FaultProxy) -> None:
    proxy.refuse_new()
    proxy.close_existing()


def _unanswered_connections(proxy: FaultProxy) -> None:
    proxy.hang_new()
    proxy.close_existing()


@dataclass(frozen=True)
class FaultScenario:
    """One fault, started and ended on a proxy or on the server itself."""

    name: str
    start: Callable[[FaultProxy, RedisServer], object]
    end: Callable[[FaultProxy, RedisServer], object] = lambda proxy, _server: proxy.pass_through()
    through_proxy: bool = True
    socket_timeout: float = 0.25
    fault_seconds: float = 1.1
    threads: int = 4

    def run(self, proxy: FaultProxy, server: RedisServer) -> FaultReport:
        """Runs :func:`run_through_fault`; ``proxy`` and ``server`` may be
        unrelated when the scenario uses only one of them."""
        return run_through_fault(
            self.name,
            proxy.url if self.through_proxy else server.url,
            lambda: self.start(proxy, server),
            lambda: self.end(proxy, server),
            fault_seconds=self.fault_seconds,
            threads=self.threads,
            socket_timeout=self.socket_timeout,
        )


FAULT_SCENARIOS: tuple[FaultScenario, ...] = (
    FaultScenario(
        "delay 200 ms (socket_timeout 0.1 s)", lambda p, _s: p.delay(200), socket_timeout=0.1
    ),
    FaultScenario("black hole", lambda p, _s: p.black_hole()),
    FaultScenario("cut mid-reply (after 3 bytes)", lambda p, _s: p.cut_replies(3)),
    FaultScenario("drip (1 byte / 50 ms)", lambda p, _s: p.drip(50)),
    FaultScenario(
        "server down (connections closed, new ones refused)", lambda p, _s: _server_down(p)
    ),
    FaultScenario(
        "new connections never answered (existing closed)",
        lambda p, _s: _unanswered_connections(p),
    ),
    FaultScenario(
        "SIGSTOP",
        lambda _p, s: s.pause(),
        lambda _p, s: s.resume(),
        through_proxy=False,
    ),
    FaultScenario(
        "restart (8 threads, 8 pooled connections)",
        lambda _p, s: s.stop(),
        lambda _p, s: s.start(),
        through_proxy=False,
        fault_seconds=0.1,
        threads=8,
    ),
)
"""The faults of the test suite and of ``bench/faults.py``."""
