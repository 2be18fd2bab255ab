"""Real Odoo, ``workers = 4``: the dashboard workload of the example addon
(examples/odoo/ormcache_redis_sale_dashboard), vanilla against the addon.

One expensive method (confirmed sales per product category and per
salesperson and month, cached per company with plain ``odoo.tools.ormcache``)
is called by many concurrent users through ``GET
/ormcache_redis_sale_dashboard/data`` and cleared when an order is confirmed.
For each configuration it starts ``odoo-bin`` (prefork, 4 workers, a fresh
redis-server for c) and measures:

  cold      200 calls from 16 concurrent clients right after the start
  clear     an order created and confirmed, then 16 concurrent calls
            (3 rounds): every answer must show the confirmed order
  restart   Odoo restarted (Redis kept), 40 calls from 16 clients

Computations: the lines the method logs, one per computation in any worker.
SQL queries: Odoo's own per-request count at the end of each access-log line
(see odoo_first_requests.py). Latency: measured by the client, p50.
``--monitor DIR``: config c's Redis commands in ``DIR/monitor-c.txt`` and
the published figures after each phase, as odoo_first_requests.py (phases:
cold, clear-1..3, restart).

Configurations: a = Odoo without the addon (the example falls back to
clearing the whole cache), b = addon loaded server-wide without Redis
(L1 only), c = addon with Redis (L1 + L2).

``--decorator addon`` measures the same example with the addon's own
decorator (``from odoo.addons.ormcache_redis import ormcache``) instead of
plain ``odoo.tools.ormcache``: the addons path gets a copy of the example
in the run's temporary directory with that import (Odoo's own when the
addon is not loaded: config a is the same either way). ``--no-switch``
leaves the example's ``set_single_flight(..., True)`` out of that copy:
single flight is then decided by the method's cost (unknown at first).

    python bench/odoo_dashboard.py --odoo-bin /path/to/19full/odoo-bin \\
        --python /path/to/venv19/bin/python \\
        --addons-path /path/to/19full/addons,examples/odoo --db dash19_bench

The database must have ``sale_management`` (with demo data); the example
addon is installed into it when missing. Needs the ``ormcache_redis`` wheel
in Odoo's Python. Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import odoo_first_requests as first

from ormcache_redis.testing import OdooProcessError, RedisServer

EXAMPLE = "ormcache_redis_sale_dashboard"
ROUTE = "/ormcache_redis_sale_dashboard/data"
COMPUTED = "ormcache_redis_sale_dashboard: dashboard computed"
CONFIGS = {"a": "vanilla Odoo", "b": "addon, L1 only", "c": "addon, L1 + Redis"}
DECORATORS = {
    "odoo": "plain odoo.tools.ormcache",
    "addon": "the addon's decorator (odoo.addons.ormcache_redis.ormcache)",
}
PLAIN_IMPORT = "from odoo.tools import ormcache\n"
ADDON_IMPORT = (
    "try:\n"
    "    from odoo.addons.ormcache_redis import ormcache\n"
    "except ImportError:  # the addon is not loaded (config a)\n"
    "    from odoo.tools import ormcache\n"
)
SWITCH_LINE = "    set_single_flight(SaleDashboard._dashboard_rows.__cache__.method, True)\n"


def example_variant(args: argparse.Namespace) -> str:
    """With --decorator addon or --no-switch: a copy of the example with
    that change, in the run's directory, in place of the original on the
    addons path; returns what was changed."""
    if args.decorator == "odoo" and args.switch:
        return "the example as is"
    paths = args.addons_path.split(",")
    source = next((p for p in paths if (Path(p) / EXAMPLE).is_dir()), None)
    if source is None:
        raise first.Failure(f"{EXAMPLE} is on no entry of --addons-path")
    target = Path(args.workdir) / "examples"
    shutil.copytree(Path(source) / EXAMPLE, target / EXAMPLE)
    model = target / EXAMPLE / "models" / "sale_dashboard.py"
    text = model.read_text()
    changes = []
    for wanted, old, new, change in [
        (args.decorator == "addon", PLAIN_IMPORT, ADDON_IMPORT, "the addon's decorator"),
        (not args.switch, SWITCH_LINE, "    pass\n", "no set_single_flight switch"),
    ]:
        if wanted:
            if text.count(old) != 1:
                raise first.Failure(f"{model.name} no longer has {old.strip()!r}")
            text = text.replace(old, new)
            changes.append(change)
    model.write_text(text)
    args.addons_path = ",".join(str(target) if p == source else p for p in paths)
    return "a copy of the example with " + " and ".join(changes)


def install_example(args: argparse.Namespace) -> None:
    command = [
        args.python, args.odoo_bin, "-c", "/dev/null", *first.db_options(args),
        "--addons-path", args.addons_path, "--load", first.base_modules(args),
        *first.data_dir(args), "-d", args.db, "-i", EXAMPLE, "--stop-after-init",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise first.Failure(f"cannot install {EXAMPLE}: {result.stderr[-2000:]}")


class Window:
    """The log lines written between two marker requests."""

    def __init__(self, odoo: first.Odoo, client: first.Client) -> None:
        self.odoo, self.client = odoo, client
        self.mark = uuid.uuid4().hex

    def __enter__(self) -> Window:
        self.client.request(f"{self.odoo.url}/web/health?bench={self.mark}-start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.request(f"{self.odoo.url}/web/health?bench={self.mark}-end")
        deadline = time.monotonic() + 10
        while f"bench={self.mark}-end" not in self.odoo.log_text():
            if time.monotonic() > deadline:
                raise first.Failure("end marker not in the log")
            time.sleep(0.1)
        text = self.odoo.log_text()
        self.text = text.split(f"bench={self.mark}-start", 1)[1].split(f"bench={self.mark}-end", 1)[
            0
        ]

    def computations(self) -> int:
        return self.text.count(COMPUTED)

    def route_queries(self) -> int:
        return sum(
            int(m["queries"]) for m in first.ACCESS_LINE.finditer(self.text) if m["path"] == ROUTE
        )


def concurrent_calls(client: first.Client, odoo: first.Odoo, calls: int) -> list[tuple]:
    """``calls`` GETs of the dashboard from 16 threads sharing one session,
    released together; returns (seconds, answer) per call."""
    start = threading.Barrier(16)
    per_thread = [calls // 16 + (1 if i < calls % 16 else 0) for i in range(16)]

    def caller(count: int) -> list[tuple]:
        own = first.Client()
        own.sid = client.sid
        start.wait()
        answers = []
        for _ in range(count):
            t0 = time.perf_counter()
            status, content = own.request(odoo.url + ROUTE)
            if status != 200:
                raise first.Failure(f"{ROUTE} answered {status}: {content[:300]!r}")
            answers.append((time.perf_counter() - t0, content))
        return answers

    with ThreadPoolExecutor(16) as pool:
        return [a for answers in pool.map(caller, per_thread) for a in answers]


def call_kw(client: first.Client, odoo: first.Odoo, model: str, method: str, *args: Any) -> Any:
    status, content = client.request(
        f"{odoo.url}/web/dataset/call_kw/{model}/{method}",
        {"model": model, "method": method, "args": list(args), "kwargs": {}},
    )
    reply = json.loads(content)
    if status != 200 or "error" in reply:
        raise first.Failure(f"{model}.{method}: {content[:500]!r}")
    return reply["result"]


def confirm_new_order(client: first.Client, odoo: first.Odoo) -> None:
    partner = call_kw(client, odoo, "res.partner", "search", [["customer_rank", ">", 0]])[0]
    product = call_kw(client, odoo, "product.product", "search", [["sale_ok", "=", True]])[0]
    line = {"product_id": product, "product_uom_qty": 2}
    order = call_kw(
        client, odoo, "sale.order", "create", {"partner_id": partner, "order_line": [[0, 0, line]]}
    )
    call_kw(client, odoo, "sale.order", "action_confirm", [order])


def measure(window: Window, answers: list[tuple]) -> dict[str, Any]:
    return {
        "calls": len(answers),
        "computations": window.computations(),
        "queries": window.route_queries(),
        "p50_ms": statistics.median(seconds for seconds, _ in answers) * 1000,
    }


def run_config(args: argparse.Namespace, config: str) -> dict[str, Any]:
    redis = RedisServer(args.redis_server).start() if config == "c" else None
    odoo = first.Odoo(args, config, redis)
    client = first.Client()
    result: dict[str, Any] = {}
    monitor = first.Monitor(args, redis, config)
    try:
        monitor.mark("cold")
        odoo.start()
        first.login(client, odoo, args)
        with Window(odoo, client) as window:
            answers = concurrent_calls(client, odoo, 200)
        result["cold"] = measure(window, answers)
        monitor.snapshot("cold")
        rounds, stale = [], 0
        for round_ in range(3):
            monitor.mark(f"clear-{round_ + 1}")
            before = concurrent_calls(client, odoo, 16)[0][1]
            confirm_new_order(client, odoo)
            with Window(odoo, client) as window:
                answers = concurrent_calls(client, odoo, 16)
            stale += sum(1 for _, content in answers if content == before)
            rounds.append(measure(window, answers))
            monitor.snapshot(f"clear-{round_ + 1}")
        result["clear"] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]} | {
            "stale": stale,
            "calls": sum(r["calls"] for r in rounds),
        }
        odoo.stop()
        monitor.mark("restart")
        odoo.start()
        with Window(odoo, client) as window:
            answers = concurrent_calls(client, odoo, 40)
        result["restart"] = measure(window, answers)
        monitor.snapshot("restart")
    finally:
        odoo.stop()
        monitor.close()
        if redis is not None:
            redis.close()
    return result


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | measure | " + " | ".join(CONFIGS[c] for c in results) + " |",
        "|---|---|" + "--:|" * len(results),
    ]
    measures = ["computations", "queries", "p50_ms"]
    rows = [
        ("cold: 200 calls, 16 clients", "cold", measures),
        ("clear: order confirmed, 16 calls (median of 3)", "clear", [*measures, "stale"]),
        ("restart: 40 calls, 16 clients", "restart", measures),
    ]
    for label, scenario, measures in rows:
        for name in measures:
            cells = []
            for config in results:
                value = results[config][scenario][name]
                cells.append(f"{value:.1f}" if name == "p50_ms" else f"{value:.0f}")
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    first.add_odoo_arguments(parser)
    parser.add_argument("--addons-path", required=True, help="with examples/odoo on it")
    parser.add_argument("--db", required=True, help="a database with sale_management")
    parser.add_argument(
        "--decorator",
        choices=sorted(DECORATORS),
        default="odoo",
        help="the decorator of the cached method (default: odoo, as the example)",
    )
    parser.add_argument(
        "--no-switch",
        dest="switch",
        action="store_false",
        help="without the example's set_single_flight(..., True)",
    )
    args = parser.parse_args()
    args.workdir = tempfile.mkdtemp(prefix="bench-dashboard-")
    try:
        if not first.database_exists(args):
            raise first.Failure(f"database {args.db} does not exist")
        variant = example_variant(args)
        install_example(args)
        results = {}
        for config in args.configs:
            print(f"config {config}: {CONFIGS[config]}", file=sys.stderr, flush=True)
            results[config] = run_config(args, config)
    except (first.Failure, OdooProcessError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"Odoo {first.odoo_major(args)}, workers={args.workers}, database {args.db}")
    print(f"cached with {DECORATORS[args.decorator]}: {variant}")
    print(table(results))
    if args.json:
        meta = {"decorator": args.decorator, "switch": args.switch}
        Path(args.json).write_text(json.dumps({"run": meta, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
