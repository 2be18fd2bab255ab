"""Real servers for tests, benchmarks and demos: nothing here is a mock.

- :class:`RedisServer`: a throwaway ``redis-server`` on a free loopback port,
  without persistence, in a temporary directory; it can be stopped and
  started again to simulate an outage.
- :class:`OdooProcess`: a real ``odoo-bin`` (given by the caller) serving HTTP
  on a free loopback port, for end-to-end tests and benchmarks.

Used by this project's test suite, benchmarks and demo, and handy for users'
own tests of cached code.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["OdooProcess", "OdooProcessError", "RedisServer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process owned by the caller."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "redis-server is not installed: install it (e.g. 'apt-get install "
                "redis-server') or run 'make install'."
            )
        self.binary = found
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
