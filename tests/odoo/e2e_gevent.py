"""End-to-end: prefork Odoo with its gevent (longpolling/websocket) process.

Starts real odoo-bin with ``workers = 2`` and the addon loaded server-wide,
caches and sessions on one throwaway Redis. Checks that the gevent process
(a separate ``odoo-bin gevent`` started by the prefork server) loads the
addon, serves requests through the engine (its sockets and writer threads
are its own), and that a session created on a worker is valid there.

    python tests/odoo/e2e_gevent.py --odoo-bin /path/to/odoo-bin \\
        --python /path/to/odoo-venv/bin/python -d DB --addons-path PATHS

Needs a database with base and web installed. Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from e2e_common import add_odoo_arguments, check, report

from ormcache_redis import RedisClient
from ormcache_redis.testing import OdooProcess, RedisServer

REPO = Path(__file__).resolve().parents[2]


def post_json(url: str, params: dict, cookie: str | None = None) -> tuple[dict, str | None]:
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    if cookie:
        request.add_header("Cookie", f"session_id={cookie}")
    with urllib.request.urlopen(request, timeout=30) as response:
        set_cookie = response.headers.get("Set-Cookie") or ""
        match = re.search(r"session_id=([^;]+)", set_cookie)
        return json.loads(response.read()), (match.group(1) if match else None)


def run(args: argparse.Namespace) -> list[str]:
    passed: list[str] = []
    redis = RedisServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORMCACHE_", "SESSION_"))}
    env.update(
        ORMCACHE_REDIS_URL=redis.url,
        SESSION_STORE="redis",
        SESSION_STORE_URL=redis.url,
    )
    odoo = OdooProcess(
        [
            args.python,
            args.odoo_bin,
            "-c",
            "/dev/null",
            "--db_host",
            args.db_host,
            "--db_port",
            args.db_port,
            "--db_user",
            args.db_user,
            "--db_password",
            args.db_password,
            "--addons-path",
            f"{REPO / 'odoo_addon'},{args.addons_path}",
            "-d",
            args.database,
            "--db-filter",
            f"^{re.escape(args.database)}$",
            "--workers",
            "2",
            "--max-cron-threads",
            "0",
            "--load=base,web,ormcache_redis",
        ],
        Path(tempfile.gettempdir()) / f"e2e-gevent-{os.getpid()}.log",
        env=env,
    )
    try:
        odoo.start()
        deadline = time.monotonic() + 60
        ports: list[str] = []
        while not ports:
            check(time.monotonic() < deadline, f"no gevent process started; see {odoo.log}")
            ports = re.findall(
                r"Evented Service \(longpolling\) running on [\d.]+:(\d+)", odoo.log_text()
            )
            time.sleep(0.2)
        gevent_url = f"http://127.0.0.1:{ports[-1]}"
        passed.append(f"the prefork server started its gevent process on port {ports[-1]}")

        result, sid = post_json(
            f"{odoo.url}/web/session/authenticate",
            {"db": args.database, "login": args.login, "password": args.password},
        )
        check(sid and result.get("result", {}).get("uid"), f"login failed: {result}")
        info, _ = post_json(f"{gevent_url}/web/session/get_session_info", {}, sid)
        check(
            info.get("result", {}).get("uid") == result["result"]["uid"],
            f"the gevent process does not see the worker's session: {info}",
        )
        passed.append("a session created on a worker is valid on the gevent process")

        for _ in range(10):
            with urllib.request.urlopen(f"{gevent_url}/web/login", timeout=30) as response:
                check(response.status == 200, f"gevent process answered {response.status}")
        passed.append("the gevent process serves requests with the addon loaded")

        keys = RedisClient(redis.url).execute("DBSIZE")
        check(keys > 0, "nothing reached Redis")
        log = odoo.log_text()
        loads = log.count("shared caches default")
        check(
            loads >= 2, f"the addon was set up in {loads} process(es), expected master and gevent"
        )
        check(" ERROR " not in log and "Traceback" not in log, f"errors in {odoo.log}")
        passed.append(f"caches shared in the master and the gevent process ({keys} Redis keys)")
    finally:
        odoo.stop()
        redis.close()
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_odoo_arguments(parser)
    parser.add_argument("-d", "--database", required=True, help="DB with base and web installed")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    args = parser.parse_args()
    return report(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
