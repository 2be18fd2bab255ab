"""Real Odoo, ``workers = 2``: requests per second of a backend mix on warm
workers, vanilla against the addon with Redis and HTTP sessions in Redis,
and the resident memory of the largest worker.

Each run starts ``odoo-bin`` (prefork, ``--workers`` 2, no cron thread, a
free HTTP port; config c with its own ``redis-server``), logs ``--clients``
(6) clients in as admin (a session each), lets each run the mix ``--warm``
times untimed (every worker's caches and config c's Redis warm), then lets
them all loop on the mix for ``--seconds`` (20), one request after the
other per client. Requests per second = the requests answered within that
window / its length. At the end of the window, before Odoo stops, the
resident set (``VmRSS`` in ``/proc/<pid>/status``) of each HTTP worker
(the master's children, its gevent process aside) is read; the largest is
reported.

The mix is what a user working in the backend causes, 7 requests: the
backend home (``GET /odoo``; ``/web`` on 17/18), ``get_session_info``,
``/web/action/load`` of the model's action, ``get_views`` (list, form,
search), ``web_search_read`` of 80 records, ``web_read_group`` by one
field, and ``web_read`` of one record for its form. The model is
``sale.order`` when ``sale_management`` is installed, ``res.partner``
otherwise. Every answer must be 200 without a JSON-RPC error, or the run
fails.

Configurations (``--configs``, ``ac`` by default; run in turn, ``--rounds``
times, so that a machine's drift moves both):

  a  Odoo without the addon (sessions in files)
  b  addon loaded server-wide, L1 only (sessions in files)
  c  addon with Redis: the shared cache and ``session_store = redis`` on
     the run's own ``redis-server``

The ratio printed is the best run of c over the best run of a.

    python bench/odoo_steady_state.py --odoo-bin /path/to/19/odoo-bin \\
        --python /path/to/odoo-venv/bin/python \\
        --addons-path /path/to/19/odoo/addons,/path/to/19/addons --db ormcache_bench_19

The database must exist with ``base`` and ``web`` (and demo data); ``make
bench ODOO=...`` creates one (bench/odoo_rows.py). Needs the
``ormcache_redis`` package in Odoo's Python and a ``redis-server``.
Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import odoo_first_requests as first

from ormcache_redis.testing import OdooProcessError, RedisServer

CONFIGS = {
    "a": "Odoo without the addon",
    "b": "addon, L1 only",
    "c": "addon + Redis, sessions in Redis",
}
Call = tuple[str, dict[str, Any] | None]  # a path, and JSON-RPC params (None: GET)


class Failure(RuntimeError):
    pass


class Odoo(first.Odoo):
    """odoo_first_requests' Odoo; with a Redis, sessions live in it too."""

    def __init__(self, args: argparse.Namespace, config: str, redis: RedisServer | None) -> None:
        super().__init__(args, config, redis)
        assert self.env is not None
        if redis is not None:
            self.env.update(SESSION_STORE="redis", SESSION_STORE_URL=redis.url)


class Workload:
    """The model the mix works on and the requests of one pass."""

    def __init__(self, major: int, model: str, record_id: int, context: dict[str, Any]) -> None:
        self.major = major
        self.model = model
        self.record_id = record_id
        self.context = context

    def call_kw(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Call:
        params = {
            "model": self.model,
            "method": method,
            "args": args,
            "kwargs": {**kwargs, "context": self.context},
        }
        return f"/web/dataset/call_kw/{self.model}/{method}", params

    def read_group(self) -> Call:
        field = GROUP_BY[self.model]
        if self.major >= 19:
            kwargs = {"domain": [], "groupby": [field], "aggregates": ["__count"]}
        else:
            kwargs = {"domain": [], "fields": [], "groupby": [field], "lazy": True}
        return self.call_kw("web_read_group", [], {**kwargs, "limit": 80})

    def calls(self) -> list[Call]:
        views = {
            "views": [[False, "list"], [False, "form"], [False, "search"]],
            "options": {"action_id": False, "load_filters": True, "toolbar": True},
        }
        return [
            ("/odoo" if self.major >= 19 else "/web", None),
            ("/web/session/get_session_info", {}),
            ("/web/action/load", {"action_id": ACTIONS[self.model]}),
            self.call_kw("get_views", [], views),
            self.call_kw(
                "web_search_read",
                [],
                {"domain": [], "specification": LIST_FIELDS[self.model], "limit": 80},
            ),
            self.read_group(),
            self.call_kw(
                "web_read", [[self.record_id]], {"specification": FORM_FIELDS[self.model]}
            ),
        ]


ACTIONS = {"sale.order": "sale.action_orders", "res.partner": "base.action_partner_form"}
GROUP_BY = {"sale.order": "state", "res.partner": "country_id"}
NAMED = {"fields": {"display_name": {}}}
LIST_FIELDS = {
    "sale.order": {
        "name": {}, "date_order": {}, "partner_id": NAMED, "user_id": NAMED,
        "amount_total": {}, "currency_id": NAMED, "state": {},
    },
    "res.partner": {
        "display_name": {}, "email": {}, "phone": {}, "city": {}, "country_id": NAMED,
        "user_id": NAMED, "is_company": {},
    },
}  # fmt: skip
FORM_FIELDS = {
    "sale.order": {
        "name": {}, "partner_id": NAMED, "date_order": {}, "state": {}, "amount_total": {},
        "order_line": {
            "fields": {"product_id": NAMED, "product_uom_qty": {}, "price_subtotal": {}}
        },
    },
    "res.partner": {
        "display_name": {}, "name": {}, "email": {}, "phone": {}, "street": {}, "city": {},
        "country_id": NAMED, "category_id": NAMED,
        "child_ids": {"fields": {"display_name": {}, "email": {}}},
    },
}  # fmt: skip


def call(client: first.Client, base: str, request: Call) -> Any:
    path, params = request
    status, content = client.request(base + path, params)
    if status != 200:
        raise Failure(f"{path} answered {status}: {content[:300]!r}")
    if params is None:
        return None
    reply = json.loads(content)
    if "error" in reply:
        raise Failure(f"{path}: {json.dumps(reply['error'])[:500]}")
    return reply["result"]


def workload(client: first.Client, base: str, major: int) -> Workload:
    """Asks the logged-in ``client``'s Odoo which model the mix works on."""
    info = call(client, base, ("/web/session/get_session_info", {}))
    context = {
        "lang": "en_US",
        "tz": "Europe/Brussels",
        "uid": info["uid"],
        "allowed_company_ids": [info["user_companies"]["current_company"]],
        "bin_size": True,
    }
    probe = Workload(major, "ir.model", 0, context)
    has_sale = call(
        client, base, probe.call_kw("search_count", [[("model", "=", "sale.order")]], {})
    )
    model = "sale.order" if has_sale else "res.partner"
    found = call(client, base, Workload(major, model, 0, context).call_kw("search", [[]], {}))
    if not found:
        raise Failure(f"no {model} record in the database (demo data?)")
    return Workload(major, model, found[0], context)


class Loop(threading.Thread):
    """One client: its own session, the mix again and again until ``stop``."""

    def __init__(
        self, client: first.Client, base: str, calls: list[Call], stop: threading.Event
    ) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.base = base
        self.calls = calls
        self.stop_event = stop
        self.ends: list[float] = []  # when each request was answered
        self.error: BaseException | None = None

    def warm(self, passes: int) -> None:
        for _ in range(passes):
            for request in self.calls:
                call(self.client, self.base, request)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                for request in self.calls:
                    call(self.client, self.base, request)
                    self.ends.append(time.perf_counter())
        except BaseException as error:  # reported by the main thread
            self.error = error


def http_workers(master: int) -> list[int]:
    """The master's children but its gevent process (``odoo-bin gevent``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # the process is gone
        if parent == master and b"gevent" not in command:
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used (``/proc/<pid>/stat``
    fields 14 and 15); a process gone since counts nothing."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_commands(redis: RedisServer) -> dict[str, int]:
    """Calls per command Redis ran so far (``INFO commandstats``)."""
    return {
        name.removeprefix("cmdstat_"): int(
            dict(field.split("=", 1) for field in fields.split(","))["calls"]
        )
        for name, fields in first.redis_info(redis, "commandstats").items()
        if name.startswith("cmdstat_")
    }


def resident_bytes(pid: int) -> int | None:
    """The process's resident set; None once it has exited (a worker Odoo
    replaced, gone or not yet reaped: a zombie has no ``VmRSS``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def run_once(args: argparse.Namespace, config: str, major: int) -> dict[str, Any]:
    redis = RedisServer(args.redis_server).start() if config == "c" else None
    odoo = Odoo(args, config, redis)
    try:
        odoo.start()
        log = odoo.log_text()
        reason = first.addon_not_loaded(log) if config in ("b", "c") else None
        if reason is not None:
            raise Failure(f"config {config}: {reason}; see {odoo.log}")
        if config == "c" and "HTTP sessions are stored in Redis" not in log:
            raise Failure(f"config c: the Redis session store is not installed; see {odoo.log}")
        stop = threading.Event()
        clients = [first.Client() for _ in range(args.clients)]
        for client in clients:
            first.login(client, odoo, args)
        work = workload(clients[0], odoo.url, major)
        loops = [Loop(client, odoo.url, work.calls(), stop) for client in clients]
        for loop in loops:
            loop.warm(args.warm)
        assert odoo.process is not None
        workers = http_workers(odoo.process.pid)
        cpu_before = cpu_seconds(workers)
        commands_before = redis_commands(redis) if redis is not None else {}
        started = time.perf_counter()
        for loop in loops:
            loop.start()
        time.sleep(args.seconds)
        deadline = time.perf_counter()
        cpu_used = cpu_seconds(workers) - cpu_before
        commands = {
            name: count - commands_before.get(name, 0)
            for name, count in (redis_commands(redis) if redis is not None else {}).items()
            if name != "info"
        }
        resident = {pid: resident_bytes(pid) for pid in http_workers(odoo.process.pid)}
        rss = {pid: size for pid, size in resident.items() if size is not None}
        stop.set()
        for loop in loops:
            loop.join(120)
            if loop.error is not None:
                raise Failure(f"config {config}: {loop.error}")
        if not rss:
            raise Failure(f"config {config}: no HTTP worker found (--workers {args.workers}?)")
    finally:
        odoo.stop()
        if redis is not None:
            redis.close()
    answered = sum(1 for loop in loops for end in loop.ends if end <= deadline)
    return {
        "config": config,
        "model": work.model,
        "requests": answered,
        "requests_per_second": answered / (deadline - started),
        # CPU is what a request costs whatever else the machine runs; the
        # requests answered in the window carry the workers' CPU of it.
        "worker_cpu_ms_per_request": cpu_used * 1000 / max(answered, 1),
        # Config c: what each warm request asks of Redis (sessions, syncs).
        "redis_commands_per_request": {
            name: count / max(answered, 1) for name, count in sorted(commands.items()) if count
        },
        "worker_rss": sorted(rss.values(), reverse=True),
        "log": str(odoo.log),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = configs.setdefault(
            run["config"], {"requests_per_second": [], "largest_rss": [], "cpu_ms": []}
        )
        entry["requests_per_second"].append(run["requests_per_second"])
        entry["cpu_ms"].append(run["worker_cpu_ms_per_request"])
        entry["largest_rss"].append(run["worker_rss"][0])
    for entry in configs.values():
        entry["best_requests_per_second"] = max(entry["requests_per_second"])
    return configs


def print_table(args: argparse.Namespace, major: int, runs: list[dict[str, Any]]) -> None:
    configs = summary(runs)
    mix_model = runs[0]["model"]
    print(
        f"Odoo {major}, workers={args.workers}, {args.clients} clients, {args.seconds:g} s per "
        f"run, database {args.db}, backend mix on {mix_model} (7 requests), "
        f"{args.rounds} interleaved rounds"
    )
    print(
        f"{'config':<40} {'requests/s (each run)':<24} {'best':>7} {'largest worker RSS':>22}"
        f"  workers' CPU ms/request (each run)"
    )
    for config, entry in configs.items():
        each = ", ".join(f"{value:.1f}" for value in entry["requests_per_second"])
        rss = ", ".join(f"{value / 2**20:.0f}" for value in entry["largest_rss"])
        cpu = ", ".join(f"{value:.2f}" for value in entry["cpu_ms"])
        print(
            f"{config}: {CONFIGS[config]:<37} {each:<24} "
            f"{entry['best_requests_per_second']:>7.1f} {rss + ' MiB':>22}  {cpu}"
        )
    if "a" not in configs:
        return
    vanilla = configs["a"]
    for config, entry in configs.items():
        if config != "a":
            best = entry["best_requests_per_second"] / vanilla["best_requests_per_second"]
            median = statistics.median(entry["requests_per_second"]) / statistics.median(
                vanilla["requests_per_second"]
            )
            print(f"requests/s {config} / a: {best:.2f} best runs, {median:.2f} medians")
            cpu = statistics.median(entry["cpu_ms"]) / statistics.median(vanilla["cpu_ms"])
            print(f"workers' CPU per request {config} / a: {cpu:.2f} (medians)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    first.add_odoo_arguments(parser)
    parser.set_defaults(workers=2, configs="ac")
    parser.add_argument("--addons-path", required=True, help="Odoo's addons path")
    parser.add_argument("--db", required=True, help="database (base, web, demo data)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warm", type=int, default=3, help="untimed passes per client first")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each config, in turn")
    args = parser.parse_args()
    if args.monitor:
        parser.error("--monitor is odoo_first_requests.py's")
    if not set(args.configs) <= set(CONFIGS):
        parser.error(f"--configs: letters among {''.join(CONFIGS)}")
    args.workdir = tempfile.mkdtemp(prefix="bench-steady-")
    major = first.odoo_major(args)
    runs = []
    try:
        if not first.database_exists(args):
            raise Failure(f"database {args.db} does not exist")
        for round_ in range(1, args.rounds + 1):
            for config in args.configs:
                print(
                    f"round {round_}, config {config}: {CONFIGS[config]}",
                    file=sys.stderr,
                    flush=True,
                )
                run = run_once(args, config, major)
                run["round"] = round_
                runs.append(run)
                per_request = run["redis_commands_per_request"]
                redis_text = (
                    ", Redis per request: "
                    + ", ".join(f"{name} {count:.2f}" for name, count in per_request.items())
                    if per_request
                    else ""
                )
                print(
                    f"  {run['requests_per_second']:.1f} requests/s, largest worker "
                    f"{run['worker_rss'][0] / 2**20:.0f} MiB, workers' CPU "
                    f"{run['worker_cpu_ms_per_request']:.2f} ms/request{redis_text}",
                    file=sys.stderr,
                    flush=True,
                )
    except (Failure, OdooProcessError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print_table(args, major, runs)
    if args.json:
        report = {
            "major": major,
            "workers": args.workers,
            "clients": args.clients,
            "seconds": args.seconds,
            "runs": runs,
            "configs": summary(runs),
        }
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
