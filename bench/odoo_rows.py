"""The real-Odoo rows of ``make bench ODOO=/path/to/odoo``, beside vanilla.

Given an Odoo source tree (17.0, 18.0 or 19.0) and a Python that runs it,
``bench/run.py --odoo TREE --odoo-python PYTHON`` adds three measures to
the engine's table, each from its own script:

  hit at the call sites   bench/odoo_hit_path.py in ``odoo-bin shell``:
                          the addon's hit against Odoo's, same key and
                          varied keys (seconds per call, best round)
  cold start              bench/odoo_first_requests.py (``workers = 4``):
                          the share of the warm-up SQL of fresh workers
                          that the addon with warm Redis removes
  steady state            bench/odoo_steady_state.py (``workers = 2``, 6
                          clients): requests per second and the largest
                          worker's memory, addon (Redis, sessions in
                          Redis) against vanilla

The database is ``ormcache_bench_<major>`` (``base`` and ``web`` with demo
data), or ``ormcache_bench_<major>_sale`` with ``sale_management`` when
the tree has it; it is created on first use (a few minutes) and kept.
Odoo runs this checkout: its ``python/`` comes first on Odoo's
``PYTHONPATH`` and its ``odoo_addon/`` first on the addons path, so
``make bench`` (which builds the extension in place) measures the code
beside it. Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from chart import Ratio

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HIT_PATH_MARK = "odoo_hit_path.json: "
# Cold start, the home mix: page loads (6 requests each) after a restart.
COLD_PAGE_LOADS = 10
# The hit rows drawn in the chart (the table shows them all), by the start
# of their name in odoo_hit_path.py: their label there and their target.
CHARTED_HITS = {
    "model_data._xmlid_lookup(xmlid)": ("hit, same key, record in hand", "(info)"),
    'env["ir.model.data"]._xmlid_lookup, ': ("hit, _xmlid_lookup over 256 xmlids", "<= 0.5"),
    'env["ir.config_parameter"]._get_param, ': ("hit, _get_param over every key", "<= 0.5"),
    "env.user.has_group, ": ("hit, has_group over 4 groups", "<= 0.5"),
    "request work: the mix": ("steady state in process, CPU", "<= 1.0"),
}


class OdooBenchError(RuntimeError):
    """The Odoo rows cannot be measured (the message says why)."""


@dataclass(frozen=True)
class OdooRow:
    name: str
    ours: str
    vanilla: str
    ratio: float  # ours / vanilla, lower is better
    target: str
    chart_label: str | None = None  # None: in the table only
    note: str = ""  # printed under the table


@dataclass
class OdooTree:
    """What the three scripts need to know of the tree and the database."""

    root: Path
    python: str
    postgres: str
    database: str = ""
    major: int = 0
    modules: str = "base,web"

    @property
    def odoo_bin(self) -> str:
        return str(self.root / "odoo-bin")

    @property
    def addons_path(self) -> str:
        return f"{self.root / 'odoo' / 'addons'},{self.root / 'addons'}"

    def db_options(self) -> list[str]:
        """The scripts' database options, from the ``postgresql://`` URL."""
        url = urlsplit(self.postgres)
        if url.scheme not in ("postgresql", "postgres") or not url.hostname:
            raise OdooBenchError(
                f"--odoo-postgres: postgresql://user:password@host:port, not {self.postgres!r}"
            )
        return [
            "--db-host", url.hostname, "--db-port", str(url.port or 5432),
            "--db-user", unquote(url.username or ""), "--db-password", unquote(url.password or ""),
        ]  # fmt: skip

    def script_options(self) -> list[str]:
        return [
            "--odoo-bin", self.odoo_bin, "--python", self.python,
            "--addons-path", self.addons_path, "--db", self.database, *self.db_options(),
        ]  # fmt: skip


def odoo_environment(**extra: str) -> dict[str, str]:
    """The environment of every Odoo process: this checkout's package first."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "python"), env.get("PYTHONPATH", "")) if p
    )
    return env


def prepare(root: str, python: str, postgres: str, database: str | None) -> OdooTree:
    """Checks the tree and its Python, and creates the database if missing."""
    tree = OdooTree(Path(root).resolve(), python, postgres)
    if not (tree.root / "odoo-bin").is_file():
        raise OdooBenchError(f"ODOO={root}: no odoo-bin there (give an Odoo source tree)")
    code = "import odoo.cli, odoo.release as r, ormcache_redis._native; print(r.version_info[0])"
    probe = subprocess.run(
        [python, "-c", code], cwd=tree.root, env=odoo_environment(), capture_output=True, text=True
    )
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise OdooBenchError(
            f"ODOO_PYTHON={python} cannot import Odoo from {root} and this checkout's "
            f"ormcache_redis (give the Python of Odoo's virtualenv): {last_line}"
        )
    tree.major = int(probe.stdout)
    if tree.major not in (17, 18, 19):
        raise OdooBenchError(f"Odoo {tree.major}: the addon supports 17.0, 18.0 and 19.0")
    has_sale = (tree.root / "addons" / "sale_management").is_dir()
    tree.modules = "sale_management,web" if has_sale else "base,web"
    suffix = "_sale" if has_sale else ""
    tree.database = database or f"ormcache_bench_{tree.major}{suffix}"
    if not first_requests().database_exists(script_args(tree)):
        create_database(tree)
    return tree


def script_args(tree: OdooTree) -> argparse.Namespace:
    """The tree's options as odoo_first_requests.py parses them."""
    first = first_requests()
    parser = argparse.ArgumentParser()
    first.add_odoo_arguments(parser)
    parser.add_argument("--addons-path")
    parser.add_argument("--db")
    return parser.parse_args(tree.script_options())


def create_database(tree: OdooTree) -> None:
    print(
        f"odoo: creating database {tree.database} ({tree.modules}, demo data; a few minutes)",
        flush=True,
    )
    first = first_requests()
    try:
        first.create_database(script_args(tree), tree.major, tree.modules)
    except first.Failure as error:
        raise OdooBenchError(str(error)) from None


def first_requests() -> types.ModuleType:
    """bench/odoo_first_requests.py, whose database and Odoo helpers the
    rows share."""
    sys.path.insert(0, str(BENCH))
    import odoo_first_requests

    return odoo_first_requests


def run_script(command: Sequence[str], *, stdin: str | None = None, **env: str) -> str:
    """Runs one benchmark, its progress (stderr) shown as it goes; its output."""
    result = subprocess.run(
        command,
        input=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env=odoo_environment(**env),
        cwd=REPO,
    )
    if result.returncode != 0:
        tail = result.stdout[-2000:]
        raise OdooBenchError(f"{' '.join(command[:3])}... failed ({result.returncode}): {tail}")
    return result.stdout


def hit_rows(tree: OdooTree) -> list[OdooRow]:
    from ormcache_redis.testing import RedisServer

    first = first_requests()
    print(f"odoo: the hit at the call sites (odoo-bin shell, {tree.database})", flush=True)
    modules = first.base_modules(script_args(tree))
    options = [o.replace("--db-", "--db_") for o in tree.db_options()]
    command = [
        tree.python, tree.odoo_bin, "shell", "-c", "/dev/null", *options,
        "--addons-path", f"{REPO / 'odoo_addon'},{tree.addons_path}",
        f"--load={modules},ormcache_redis", "-d", tree.database, "--no-http", "--log-level", "warn",
    ]  # fmt: skip
    with RedisServer() as redis:
        script = (BENCH / "odoo_hit_path.py").read_text()
        out = run_script(
            command, stdin=script, ORMCACHE_REDIS_URL=redis.url, ORMCACHE_REDIS_BENCH=str(BENCH)
        )
    report = None
    for line in out.splitlines():
        if line.startswith(HIT_PATH_MARK):
            report = json.loads(line[len(HIT_PATH_MARK) :])
        else:
            print(f"  {line}")
    if report is None:
        raise OdooBenchError(f"odoo_hit_path.py printed no figures: {out[-2000:]}")
    rows = []
    for row in report["rows"]:
        label, target = next(
            (charted for start, charted in CHARTED_HITS.items() if row["call"].startswith(start)),
            (None, "(info)"),
        )
        work = row["call"].startswith("request work")
        rows.append(
            OdooRow(
                row["call"] if work else f"hit: {row['call']}",
                f"{row['ours'] * 1e3:.2f}ms" if work else f"{row['ours'] * 1e6:.2f}us",
                f"{row['vanilla'] * 1e3:.2f}ms" if work else f"{row['vanilla'] * 1e6:.2f}us",
                row["ours"] / row["vanilla"],
                target,
                label,
            )
        )
    return rows


def cold_start_rows(tree: OdooTree, repeat: int) -> list[OdooRow]:
    """The share of the fresh workers' warm-up SQL the addon removes, from
    bench/odoo_first_requests.py: (vanilla cold - addon cold) / (vanilla
    cold - vanilla warm), medians of the restarts. The mix is the backend
    one (sale.order) on 19 with ``sale_management``, page loads of the
    home otherwise."""
    mix = "backend" if tree.major >= 19 and "sale_management" in tree.modules else "home"
    # The backend mix is 51 requests; 10 page loads of the home are 60.
    requests = ["--requests", str(COLD_PAGE_LOADS)] if mix == "home" else []
    print(f"odoo: cold start, the {mix} mix after a restart, configs a and c", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-odoo-") as workdir:
        figures = Path(workdir) / "first_requests.json"
        command = [
            sys.executable, str(BENCH / "odoo_first_requests.py"), *tree.script_options(),
            "--configs", "ac", "--mix", mix, *requests, "--repeat", str(repeat),
            "--json", str(figures),
        ]  # fmt: skip
        out = run_script(command)
        print("\n".join(f"  {line}" for line in out.splitlines()))
        results = json.loads(figures.read_text())
    vanilla, addon = results["configs"]["a"]["median"], results["configs"]["c"]["median"]
    if "c" not in results["warmup_removed"]:
        raise OdooBenchError(f"cold start: no warm-up SQL in vanilla ({vanilla})")
    removed = results["warmup_removed"]["c"]
    note = (
        f"cold start: {removed:.0%} of vanilla's warm-up SQL removed (goal >= 85%): "
        f"(vanilla cold {vanilla['cold']:.0f} - addon cold {addon['cold']:.0f}) / "
        f"(vanilla cold - vanilla warm {vanilla['warm']:.0f}), {results['requests']} "
        f"requests of the {mix} mix"
    )
    return [
        OdooRow(
            f"cold start: SQL of the {mix} mix, warm-up left",
            f"{addon['cold']:.0f}q",
            f"{vanilla['cold']:.0f}q",
            1 - removed,
            "<= 0.15",
            "cold start: warm-up SQL left",
            note,
        )
    ]


def steady_state_rows(tree: OdooTree, seconds: float, rounds: int) -> list[OdooRow]:
    print(f"odoo: steady state, workers = 2, 6 clients, {seconds:g} s per run", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-odoo-") as workdir:
        figures = Path(workdir) / "steady_state.json"
        command = [
            sys.executable, str(BENCH / "odoo_steady_state.py"), *tree.script_options(),
            "--seconds", str(seconds), "--rounds", str(rounds), "--json", str(figures),
        ]  # fmt: skip
        out = run_script(command)
        print("\n".join(f"  {line}" for line in out.splitlines()))
        configs = json.loads(figures.read_text())["configs"]
    vanilla, ours = configs["a"], configs["c"]
    ours_rps, vanilla_rps = ours["best_requests_per_second"], vanilla["best_requests_per_second"]
    ours_rss, vanilla_rss = max(ours["largest_rss"]), max(vanilla["largest_rss"])
    return [
        OdooRow(
            "steady state: requests/s, as time per request",
            f"{ours_rps:.1f}/s",
            f"{vanilla_rps:.1f}/s",
            vanilla_rps / ours_rps,
            "<= 1.0",
            "steady state: time per request",
            f"steady state: requests/s addon / vanilla {ours_rps / vanilla_rps:.2f} (goal >= 1.0),"
            f" best of {rounds} runs each",
        ),
        OdooRow(
            "steady state: workers' CPU per request",
            f"{statistics.median(ours['cpu_ms']):.2f}ms",
            f"{statistics.median(vanilla['cpu_ms']):.2f}ms",
            statistics.median(ours["cpu_ms"]) / statistics.median(vanilla["cpu_ms"]),
            "<= 1.0",
            "steady state: CPU per request",
        ),
        OdooRow(
            "steady state: largest worker's RSS",
            f"{ours_rss / 2**20:.0f}MiB",
            f"{vanilla_rss / 2**20:.0f}MiB",
            ours_rss / vanilla_rss,
            "(info)",
            "steady state: largest worker's memory",
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("real Odoo (make bench ODOO=... ODOO_PYTHON=...)")
    group.add_argument("--odoo", metavar="TREE", help="an Odoo 17/18/19 source tree: add its rows")
    group.add_argument(
        "--odoo-python", default="python3", metavar="PYTHON", help="runs Odoo (default: python3)"
    )
    group.add_argument("--odoo-db", metavar="NAME", help="default: ormcache_bench_<major>[_sale]")
    group.add_argument(
        "--odoo-postgres",
        default="postgresql://odoo:odoo@127.0.0.1:5432",
        metavar="URL",
        help="the database's server (default: %(default)s)",
    )
    group.add_argument(
        "--odoo-seconds", type=float, default=20.0, help="per steady-state run (default: 20)"
    )
    group.add_argument(
        "--odoo-rounds",
        type=int,
        default=2,
        help="steady-state runs and cold-start restarts per config (default: 2)",
    )


def prepare_odoo(args: argparse.Namespace) -> OdooTree | None:
    """The tree of ``--odoo`` (its database created if missing), or None."""
    if not args.odoo:
        return None
    try:
        return prepare(args.odoo, args.odoo_python, args.odoo_postgres, args.odoo_db)
    except OdooBenchError as error:
        sys.exit(f"bench: {error}")


def odoo_ratios(tree: OdooTree | None, args: argparse.Namespace) -> list[Ratio]:
    """Measures and prints the Odoo rows; their ratios for the chart."""
    if tree is None:
        return []
    load = f"{os.getloadavg()[0]:.1f} at the start"
    try:
        rows = [
            *hit_rows(tree),
            *cold_start_rows(tree, args.odoo_rounds),
            *steady_state_rows(tree, args.odoo_seconds, args.odoo_rounds),
        ]
    except OdooBenchError as error:
        sys.exit(f"bench: {error}")
    print_rows(tree, rows, f"{load}, {os.getloadavg()[0]:.1f} at the end")
    return chart_ratios(tree, rows)


def print_rows(tree: OdooTree, rows: list[OdooRow], load: str) -> None:
    print(
        f"\nOdoo {tree.major} ({tree.root}, database {tree.database}): the addon against "
        f"vanilla; load average {load}"
    )
    width = max(len(row.name) for row in rows)
    print(f"{'measure':<{width}} {'ours':>9} {'vanilla':>9} {'ratio':>6}  target")
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio < 0.1 else f"{row.ratio:.2f}"  # 17's hits: 0.004
        print(f"{row.name:<{width}} {row.ours:>9} {row.vanilla:>9} {ratio:>6}  {row.target}")
    print("\nratio = ours / vanilla (lower is better)")
    for row in rows:
        if row.note:
            print(row.note)


def chart_ratios(tree: OdooTree, rows: list[OdooRow]) -> list[Ratio]:
    baseline = f"vanilla Odoo {tree.major}"
    return [
        Ratio(f"Odoo {tree.major} {row.chart_label}", baseline, row.ratio, row.target)
        for row in rows
        if row.chart_label is not None
    ]
