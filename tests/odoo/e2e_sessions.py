"""End-to-end: Redis HTTP sessions with real ``odoo-bin`` processes.

Starts a private redis-server and two Odoo servers sharing it (A in prefork
mode with two workers, B threaded), configured only through odoo.conf
(``session_store = redis``) with the addon loaded server-wide, then checks
what a user behind a load balancer would see: login on A is valid on B and
on every worker, survives a restart of A, logout anywhere ends it, a Redis
outage answers 503 and heals by itself, expired sessions are gone, the
autovacuum cron runs, and (19) soft rotation lets an old cookie follow.

Run it with the Odoo version's own Python (it needs ``ormcache_redis``
installed there), on a database with ``base`` and ``web`` installed::

    /work/odoo/venv18/bin/python tests/odoo/e2e_sessions.py \\
        --odoo-bin /work/odoo/18/odoo-bin -d ocr_sess_18 \\
        --addons-path /work/odoo/18/odoo/addons,/work/odoo/18/addons \\
        --db-host 127.0.0.1 --db-user odoo --db-password odoo

Exit status 0 when every check passed. Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e_common import add_odoo_arguments, check, report

from ormcache_redis import RedisClient
from ormcache_redis.sessions.records import FORMAT_JSON, decode_record, encode_record
from ormcache_redis.sessions.redis_layout import address_of, field_of, hash_key
from ormcache_redis.testing import OdooProcess, RedisServer

REPO = Path(__file__).resolve().parents[2]
PREFIX = "e2e:session:"


class OdooServer(OdooProcess):
    def __init__(self, name: str, args: argparse.Namespace, conf: Path, workers: int) -> None:
        self.name = name
        super().__init__(
            [
                args.python,
                args.odoo_bin,
                "-c",
                str(conf),
                "-d",
                args.database,
                "--db-filter",
                f"^{re.escape(args.database)}$",
                "--workers",
                str(workers),
                "--max-cron-threads",
                "0",
                "--load=base,web,ormcache_redis",
            ],
            Path(tempfile.gettempdir()) / f"e2e-sessions-{name}-{os.getpid()}.log",
            ready_path="/web/login",
        )


class Browser:
    """Speaks HTTP with one session cookie, like a browser tab."""

    def __init__(self, sid: str | None = None) -> None:
        self.sid = sid

    def request(
        self, server: OdooServer, path: str, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
        headers = {"Cookie": f"session_id={self.sid}"} if self.sid else {}
        data = None
        if params is not None:
            body = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(server.url + path, data=data, headers=headers)
        try:
            with opener.open(request, timeout=30) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, content = error.code, error.read()
        for cookie in jar:
            if cookie.name == "session_id":
                self.sid = cookie.value
        if params is not None and status == 200:
            return status, json.loads(content)
        return status, content

    def login(self, server: OdooServer, database: str) -> int:
        status, reply = self.request(
            server,
            "/web/session/authenticate",
            {"db": database, "login": "admin", "password": "admin"},
        )
        check(status == 200 and reply.get("result", {}).get("uid"), f"login failed: {reply}")
        return reply["result"]["uid"]

    def uid(self, server: OdooServer) -> int | None:
        status, reply = self.request(server, "/web/session/get_session_info", {})
        check(status == 200, f"get_session_info answered {status}")
        return reply.get("result", {}).get("uid")

    def call(self, server: OdooServer, model: str, method: str, *args: Any) -> Any:
        status, reply = self.request(
            server,
            "/web/dataset/call_kw",
            {"model": model, "method": method, "args": list(args), "kwargs": {}},
        )
        check(status == 200 and "error" not in reply, f"{model}.{method}: {reply}")
        return reply.get("result")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def stored(raw: RedisClient, sid: str) -> bool:
    return bool(raw.execute("HEXISTS", hash_key(PREFIX, sid[:42]), field_of(sid)))


def database_secret(args: argparse.Namespace) -> str:
    """The secret the servers key this database's session records with."""
    import psycopg2  # Odoo's Python has it

    connection = psycopg2.connect(
        host=args.db_host, port=args.db_port, user=args.db_user,
        password=args.db_password, dbname=args.database,
    )  # fmt: skip
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.secret'")
            return cursor.fetchone()[0]
    finally:
        connection.close()


def rewrite_json_record(
    raw: RedisClient, sid: str, secret: str, change: dict[str, Any], tag_secret: str
) -> None:
    """Read a 18/19 session record with ``secret``, change it, write it back
    tagged with ``tag_secret`` (a guessed one: what a Redis writer can do)."""
    key, fld = address_of(PREFIX, sid)
    record = decode_record(raw.execute("HGET", key, fld), key=key, field=fld, sid=sid,
                           fmt=FORMAT_JSON, secret_for=lambda db: secret)  # fmt: skip
    raw.execute("HSET", key, fld, encode_record(
        {**record.data, **change}, sid, prefix=PREFIX, fmt=FORMAT_JSON, ttl=record.ttl,
        secret_for=lambda db: tag_secret))  # fmt: skip


def run(args: argparse.Namespace) -> list[str]:
    passed: list[str] = []
    redis = RedisServer().start()
    raw = RedisClient(redis.url)
    workdir = Path(tempfile.mkdtemp(prefix="e2e-sessions-"))
    conf = workdir / "odoo.conf"
    conf.write_text(
        "[options]\n"
        f"addons_path = {REPO / 'odoo_addon'},{args.addons_path}\n"
        f"db_host = {args.db_host}\ndb_port = {args.db_port}\n"
        f"db_user = {args.db_user}\ndb_password = {args.db_password}\n"
        f"data_dir = {workdir / 'data'}\n"
        "session_store = redis\n"
        f"session_store_url = {redis.url}\n"
        f"session_store_prefix = {PREFIX}\n"
        "session_store_timeout = 0.5\n"
    )
    server_a = OdooServer("A", args, conf, workers=2)
    server_b = OdooServer("B", args, conf, workers=0)
    version = subprocess.run(
        [args.python, "-c", "import odoo.release as r; print(r.version_info[0])"],
        capture_output=True, text=True, check=True, cwd=Path(args.odoo_bin).parent,
    )  # fmt: skip
    major = int(version.stdout)
    try:
        server_a.start()
        server_b.start()
        for server in (server_a, server_b):
            check("HTTP sessions are stored in Redis" in server.log_text(),
                  f"{server.name} did not install the Redis store")  # fmt: skip
        passed.append("both servers installed the Redis store from odoo.conf")

        user = Browser()
        uid = user.login(server_a, args.database)
        check(stored(raw, user.sid), "the login is not in Redis")
        check(all(user.uid(server_a) == uid for _ in range(8)), "a worker of A lost the session")
        passed.append("login on A is stored in Redis; 8 requests on A (2 workers) see it")
        check(user.uid(server_b) == uid, "server B does not see the login made on A")
        passed.append("server B sees the session created on A")

        server_a.stop()
        server_a.start()
        check(user.uid(server_a) == uid, "A forgot the session over a restart")
        passed.append("the session survives a restart of A")

        status, _ = Browser().request(server_a, "/web/login")
        check(status == 200, "anonymous /web/login failed")
        check(raw.execute("DBSIZE") == 1, "an anonymous page view wrote a session")
        passed.append("anonymous page views write nothing to Redis")

        raw.execute("CLIENT", "PAUSE", 3000)
        paused_at = time.monotonic()
        status, _ = user.request(server_b, "/web/session/get_session_info", {})
        elapsed = time.monotonic() - paused_at
        check(status == 503, f"a Redis outage answered {status}, not 503")
        check(elapsed < 2.5, f"the 503 took {elapsed:.1f}s")
        time.sleep(max(0.0, paused_at + 3.2 - time.monotonic()))
        answered_503 = 1
        deadline = time.monotonic() + 20
        while user.request(server_b, "/web/session/get_session_info", {})[0] == 503:
            answered_503 += 1
            check(time.monotonic() < deadline, "B did not recover after Redis came back")
            time.sleep(0.3)
        check(user.uid(server_b) == uid, "the session was lost over the outage")
        log = server_b.log_text().splitlines()
        lines = [line for line in log if "HTTP sessions are unavailable" in line]
        check(len(lines) == answered_503, f"{answered_503} answers of 503, log lines: {lines}")
        check(user.sid[:16] not in "".join(lines), "the session id was logged")
        passed.append(f"Redis outage: 503 in {elapsed:.2f}s with one log line, then recovery")

        if major >= 18:
            secret = database_secret(args)
            victim = Browser()
            victim.login(server_a, args.database)
            rewrite_json_record(raw, victim.sid, secret, {"uid": 1}, "a guessed secret, 32 chars")
            check(victim.uid(server_b) is None, "a session rewritten in Redis was honored")
            check("Refused session records" in server_b.log_text(), "no warning for a forgery")
            passed.append("a session record rewritten without the database's secret is refused")

        if major >= 19:
            rewrite_json_record(raw, user.sid, secret, {"create_time": time.time() - 4 * 3600},
                                secret)  # fmt: skip
            old_sid = user.sid
            check(user.uid(server_a) == uid, "soft rotation logged the user out")
            check(user.sid != old_sid and user.sid[:42] == old_sid[:42], "no soft rotation")
            late = Browser(old_sid)
            check(late.uid(server_b) == uid and late.sid == user.sid, "old cookie did not follow")
            passed.append("19: soft rotation on A; a request with the old cookie on B follows it")

        admin = Browser()
        admin.login(server_b, args.database)
        xmlid = admin.call(
            server_b,
            "ir.model.data",
            "search_read",
            [("module", "=", "base"), ("name", "=", "autovacuum_job")],
            ["res_id"],
        )
        admin.call(server_b, "ir.cron", "method_direct_trigger", [xmlid[0]["res_id"]])
        log = server_b.log_text()
        check(re.search(r"[Aa]uto-vacuum internal data.*done", log), "the cron did not run")
        failures = re.findall(r"Failed (?:res\.device\.log|ir\.http)\S*", log)
        check(not failures, f"the autovacuum cron failed: {failures}")
        check(user.uid(server_a) == uid, "the vacuum cron removed a live session")
        passed.append("the autovacuum cron (session vacuum, revoked devices) runs on Redis")

        admin.call(server_b, "ir.config_parameter", "set_param",
                   "sessions.max_inactivity_seconds", "3")  # fmt: skip
        short = Browser()
        short.login(server_a, args.database)
        ttl = raw.execute("TTL", hash_key(PREFIX, short.sid[:42]))
        check(0 < ttl <= 3, f"session TTL {ttl} does not follow max_inactivity_seconds")
        time.sleep(4)
        check(short.uid(server_b) is None and not stored(raw, short.sid), "expired session")
        admin = Browser()
        admin.login(server_b, args.database)
        admin.call(server_b, "ir.config_parameter", "set_param",
                   "sessions.max_inactivity_seconds", str(7 * 86400))  # fmt: skip
        passed.append("sessions expire after sessions.max_inactivity_seconds of inactivity")

        old_sid = user.sid
        status, _ = user.request(server_b, "/web/session/logout")
        check(status in (302, 303), f"logout answered {status}")
        check(not stored(raw, old_sid), "logout left the session in Redis")
        check(Browser(old_sid).uid(server_a) is None, "the logged-out cookie still works on A")
        passed.append("logout on B ends the session on A too")

        redis.stop()
        status, _ = Browser(old_sid).request(server_a, "/web/session/get_session_info", {})
        check(status == 503, f"Redis stopped: {status}")
        redis.start()
        deadline = time.monotonic() + 40
        while Browser().request(server_a, "/web/login")[0] != 200:
            check(time.monotonic() < deadline, "A did not recover after a Redis restart")
            time.sleep(0.5)
        passed.append("Redis stopped: 503; restarted: service resumes without restarting Odoo")
    finally:
        server_a.stop()
        server_b.stop()
        redis.stop()
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_odoo_arguments(parser)
    parser.add_argument("-d", "--database", required=True, help="DB with base and web installed")
    args = parser.parse_args()
    return report(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
