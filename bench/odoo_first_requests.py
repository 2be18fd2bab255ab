"""Real Odoo, ``workers = 4``: SQL queries and wall time of the first
requests after a restart (cold) and of the same requests on warm workers
(warm), with and without the addon.

For each configuration it starts ``odoo-bin`` (prefork, 4 workers, no cron
thread, a free HTTP port), logs in once as admin, sends the mix twice (the
warm-up: assets generated, Redis filled for config c), then, ``--repeat``
times: restarts Odoo and measures two phases, ``cold`` (the mix on the
fresh workers) and ``warm`` (the same requests again, after one more
unmeasured pass).

Mixes (``--mix``):

  home     (default) ``--requests`` page loads (default 50). One page load =
           ``GET /odoo`` (19; ``/web`` on 17/18) followed by the calls the web
           client makes when it starts: ``/web/webclient/version_info`` and
           ``/web/session/get_session_info`` (JSON-RPC), ``load_menus`` and
           ``translations`` (GET), and ``get_views`` of ``--views-model``
           (list, form, search; '' leaves it out).
  backend  ``--requests`` requests (default 51) of odoo_backend_mix.py (Odoo
           19 with ``sale_management``): ``/odoo``, session info, the sales
           orders' action, ``get_views`` (list, form, search),
           ``web_search_read`` and ``web_read_group`` on ``sale.order``, as
           the web client sends them.

Requests are sequential, one after the other, as one user.

Configurations (``--configs``, default ``abc``):

  a  Odoo without the addon
  b  addon loaded server-wide, L1 only (no ``ormcache_redis_url``)
  c  addon with Redis (its own redis-server, warm from the warm-up run and
     the earlier repetitions)

SQL queries: Odoo's own per-request counter (the thread's ``query_count``,
incremented by ``odoo.sql_db`` for every statement of the request,
including the ones of lazily loading a registry), which Odoo writes at the
end of each ``werkzeug`` access-log line (``... 200 - <queries> <sql s>
<other s>``). The script reads those lines from the log file between two
marker requests (``/web/health?bench=<id>``), so nothing is sampled or
guessed. Wall time: measured by this client around each request.

The login is excluded from the measurement: sessions are Odoo's files in
its data_dir, which survive restarts (the same cookie is used for
every run of one configuration).

    python bench/odoo_first_requests.py --odoo-bin /path/to/19/odoo-bin \\
        --python /path/to/venv19/bin/python \\
        --addons-path /path/to/19/odoo/addons,/path/to/19/addons \\
        --db ocr_meas_bench --create --db-host 127.0.0.1 --db-user odoo --db-password odoo \\
        [--mix backend] [--json figures.json]

It prints a Markdown table (medians of the restarts) and exits 0; 1 with a
line ``FAILED: <reason>`` on stderr when Odoo does not start, a request
fails or the log does not hold one access line per request.

``--json FILE`` writes (every number of queries is Odoo's count)::

    {
      "odoo": 19, "mix": "backend", "requests": 51, "requests_per_group": 1,
      "workers": 4, "repeat": 3, "database": "...",
      "configs": {
        "a": {
          "label": "Odoo without the addon",
          "median": {"cold": 1026, "warm": 505},
          "runs": [                                   # one per restart
            {"cold": PHASE, "warm": PHASE, "startup": seconds,
             "misses": {"<cache> <method>": n}}      # with --misses, b and c
          ]
        },
        "b": {...}, "c": {...}                        # the configs measured
      },
      "warmup_removed": {"b": 0.0, "c": 0.71}         # per config but a, when a
    }                                                 # was measured

    PHASE = {"queries": total, "per_request": [[path, queries], ...],
             "per_load_queries": [...],   # per group: a page load (home), a request (backend)
             "first_load_queries", "first5_queries", "median_load_queries",
             "last_load_queries", "sql_seconds", "wall", "first_load_wall",
             "median_load_wall",
             # config c only: Redis commands of the phase, keys, memory
             "redis_commands", "redis_commands_per_request",
             "redis_commands_per_busy_worker_second", "redis_keys", "redis_used_memory"}

``warmup_removed[x]`` = (a's cold - x's cold) / (a's cold - a's warm), of the
medians: the share of vanilla's warm-up SQL that config x does not run.

``--misses`` logs what each fresh worker still computed in the cold and warm
phases, per cache and method (the addon's ``kill -USR1`` figures, the
master's pre-fork counts subtracted).

``--monitor DIR`` records every command config c's Redis runs, from its
start (so the warm-up is the cold cluster), with ``redis-cli MONITOR`` in
``DIR/monitor-c.txt``, phases marked by ``ECHO bench:<phase>``, and the
figures the processes publish (per method: misses, computations) at the
end of each phase in ``DIR/stats-c-<phase>.json`` (published every second
then); bench/redis_locks.py counts the single-flight lock commands per
method. The Redis command counts of such a run include those publications.

Needs the ``ormcache_redis`` wheel in Odoo's Python (configs b, c) and a
``redis-server`` (config c). Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import odoo_backend_mix as backend_mix

from ormcache_redis.testing import OdooProcess, OdooProcessError, RedisServer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "a": "Odoo without the addon",
    "b": "addon, L1 only",
    "c": "addon + Redis (warm)",
}
ACCESS_LINE = re.compile(
    r'werkzeug: \S+ - - \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r"(?P<status>\d{3}) - (?P<queries>\d+) (?P<sql>[\d.]+) (?P<other>[\d.]+)"
)


Call = backend_mix.Call
PHASES = ("cold", "warm")


class Failure(RuntimeError):
    pass


def odoo_major(args: argparse.Namespace) -> int:
    out = subprocess.run(
        [args.python, "-c", "import odoo.release as r; print(r.version_info[0])"],
        capture_output=True, text=True, check=True, cwd=Path(args.odoo_bin).parent,
    )  # fmt: skip
    return int(out.stdout)


def addon_not_loaded(log_text: str) -> str | None:
    """Why the addon is not running in this Odoo log, or None when it is.
    Its start line is the proof: the module's name alone also appears in
    Odoo's "Couldn't load module ormcache_redis"."""
    if "Couldn't load module ormcache_redis" in log_text:
        return "Odoo could not load the addon"
    if "ormcache_redis: every process's caches hold at most" not in log_text:
        return "the addon's start line is missing"
    return None


def base_modules(args: argparse.Namespace) -> str:
    has_rpc = any((Path(p) / "rpc").is_dir() for p in args.addons_path.split(","))
    return "base,rpc,web" if has_rpc else "base,web"


def db_options(args: argparse.Namespace) -> list[str]:
    return [
        "--db_host", args.db_host, "--db_port", str(args.db_port),
        "--db_user", args.db_user, "--db_password", args.db_password,
    ]  # fmt: skip


def data_dir(args: argparse.Namespace) -> list[str]:
    return ["--data-dir", args.data_dir] if args.data_dir else []


def database_exists(args: argparse.Namespace) -> bool:
    import psycopg2

    connection = psycopg2.connect(
        host=args.db_host, port=args.db_port, user=args.db_user,
        password=args.db_password, dbname="postgres",
    )  # fmt: skip
    try:
        with connection.cursor() as cr:
            cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.db])
            return cr.fetchone() is not None
    finally:
        connection.close()


def create_database(args: argparse.Namespace, major: int, modules: str = "base,web") -> None:
    demo = ["--with-demo"] if major >= 19 else []
    command = [
        args.python, args.odoo_bin, "-c", "/dev/null", *db_options(args),
        "--addons-path", args.addons_path, "--load", base_modules(args),
        *data_dir(args), "-d", args.db, "-i", modules, *demo, "--stop-after-init",
    ]  # fmt: skip
    # sale_management with demo data takes minutes on a fast machine.
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise Failure(f"cannot create {args.db}: {result.stderr[-2000:]}")


class Odoo(OdooProcess):
    def __init__(self, args: argparse.Namespace, config: str, redis: RedisServer | None) -> None:
        self.args = args
        load = base_modules(args)
        addons = args.addons_path
        if config in ("b", "c"):
            load += ",ormcache_redis"
            addons = f"{args.addon_dir or REPO / 'odoo_addon'},{addons}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORMCACHE_REDIS_")}
        if redis is not None:
            env["ORMCACHE_REDIS_URL"] = redis.url
            if args.monitor:
                # Figures fresh enough for Monitor.snapshot.
                env["ORMCACHE_REDIS_METRICS_INTERVAL"] = str(Monitor.INTERVAL)
        if config in ("b", "c"):
            for option in args.option:
                name, _, value = option.partition("=")
                env[name.upper()] = value
        super().__init__(
            [
                args.python,
                args.odoo_bin,
                "-c",
                "/dev/null",
                *db_options(args),
                "--addons-path",
                addons,
                f"--load={load}",
                *data_dir(args),
                "-d",
                args.db,
                "--db-filter",
                f"^{re.escape(args.db)}$",
                "--workers",
                str(args.workers),
                "--max-cron-threads",
                "0",
                "--log-level",
                "info",
            ],
            Path(args.workdir) / f"odoo-{config}.log",
            env=env,
        )


class Monitor:
    """``--monitor DIR``: ``redis-cli MONITOR`` of one configuration's Redis,
    from before Odoo starts, in ``DIR/monitor-<config>.txt``; ``mark`` writes
    ``ECHO bench:<phase>`` into it, ``snapshot`` the figures the processes
    published (``ormcache-redis stats --json``: misses and computations per
    method, summed) in ``DIR/stats-<config>-<phase>.json``."""

    INTERVAL = 1  # seconds between two publications of a process's figures

    def __init__(self, args: argparse.Namespace, redis: RedisServer | None, config: str) -> None:
        self.redis = redis
        self.process: subprocess.Popen[bytes] | None = None
        self.config = config
        if not args.monitor or redis is None:
            return
        self.dir = Path(args.monitor)
        self.prefix = next(
            (o.partition("=")[2] for o in args.option if o.startswith("ormcache_redis_prefix=")),
            "ormcache:",
        )
        cli = shutil.which("redis-cli") or str(Path(args.redis_server).with_name("redis-cli"))
        Path(args.monitor).mkdir(parents=True, exist_ok=True)
        self.path = Path(args.monitor) / f"monitor-{config}.txt"
        with self.path.open("wb") as out:
            self.process = subprocess.Popen(
                [cli, "-p", str(redis.port), "MONITOR"], stdout=out, stderr=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 10
        while not self.path.read_bytes().startswith(b"OK"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise Failure(f"redis-cli MONITOR did not start ({cli})")
            time.sleep(0.05)

    def mark(self, phase: str) -> None:
        if self.process is not None and self.redis is not None:
            from ormcache_redis import RedisClient

            RedisClient(self.redis.url).execute("ECHO", f"bench:{phase}")

    def snapshot(self, phase: str) -> None:
        """Before Odoo stops: the live processes' figures of ``phase``."""
        if self.process is None or self.redis is None:
            return
        from ormcache_redis import RedisClient
        from ormcache_redis.metrics.cluster_reading import cluster_totals, read_cluster

        time.sleep(self.INTERVAL + 0.5)
        totals = cluster_totals(read_cluster(RedisClient(self.redis.url), self.prefix))
        path = self.dir / f"stats-{self.config}-{phase}.json"
        path.write_text(json.dumps(totals, indent=1, sort_keys=True))

    def close(self) -> None:
        if self.process is not None:
            time.sleep(0.5)  # the last commands reach the file
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    def __init__(self) -> None:
        self.sid: str | None = None

    def request(self, url: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
        headers = {"Cookie": f"session_id={self.sid}"} if self.sid else {}
        data = None
        if params is not None:
            data = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
            data = data.encode()
            headers["Content-Type"] = "application/json"
        try:
            with opener.open(urllib.request.Request(url, data, headers), timeout=120) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, content = error.code, error.read()
        for cookie in jar:
            if cookie.name == "session_id":
                self.sid = cookie.value
        return status, content


def home_calls(major: int, views_model: str = "") -> list[Call]:
    """What a browser does when it opens the backend home (and, with
    ``views_model``, an action of that model: its list, form and search
    views)."""
    home = "/odoo" if major >= 19 else "/web"
    unique = uuid.uuid4().hex[:16]  # a cache-busting hash, as the client's
    if major >= 19:
        menus, translations = "/web/webclient/load_menus", "/web/webclient/translations"
    else:
        menus = f"/web/webclient/load_menus/{unique}"
        translations = f"/web/webclient/translations/{unique}"
    calls: list[Call] = [
        (home, None),
        ("/web/webclient/version_info", {}),
        ("/web/session/get_session_info", {}),
        (menus, None),
        (f"{translations}?lang=en_US", None),
    ]
    if views_model:
        views = {
            "views": [[False, "list"], [False, "form"], [False, "search"]],
            "options": {"action_id": False, "load_filters": True, "toolbar": True},
            "context": {"lang": "en_US"},
        }
        calls.append(
            (
                f"/web/dataset/call_kw/{views_model}/get_views",
                {"model": views_model, "method": "get_views", "args": [], "kwargs": views},
            )
        )
    return calls


def send(client: Client, base: str, call: Call) -> None:
    path, params = call
    status, content = client.request(base + path, params)
    if status != 200:
        raise Failure(f"{path} answered {status}: {content[:300]!r}")
    if params is not None and b'"error"' in content[:200]:
        raise Failure(f"{path}: {content[:300]!r}")


def page_load(
    client: Client, base: str, major: int, views_model: str = ""
) -> list[tuple[str, int]]:
    """One page load of the home (see home_calls); returns the paths."""
    calls = home_calls(major, views_model)
    for call in calls:
        send(client, base, call)
    return [(path, 200) for path, _params in calls]


class Mix:
    """The measured requests: ``home`` (page loads of the backend home, each
    ``group`` requests) or ``backend`` (odoo_backend_mix, ``--requests``
    requests)."""

    def __init__(self, args: argparse.Namespace, major: int) -> None:
        self.args = args
        self.major = major
        self.name = args.mix
        self.round: list[Call] = []
        if self.name == "backend":
            if major < 19:
                raise Failure("--mix backend is written for Odoo 19 (sale_management)")
            self.group = 1
        else:
            self.group = len(home_calls(major, args.views_model))

    def prepare(self, client: Client, base: str) -> None:
        """Reads what the backend round needs (before any measurement)."""
        if self.name == "backend" and not self.round:
            try:
                self.round = backend_mix.resolve(client, base)
            except backend_mix.MixError as error:
                raise Failure(f"backend mix: {error}") from None

    def calls(self) -> list[Call]:
        if self.name == "backend":
            return backend_mix.calls(self.round, self.args.requests)
        return [
            call
            for _ in range(self.args.requests)
            for call in home_calls(self.major, self.args.views_model)
        ]

    def run(self, client: Client, base: str) -> list[float]:
        """Sends the mix; the client's wall time of each group."""
        walls, started = [], time.perf_counter()
        for index, call in enumerate(self.calls(), 1):
            send(client, base, call)
            if index % self.group == 0:
                now = time.perf_counter()
                walls.append(now - started)
                started = now
        return walls


def login(client: Client, odoo: Odoo, args: argparse.Namespace) -> None:
    status, content = client.request(
        odoo.url + "/web/session/authenticate",
        {"db": args.db, "login": args.login, "password": args.password},
    )
    reply = json.loads(content)
    if status != 200 or not reply.get("result", {}).get("uid"):
        raise Failure(f"login failed: {content[:300]!r}")


def redis_info(redis: RedisServer, *sections: str) -> dict[str, str]:
    """The ``field:value`` lines of Redis's ``INFO`` for these sections."""
    from ormcache_redis import RedisClient

    client = RedisClient(redis.url)
    text = "\n".join(
        reply.decode() if isinstance(reply, bytes) else str(reply)
        for reply in (client.execute("INFO", section) for section in sections)
    )
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_figures(redis: RedisServer) -> dict[str, int]:
    """Commands Redis ran so far (this INFO call included), its memory and keys."""
    from ormcache_redis import RedisClient

    fields = redis_info(redis, "stats", "memory")
    return {
        "commands": int(fields["total_commands_processed"]),
        "used_memory": int(fields["used_memory"]),
        "keys": int(RedisClient(redis.url).execute("DBSIZE")),
    }


def measured_window(
    client: Client, odoo: Odoo, mix: Mix, redis: RedisServer | None
) -> dict[str, Any]:
    """Sends the mix once between two marker requests; Odoo's SQL counter
    of each request, read from the access lines between the markers."""
    mark = uuid.uuid4().hex
    client.request(f"{odoo.url}/web/health?bench={mark}-start")
    redis_before = redis_figures(redis) if redis is not None else None
    started = time.perf_counter()
    group_walls = mix.run(client, odoo.url)
    wall = time.perf_counter() - started
    redis_after = redis_figures(redis) if redis is not None else None
    client.request(f"{odoo.url}/web/health?bench={mark}-end")
    # Workers write their access lines after answering: wait for the marker.
    deadline = time.monotonic() + 10
    while f"bench={mark}-end" not in odoo.log_text():
        if time.monotonic() > deadline:
            raise Failure("end marker not in the log")
        time.sleep(0.1)
    text = odoo.log_text()
    window = text.split(f"bench={mark}-start", 1)[1].split(f"bench={mark}-end", 1)[0]
    lines = [m for m in ACCESS_LINE.finditer(window) if not m["path"].startswith("/web/health")]
    expected = len(group_walls) * mix.group
    if len(lines) != expected:
        raise Failure(f"{len(lines)} access lines in the window, expected {expected}")
    queries = [int(m["queries"]) for m in lines]
    group = mix.group
    per_group = [sum(queries[i : i + group]) for i in range(0, len(queries), group)]
    redis_load = {}
    if redis_before is not None and redis_after is not None:
        # Redis commands of the measured requests (the 3 INFO/DBSIZE
        # calls of redis_figures excluded). Requests are sequential, so one
        # worker at a time was busy: commands per second of wall time is
        # the load of one worker serving requests back to back.
        commands = redis_after["commands"] - redis_before["commands"] - 3
        redis_load = {
            "redis_commands": commands,
            "redis_commands_per_request": commands / expected,
            "redis_commands_per_busy_worker_second": commands / wall,
            "redis_used_memory": redis_after["used_memory"],
            "redis_keys": redis_after["keys"],
        }
    return {
        **redis_load,
        "queries": sum(queries),
        "per_request": [[m["path"], int(m["queries"])] for m in lines],
        "first_load_queries": per_group[0],
        "first5_queries": sum(per_group[:5]),
        "median_load_queries": statistics.median(per_group),
        "last_load_queries": per_group[-1],
        "per_load_queries": per_group,
        "sql_seconds": sum(float(m["sql"]) for m in lines),
        "wall": wall,
        "first_load_wall": group_walls[0],
        "median_load_wall": statistics.median(group_walls),
    }


def measured_run(client: Client, odoo: Odoo, mix: Mix, redis: RedisServer | None) -> dict[str, Any]:
    """The phases of one restart: ``cold``, the mix on the fresh workers;
    ``warm``, the same requests once every worker has served the mix
    (after one more unmeasured pass)."""
    cold = measured_window(client, odoo, mix, redis)
    mix.run(client, odoo.url)
    warm = measured_window(client, odoo, mix, redis)
    return {"cold": cold, "warm": warm}


STATS_RECORD = re.compile(r"^\S+ \S+ (?P<pid>\d+) INFO \S+ \S+: ormcache_redis \S+: registry", re.M)
CACHE_LINE = re.compile(r"^\s*(?P<cache>[\w.]+): \d+/\d+ entries\b")
METHOD_LINE = re.compile(r"miss\s+(?P<misses>\d+), lookups\s+\d+\s+(?P<method>\S+)$")


def worker_misses(odoo: Odoo) -> dict[str, int]:
    """The misses of the fresh workers (the measured window), per ``cache
    method``, summed over workers; read from the addon's ``kill -USR1``
    figures. Workers inherit the counters of the master's registry load
    before the fork: the master's figures are subtracted."""
    assert odoo.process is not None
    master = odoo.process.pid
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            workers.append(int(stat.parent.name))
    mark = len(odoo.log_text())
    for pid in list(workers):
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            # A child that ended since the listing (Odoo replaces workers).
            workers.remove(pid)
    os.kill(master, signal.SIGUSR1)
    processes = {master, *workers}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)
        text = odoo.log_text()[mark:]
        if {int(m["pid"]) for m in STATS_RECORD.finditer(text)} >= processes:
            break
    text = odoo.log_text()[mark:]
    misses: dict[str, int] = {}
    starts = list(STATS_RECORD.finditer(text))
    for start, end in zip(starts, [*starts[1:], None], strict=True):
        pid = int(start["pid"])
        if pid not in processes:
            continue
        # The master's counters are in every worker (copied at the fork).
        sign = -len(workers) if pid == master else 1
        record = text[start.start() : end.start() if end else len(text)]
        cache = "?"
        for line in record.splitlines()[1:]:
            if cache_line := CACHE_LINE.match(line):
                cache = cache_line["cache"]
            elif method_line := METHOD_LINE.search(line):
                name = f"{cache} {method_line['method']}"
                misses[name] = misses.get(name, 0) + sign * int(method_line["misses"])
    return misses


def print_misses(config: str, misses: dict[str, int]) -> None:
    print(f"  {config}: misses in the 4 fresh workers, per cache and method:", file=sys.stderr)
    for name, count in sorted(misses.items(), key=lambda item: -item[1]):
        if count:
            print(f"    {count:5d}  {name}", file=sys.stderr)


def run_config(args: argparse.Namespace, config: str, mix: Mix) -> list[dict[str, Any]]:
    redis = RedisServer(args.redis_server).start() if config == "c" else None
    odoo = Odoo(args, config, redis)
    client = Client()
    results = []
    monitor = Monitor(args, redis, config)
    try:
        monitor.mark("warm-up")
        odoo.start()
        login(client, odoo, args)
        mix.prepare(client, odoo.url)
        for _ in range(2):  # warm-up: assets, Redis (c)
            mix.run(client, odoo.url)
        monitor.snapshot("warm-up")
        odoo.stop()
        for repetition in range(args.repeat):
            monitor.mark(f"restart-{repetition + 1}")
            startup = odoo.start()
            result: dict[str, Any] = measured_run(client, odoo, mix, redis)
            result["startup"] = startup
            if args.misses and config in ("b", "c"):
                result["misses"] = worker_misses(odoo)
                print_misses(config, result["misses"])
            monitor.snapshot(f"restart-{repetition + 1}")
            odoo.stop()
            results.append(result)
            cold, warm = result["cold"], result["warm"]
            print(
                f"  {config} run {repetition + 1}: {cold['queries']} queries cold, "
                f"{warm['queries']} warm, wall {cold['wall']:.2f}s cold, first "
                f"{'request' if mix.group == 1 else 'page load'} {cold['first_load_queries']} "
                f"queries {cold['first_load_wall'] * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
            if "redis_commands" in cold:
                print(
                    f"  {config} run {repetition + 1}: Redis {cold['redis_commands']} commands "
                    f"({cold['redis_commands_per_request']:.1f}/request, "
                    f"{cold['redis_commands_per_busy_worker_second']:.0f}/s of a busy "
                    f"worker), {cold['redis_keys']} keys, "
                    f"{cold['redis_used_memory'] / 1e6:.1f} MB used",
                    file=sys.stderr,
                    flush=True,
                )
        if config in ("b", "c"):
            text = odoo.log_text()
            if (reason := addon_not_loaded(text)) is not None:
                raise Failure(f"config {config}: {reason}; see {odoo.log}")
            if config == "c" and "shared caches" not in text:
                raise Failure(f"config c: no Redis tier; see {odoo.log}")
    finally:
        odoo.stop()
        monitor.close()
        if redis is not None:
            redis.close()
    return results


def median_of(runs: list[dict[str, Any]], phase: str, field: str) -> float:
    return statistics.median(run[phase][field] for run in runs)


def warmup_removed(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Per configuration, the share of vanilla's warm-up SQL (a's cold minus
    a's warm, medians) that its cold phase does not run."""
    if "a" not in results:
        return {}
    vanilla_cold = median_of(results["a"], "cold", "queries")
    warmup = vanilla_cold - median_of(results["a"], "warm", "queries")
    if warmup <= 0:
        return {}
    return {
        config: (vanilla_cold - median_of(runs, "cold", "queries")) / warmup
        for config, runs in results.items()
        if config != "a"
    }


def report(
    results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, mix: Mix
) -> dict[str, Any]:
    """The ``--json`` document (see the module's docstring)."""
    return {
        "odoo": mix.major,
        "mix": mix.name,
        "requests": len(mix.calls()),
        "requests_per_group": mix.group,
        "workers": args.workers,
        "repeat": args.repeat,
        "database": args.db,
        "configs": {
            config: {
                "label": CONFIGS[config],
                "median": {phase: median_of(runs, phase, "queries") for phase in PHASES},
                "runs": runs,
            }
            for config, runs in results.items()
        },
        "warmup_removed": warmup_removed(results),
    }


def table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    unit = "requests" if args.mix == "backend" else "page loads"
    one = "request" if args.mix == "backend" else "page load"
    n = args.requests
    removed = warmup_removed(results)
    header = (
        f"| config | SQL queries, {n} {unit}, cold | warm | warm-up (cold - warm) | "
        f"vanilla warm-up removed | queries, 1st {one} | queries, first 5 {unit} | "
        f"wall s, {n} {unit} | 1st {one} ms |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for config, runs in results.items():

        def med(field: str, phase: str = "cold", runs: list[dict[str, Any]] = runs) -> float:
            return median_of(runs, phase, field)

        share = f"{removed[config] * 100:.0f} %" if config in removed else "-"
        lines.append(
            f"| {config}: {CONFIGS[config]} | {med('queries'):.0f} | "
            f"{med('queries', 'warm'):.0f} | {med('queries') - med('queries', 'warm'):.0f} | "
            f"{share} | {med('first_load_queries'):.0f} | {med('first5_queries'):.0f} | "
            f"{med('wall'):.2f} | {med('first_load_wall') * 1000:.0f} |"
        )
    return "\n".join(lines)


def add_odoo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every real-Odoo benchmark takes (``Odoo`` reads them)."""
    parser.add_argument("--odoo-bin", required=True)
    parser.add_argument("--python", default=sys.executable, help="Odoo's Python")
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", default="5432")
    parser.add_argument("--db-user", default="odoo")
    parser.add_argument("--db-password", default="odoo")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--configs", default="abc")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--data-dir", help="Odoo data_dir (default: Odoo's own)")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument(
        "--addon-dir",
        help="the directory holding the ormcache_redis addon, e.g. an export of the "
        "commit the installed wheel was built from (default: this checkout's odoo_addon)",
    )
    parser.add_argument(
        "--monitor",
        metavar="DIR",
        help="record config c's Redis commands (redis-cli MONITOR) in DIR/monitor-c.txt",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an ormcache_redis option for configs b and c, e.g. "
        "ormcache_redis_shared_caches=default,stable,assets,templates",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_odoo_arguments(parser)
    parser.add_argument("--addons-path", required=True, help="Odoo's addons path")
    parser.add_argument("--db", default="ocr_meas_bench", help="database")
    parser.add_argument(
        "--create",
        action="store_true",
        help="create it if missing, with demo data (base and web; sale_management for "
        "--mix backend)",
    )
    parser.add_argument(
        "--mix",
        choices=("home", "backend"),
        default="home",
        help="home: page loads of the backend home; backend: the requests of "
        "odoo_backend_mix (Odoo 19, sale_management)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        help="page loads (home, default 50) or requests (backend, default 51) measured",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured restarts per config")
    parser.add_argument(
        "--views-model",
        default="res.partner",
        help="home: each page load also opens this model's list/form/search views ('' = no)",
    )
    parser.add_argument(
        "--misses",
        action="store_true",
        help="after each measured run, log each worker's misses per cache and method",
    )
    args = parser.parse_args()
    if args.requests is None:
        args.requests = 51 if args.mix == "backend" else 50
    args.workdir = tempfile.mkdtemp(prefix="bench-odoo-")
    major = odoo_major(args)
    try:
        mix = Mix(args, major)
        if not database_exists(args):
            if not args.create:
                raise Failure(f"database {args.db} does not exist (pass --create)")
            modules = "sale_management" if args.mix == "backend" else "base,web"
            print(f"creating {args.db} ({modules}, demo data)", file=sys.stderr, flush=True)
            create_database(args, major, modules)
        results = {}
        for config in args.configs:
            print(f"config {config}: {CONFIGS[config]}", file=sys.stderr, flush=True)
            results[config] = run_config(args, config, mix)
    except (Failure, OdooProcessError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    if args.mix == "backend":
        what = (
            f"first {args.requests} requests of the backend mix (odoo_backend_mix) after a "
            f"restart (cold) and the same requests on warm workers (warm)"
        )
    else:
        views = f" + get_views of {args.views_model}" if args.views_model else ""
        what = (
            f"first {args.requests} page loads after a restart (each: home + version_info + "
            f"get_session_info + load_menus + translations{views}; warm: the same on warm "
            f"workers)"
        )
    print(
        f"Odoo {major}, workers={args.workers}, database {args.db}, {what}, "
        f"median of {args.repeat} restarts"
    )
    print(table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(report(results, args, mix), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
