"""A real ``odoo-bin`` (given by the caller) serving HTTP on a free loopback
port, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from .redis_server import free_port


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
