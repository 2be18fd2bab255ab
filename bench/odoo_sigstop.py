"""Real Odoo, threaded server (``workers = 0``): what requests see while
Redis is SIGSTOPped, with HTTP sessions in Redis and the shared cache on the
same Redis.

Each run starts its own ``redis-server`` and ``odoo-bin`` (threaded, no cron
thread, a free HTTP port) with the addon loaded server-wide, sessions in
Redis (``session_store = redis``, ``session_store_url`` = that Redis) and
``ormcache_redis_url`` = that Redis, all through the environment. N clients
(4 by default) each log in as admin through ``/web/session/authenticate``
(each its own session cookie), then loop on a *pair* of JSON-RPC requests
to ``/web/dataset/call_kw``:

  1. ``ir.config_parameter.set_param('sig.bench.<client>', '<client>-<n>')``
  2. ``ir.config_parameter.get_param('sig.bench.<client>')``

After an untimed warm-up (a few pairs per client) the traffic runs
``--before`` seconds (3), then Redis is SIGSTOPped (the kernel still accepts
connections, nobody answers) for ``--pause`` seconds (4), SIGCONTed, and the
traffic goes on ``--after`` seconds (3).

Per phase it reports the slowest request, the slowest pair, the median
request, the HTTP statuses (200 / 503 / other, plus JSON-RPC errors inside
a 200), and the wrong answers: a ``get_param`` answering something else than
the value its own client's ``set_param`` of the same pair just stored (only
checked when that ``set_param`` answered 200). A request or pair belongs to
*during* when its time overlaps the SIGSTOP window, otherwise to *before* or
*after* by its start. ``Redis used after resume``: the commands Redis ran
between SIGCONT and the end (``INFO commandstats``, this script's own INFO
calls taken out), the seconds from SIGCONT to the first request answered
200, and to the end of the last request started after SIGCONT that was not
answered 200 (the circuit breakers reopen on their next probe).

Timeouts: ``--timeouts 0.25`` sets both ``ormcache_redis_socket_timeout``
and ``session_store_timeout`` to 0.25 s; ``--timeouts default`` leaves both
unset (the addon's defaults: 0.25 s and 1.0 s). ``--repeat`` runs each
configuration that many times (a fresh Redis and Odoo each)::

    /tmp/sig_venv/bin/python bench/odoo_sigstop.py \\
        --odoo-bin /work/odoo/19/odoo-bin --python /tmp/sig_venv/bin/python \\
        --addons-path /work/odoo/19/odoo/addons,/work/odoo/19/addons \\
        --addon-dir /tmp/sig_src/odoo_addon --db sig19_bench \\
        --timeouts 0.25,0.25,default

Needs a database with ``base`` and ``web`` installed (``--create`` makes
it), the ``ormcache_redis`` wheel in Odoo's Python and a ``redis-server``.
Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import odoo_first_requests as first

from ormcache_redis.testing import OdooProcess, RedisServer

REPO = Path(__file__).resolve().parents[1]
PHASES = ("before", "during", "after")


class Failure(RuntimeError):
    pass


def create_database(args: argparse.Namespace) -> None:
    command = [
        args.python, args.odoo_bin, "-c", "/dev/null", *first.db_options(args),
        "--addons-path", args.addons_path, "--load", first.base_modules(args),
        "-d", args.db, "-i", "base,web", "--stop-after-init",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise Failure(f"cannot create {args.db}: {result.stderr[-2000:]}")


class Odoo(OdooProcess):
    def __init__(
        self, args: argparse.Namespace, redis: RedisServer, timeouts: str, log: Path
    ) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ORMCACHE_REDIS_", "SESSION_STORE")) and k != "REDIS_URL"
        }
        env.update(
            ORMCACHE_REDIS_URL=redis.url,
            SESSION_STORE="redis",
            SESSION_STORE_URL=redis.url,
        )
        if timeouts != "default":
            env["ORMCACHE_REDIS_SOCKET_TIMEOUT"] = timeouts
            env["SESSION_STORE_TIMEOUT"] = timeouts
        for option in args.option:
            name, _, value = option.partition("=")
            env[name.upper()] = value
        addons = f"{args.addon_dir or REPO / 'odoo_addon'},{args.addons_path}"
        command = [
            args.python, args.odoo_bin, "-c", "/dev/null", *first.db_options(args),
            "--addons-path", addons,
            f"--load={first.base_modules(args)},ormcache_redis",
            "-d", args.db, "--db-filter", f"^{re.escape(args.db)}$",
            "--workers", "0", "--max-cron-threads", "0", "--log-level", "info",
        ]  # fmt: skip
        super().__init__(command, log, env=env)


@dataclass
class Request:
    kind: str  # "set" or "get"
    start: float
    end: float
    status: int  # HTTP status; 0 = no answer (connection error)
    rpc_error: bool = False
    result: Any = None

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Pair:
    client: int
    value: str
    set: Request
    get: Request

    @property
    def start(self) -> float:
        return self.set.start

    @property
    def end(self) -> float:
        return self.get.end

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def checked(self) -> bool:
        return (
            self.set.status == 200 and not self.set.rpc_error
            and self.get.status == 200 and not self.get.rpc_error
        )  # fmt: skip

    @property
    def wrong(self) -> bool:
        return self.checked and self.get.result != self.value


def jsonrpc(url: str, sid: str | None, params: dict[str, Any]) -> tuple[int, Any, str | None]:
    """One JSON-RPC call on a new connection (as Odoo's threaded server
    closes them); returns the status, the decoded reply and the session
    cookie it set, if any."""
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}).encode()
    headers = {"Content-Type": "application/json"}
    if sid:
        headers["Cookie"] = f"session_id={sid}"
    request = urllib.request.Request(url, body, headers)
    new_sid = None
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, content = response.status, response.read()
            for header in response.headers.get_all("Set-Cookie") or []:
                match = re.match(r"session_id=([^;]+)", header)
                if match:
                    new_sid = match.group(1)
    except urllib.error.HTTPError as error:
        status, content = error.code, error.read()
    except OSError:
        return 0, None, None
    reply = None
    if status == 200:
        try:
            reply = json.loads(content)
        except ValueError:
            reply = None
    return status, reply, new_sid


class Client(threading.Thread):
    def __init__(self, number: int, base: str, db: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.number = number
        self.base = base
        self.db = db
        self.stop_event = stop
        self.sid: str | None = None
        self.pairs: list[Pair] = []
        self.error: BaseException | None = None

    def login(self) -> None:
        status, reply, sid = jsonrpc(
            self.base + "/web/session/authenticate",
            None,
            {"db": self.db, "login": "admin", "password": "admin"},
        )
        if status != 200 or not reply or not reply.get("result", {}).get("uid") or not sid:
            raise Failure(f"client {self.number}: login failed ({status}, {reply})")
        self.sid = sid

    def call(self, kind: str, method: str, args: list[Any]) -> Request:
        params = {"model": "ir.config_parameter", "method": method, "args": args, "kwargs": {}}
        start = time.perf_counter()
        status, reply, sid = jsonrpc(
            f"{self.base}/web/dataset/call_kw/ir.config_parameter/{method}", self.sid, params
        )
        end = time.perf_counter()
        if sid:  # a rotated session: follow it, as a browser would
            self.sid = sid
        error = status == 200 and (reply is None or "error" in reply)
        result = reply.get("result") if status == 200 and reply else None
        return Request(kind, start, end, status, error, result)

    def pair(self, n: int) -> Pair:
        key = f"sig.bench.{self.number}"
        value = f"{self.number}-{n}-{time.time_ns()}"
        set_request = self.call("set", "set_param", [key, value])
        get_request = self.call("get", "get_param", [key])
        return Pair(self.number, value, set_request, get_request)

    def warm(self, count: int) -> None:
        for n in range(count):
            pair = self.pair(-1 - n)
            if not pair.checked or pair.wrong:
                raise Failure(f"client {self.number}: warm-up pair failed: {pair}")

    def run(self) -> None:
        try:
            n = 0
            while not self.stop_event.is_set():
                self.pairs.append(self.pair(n))
                n += 1
        except BaseException as error:  # reported by the main thread
            self.error = error


def commands_run(redis: RedisServer) -> dict[str, int]:
    """INFO commandstats: calls per command (this INFO included)."""
    from ormcache_redis import RedisClient

    text = RedisClient(redis.url, socket_timeout=5.0, connect_timeout=5.0).execute(
        "INFO", "commandstats"
    )
    if isinstance(text, bytes):
        text = text.decode()
    calls = {}
    for line in text.splitlines():
        match = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
        if match:
            calls[match.group(1)] = int(match.group(2))
    return calls


@dataclass
class PhaseFigures:
    requests: list[Request] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        seconds = [r.seconds for r in self.requests]
        statuses = [r.status for r in self.requests]
        return {
            "requests": len(self.requests),
            "pairs": len(self.pairs),
            "max_request": max(seconds, default=0.0),
            "max_pair": max((p.seconds for p in self.pairs), default=0.0),
            "p50_request": statistics.median(seconds) if seconds else 0.0,
            "s200": statuses.count(200),
            "s503": statuses.count(503),
            "other": len(statuses) - statuses.count(200) - statuses.count(503),
            "rpc_errors": sum(r.rpc_error for r in self.requests),
            "checked": sum(p.checked for p in self.pairs),
            "wrong": sum(p.wrong for p in self.pairs),
        }


def phase_of(start: float, end: float, paused: float, resumed: float) -> str:
    if start < resumed and end > paused:
        return "during"
    return "before" if start < paused else "after"


def run_once(args: argparse.Namespace, timeouts: str, index: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="odoo-sigstop-"))
    redis = RedisServer(args.redis_server).start()
    odoo = Odoo(args, redis, timeouts, workdir / "odoo.log")
    try:
        odoo.start()
        log = odoo.log_text()
        if "HTTP sessions are stored in Redis" not in log:
            raise Failure(f"the Redis session store is not installed; see {odoo.log}")
        stop = threading.Event()
        clients = [Client(i, odoo.url, args.db, stop) for i in range(args.clients)]
        for client in clients:
            client.login()
        for client in clients:
            client.warm(args.warm)
        began = time.perf_counter()
        for client in clients:
            client.start()
        time.sleep(args.before)
        paused = time.perf_counter()
        redis.pause()
        time.sleep(args.pause)
        redis.resume()
        resumed = time.perf_counter()
        at_resume = commands_run(redis)
        time.sleep(args.after)
        stop.set()
        for client in clients:
            client.join(120)
            if client.error is not None:
                raise Failure(f"client {client.number}: {client.error!r}")
        at_end = commands_run(redis)
        ended = time.perf_counter()
    finally:
        odoo.stop()
        redis.close()
    used = {name: at_end.get(name, 0) - at_resume.get(name, 0) for name in at_end}
    used["info"] = used.get("info", 0) - 1  # the INFO at the end
    used = {name: calls for name, calls in used.items() if calls > 0}
    phases = {name: PhaseFigures() for name in PHASES}
    first_200_after: float | None = None
    last_503_after: float | None = None
    for client in clients:
        for pair in client.pairs:
            phases[phase_of(pair.start, pair.end, paused, resumed)].pairs.append(pair)
            for request in (pair.set, pair.get):
                phases[phase_of(request.start, request.end, paused, resumed)].requests.append(
                    request
                )
                if request.status == 200 and request.end > resumed:
                    since = request.end - resumed
                    if first_200_after is None or since < first_200_after:
                        first_200_after = since
                if request.status != 200 and request.start >= resumed:
                    since = request.end - resumed
                    if last_503_after is None or since > last_503_after:
                        last_503_after = since
    log = odoo.log.read_text(errors="replace")
    return {
        "run": index,
        "timeouts": timeouts,
        "seconds": ended - began,
        "paused_at": paused - began,
        "pause": resumed - paused,
        "phases": {name: figures.row() for name, figures in phases.items()},
        "redis_commands_after_resume": used,
        "first_200_after_resume": first_200_after,
        "last_failure_after_resume": last_503_after,
        "log_warnings": log.count(" WARNING "),
        "log_errors": log.count(" ERROR "),
        "log": str(odoo.log),
    }


def describe(timeouts: str) -> str:
    if timeouts == "default":
        return "defaults (socket 0.25, session 1.0)"
    return f"socket {timeouts}, session {timeouts}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'run':>3} {'timeouts':<36} {'phase':<7} {'reqs':>5} {'max req':>8} {'max pair':>9} "
        f"{'p50':>7} {'200':>5} {'503':>5} {'other':>5} {'rpcerr':>6} {'checked':>7} {'wrong':>5}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for phase in PHASES:
            row = result["phases"][phase]
            print(
                f"{result['run']:>3} {describe(result['timeouts']):<36} {phase:<7} "
                f"{row['requests']:>5} {row['max_request']:>7.3f}s {row['max_pair']:>8.3f}s "
                f"{row['p50_request'] * 1000:>5.1f}ms {row['s200']:>5} {row['s503']:>5} "
                f"{row['other']:>5} {row['rpc_errors']:>6} {row['checked']:>7} {row['wrong']:>5}"
            )
        used = result["redis_commands_after_resume"]
        first = result["first_200_after_resume"]
        last = result["last_failure_after_resume"]
        top = ", ".join(f"{k} {v}" for k, v in sorted(used.items(), key=lambda kv: -kv[1])[:8])
        print(
            f"    Redis after resume: {sum(used.values())} commands ({top}); "
            f"first 200 after resume: "
            + (f"+{first:.3f}s" if first is not None else "none")
            + "; last non-200 started after resume ended at "
            + (f"+{last:.3f}s" if last is not None else "none (there was none)")
            + f"; SIGSTOP {result['pause']:.2f}s at +{result['paused_at']:.2f}s; "
            f"log: {result['log_warnings']} warnings, {result['log_errors']} errors "
            f"({result['log']})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--odoo-bin", required=True)
    parser.add_argument("--python", default=sys.executable, help="Odoo's Python")
    parser.add_argument("--addons-path", required=True, help="Odoo's addons path")
    parser.add_argument("--addon-dir", help="the directory holding ormcache_redis (the addon)")
    parser.add_argument("--db", default="sig19_bench", help="database (base, web)")
    parser.add_argument("--create", action="store_true", help="create it first")
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", default="5432")
    parser.add_argument("--db-user", default="odoo")
    parser.add_argument("--db-password", default="odoo")
    parser.add_argument("--redis-server", default=None)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warm", type=int, default=5, help="untimed pairs per client first")
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--pause", type=float, default=4.0)
    parser.add_argument("--after", type=float, default=3.0)
    parser.add_argument(
        "--timeouts",
        default="0.25,0.25,default",
        help="comma-separated runs: seconds for both socket and session timeouts, or 'default'",
    )
    parser.add_argument(
        "--option", action="append", default=[], help="more addon options, name=value (env)"
    )
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    if args.create:
        create_database(args)
    results = []
    for index, timeouts in enumerate(args.timeouts.split(","), 1):
        timeouts = timeouts.strip()
        if timeouts != "default":
            float(timeouts)
        result = run_once(args, timeouts, index)
        results.append(result)
        print(f"run {index} ({describe(timeouts)}) done", file=sys.stderr, flush=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
