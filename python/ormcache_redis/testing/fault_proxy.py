"""A TCP proxy in front of a real Redis whose faults (delay, black hole, cut
replies, drip, refused or hanging connections) are switched at run time."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable


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
