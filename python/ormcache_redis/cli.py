"""``ormcache-redis``: look at and operate the Redis side of a deployment.

::

    ormcache-redis doctor redis://odoo:PASSWORD@redis:6379/0 [--role sessions]
    ormcache-redis stats [-c /etc/odoo/odoo.conf | --url URL] [--json]
    ormcache-redis flush --db NAME [--cache NAME] [-c odoo.conf | --url URL]
    ormcache-redis sessions to-redis|to-files ...   (ormcache-redis-sessions)

Exit codes: 0 fine, 1 a problem found (doctor: a blocking finding; flush:
Redis refused; stats: the reading failed part-way, said on stderr), 2 bad
input (one sentence on stderr), 3 Redis unreachable.
Passwords never appear in what it prints.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ormcache_redis._native import (
    ConfigError,
    RedisClient,
    RedisReplyError,
    RedisUnavailable,
    check_redis_url,
    redact_url,
    url_credentials,
)
from ormcache_redis.config import CACHE_PREFIX, SESSION_PREFIX, OptionSource
from ormcache_redis.metrics.cluster_reading import cluster_totals, read_cluster
from ormcache_redis.metrics.cluster_sums import MAX_SERIES
from ormcache_redis.metrics.record_format import SESSION_REFUSALS
from ormcache_redis.odoo_support.shared_tier import flush_commands
from ormcache_redis.server_check import _config_value, eviction_warning
from ormcache_redis.sessions import migrate

PROG = "ormcache-redis"

# Odoo's own rule for database names (odoo.service.db), and cache names.
DB_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
CACHE_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,64}")

# The commands each role sends (SECURITY.md's ACL list), tried on a scratch
# key by `doctor`.
ROLE_COMMANDS = {
    "cache": (
        "set", "get", "getrange", "expire", "hget", "hset", "hsetnx", "hgetall", "hlen",
        "hdel", "del", "pttl", "pexpire", "multi", "exec", "eval",
    ),
    "sessions": (
        "hset", "hget", "hstrlen", "hdel", "exists", "pttl", "pexpire", "del", "multi", "exec",
        "eval",
    ),
}  # fmt: skip
SLOW_PING_MS = 5.0


class Parser(argparse.ArgumentParser):
    """argparse with the project's rule for bad input: one sentence, exit 2."""

    def error(self, message: str) -> NoReturn:
        fail_input(f"{message} (see {self.prog} --help)")


def fail_input(sentence: str) -> NoReturn:
    sentence = sentence.rstrip(".")
    print(f"{PROG}: {sentence}.", file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------- doctor


@dataclass
class Finding:
    level: str  # "ok", "warn" or "fail" (blocking)
    topic: str
    text: str
    advice: str = ""

    def line(self) -> str:
        tail = f" -> {self.advice}" if self.advice else ""
        return f"[{self.level.upper():4}] {self.topic}: {self.text}{tail}"


def _info(client: RedisClient, section: str) -> dict[str, str]:
    """One server's INFO section; on a cluster (one answer per node) the
    first node's, in address order."""
    reply = client.execute("INFO", section)
    if isinstance(reply, dict):
        reply = reply[min(reply)] if reply else b""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _refusal(error: BaseException) -> str:
    """An error reply, first line only (it may quote a command, never a password)."""
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def doctor(url: str, role: str, prefix: str) -> list[Finding]:
    findings: list[Finding] = []
    address = redact_url(url)
    # Scheme and host, read from the redacted URL: nothing here may hold a secret.
    parts = urlsplit(address)
    sends_password, ignored = url_credentials(url)
    if ignored:
        findings.append(
            Finding(
                "warn",
                "authentication",
                f"this client does not read the URL's {', '.join(ignored)} and "
                + ("sends another password" if sends_password else "sends no password"),
                "give the credentials as redis://USER:PASSWORD@host/0 (percent-encoded), "
                "or on a unix:// URL as ?user=USER&pass=PASSWORD",
            )
        )
    client = RedisClient(url, connect_timeout=2.0, socket_timeout=2.0)
    try:
        rtts = [client.ping() * 1000.0 for _ in range(5)]
    except RedisUnavailable as error:
        findings.append(
            Finding(
                "fail",
                "reachability",
                f"{address} does not answer ({_refusal(error)})",
                "check host, port, firewall, password and TLS (rediss://); Odoo then runs with "
                "L1 only and answers 503 for Redis sessions",
            )
        )
        return findings
    except RedisReplyError as error:
        findings.append(
            Finding(
                "fail",
                "reachability",
                f"{address} refuses PING ({_refusal(error)})",
                "grant +ping to this user",
            )
        )
        return findings
    findings.append(Finding("ok", "reachability", f"{address} answers PING"))
    median = statistics.median(rtts)
    if median > SLOW_PING_MS:
        findings.append(
            Finding(
                "warn",
                "latency",
                f"median round trip {median:.2f} ms over 5 PINGs",
                "an L2 hit costs about one round trip: keep Redis on the same network "
                "(under 1 ms) or raise ormcache_redis_socket_timeout above the worst case",
            )
        )
    else:
        findings.append(Finding("ok", "latency", f"median round trip {median:.2f} ms over 5 PINGs"))
    try:
        server = _info(client, "server")
        version = server.get("redis_version", "?")
        flavour = (
            "Valkey"
            if "valkey_version" in server or server.get("server_name") == "valkey"
            else "Redis"
        )
        if _version_tuple(version) and _version_tuple(version) < (6, 0):
            findings.append(
                Finding("fail", "version", f"{flavour} {version}", "upgrade to Redis 6 or later")
            )
        else:
            findings.append(Finding("ok", "version", f"{flavour} {version}"))
    except (RedisReplyError, RedisUnavailable) as error:
        findings.append(
            Finding(
                "warn",
                "version",
                f"INFO refused ({_refusal(error)})",
                "the version cannot be checked; Redis 6+ is required",
            )
        )
    findings.extend(_memory_findings(client, role))
    findings.extend(_persistence_findings(client, role))
    findings.extend(_permission_findings(client, role, prefix))
    findings.extend(_transport_findings(parts, sends_password))
    return findings


def _memory_findings(client: RedisClient, role: str) -> list[Finding]:
    try:
        replies = client.pipeline(
            [["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "maxmemory-policy"]]
        )
    except (RedisReplyError, RedisUnavailable) as error:
        return [
            Finding(
                "warn",
                "memory",
                f"CONFIG GET refused ({_refusal(error)})",
                "grant +config|get so start-up can check maxmemory-policy, or check it yourself",
            )
        ]
    limit = _config_value(replies[0], "maxmemory")
    policy = _config_value(replies[1], "maxmemory-policy")
    text = f"maxmemory {limit or '?'}, maxmemory-policy {policy or '?'}"
    warning = eviction_warning(client, role)
    if warning:
        return [Finding("warn", "memory", text, warning)]
    if limit == "0":
        advice = (
            "no limit: Redis grows until the machine runs out; set maxmemory with "
            "allkeys-lru for the cache"
            if role == "cache"
            else ""
        )
        return [Finding("warn" if advice else "ok", "memory", text, advice)]
    return [Finding("ok", "memory", text)]


def _persistence_findings(client: RedisClient, role: str) -> list[Finding]:
    try:
        info = _info(client, "persistence")
    except (RedisReplyError, RedisUnavailable) as error:
        return [Finding("warn", "persistence", f"INFO persistence refused ({_refusal(error)})")]
    aof = info.get("aof_enabled") == "1"
    try:
        save = _config_value(client.execute("CONFIG", "GET", "save"), "save")
    except (RedisReplyError, RedisUnavailable):
        save = None
    snapshots = "?" if save is None else ("on" if save.strip() else "off")
    text = f"appendonly {'yes' if aof else 'no'}, RDB snapshots {snapshots}"
    if role == "sessions" and not aof:
        return [
            Finding(
                "warn",
                "persistence",
                text,
                "sessions are lost (users logged out) when Redis restarts: set appendonly yes",
            )
        ]
    return [Finding("ok", "persistence", text)]


def _permission_findings(client: RedisClient, role: str, prefix: str) -> list[Finding]:
    # One hash tag: the MULTI/EXEC probe and the DEL of both keys stay in
    # one slot on a Redis Cluster.
    key = f"{prefix}doctor:{{{secrets.token_hex(6)}}}"
    hash_key = f"{key}:h"
    probes: dict[str, list[Any]] = {
        "set": ["SET", key, "1", "EX", 60],
        "get": ["GET", key],
        "getrange": ["GETRANGE", key, 0, 15],
        "expire": ["EXPIRE", key, 60],
        "pexpire": ["PEXPIRE", key, 60_000],
        "pttl": ["PTTL", key],
        "exists": ["EXISTS", key],
        "hset": ["HSET", hash_key, "f", "1"],
        "hsetnx": ["HSETNX", hash_key, "g", "1"],
        "hget": ["HGET", hash_key, "f"],
        "hstrlen": ["HSTRLEN", hash_key, "f"],
        "hgetall": ["HGETALL", hash_key],
        "hlen": ["HLEN", hash_key],
        "hdel": ["HDEL", hash_key, "f"],
        "eval": ["EVAL", "return 1", 0],
        "del": ["DEL", key, hash_key],
    }
    refused: list[str] = []
    for command in ROLE_COMMANDS[role]:
        if command in ("multi", "exec"):
            continue
        try:
            client.execute(*probes[command])
        except RedisReplyError:
            refused.append(command)
        except RedisUnavailable as error:
            return [Finding("fail", "permissions", f"Redis stopped answering ({_refusal(error)})")]
    try:
        client.pipeline([["SET", key, "1", "EX", 60], ["DEL", key, hash_key]], transaction=True)
    except RedisReplyError:
        refused.append("multi/exec")
    except RedisUnavailable:
        pass
    try:
        client.execute("DEL", key, hash_key)
    except (RedisReplyError, RedisUnavailable):
        pass
    if refused:
        return [
            Finding(
                "fail",
                "permissions",
                f"refused on {prefix}*: " + ", ".join(refused),
                "grant the commands of SECURITY.md's ACL line on the prefix's keys",
            )
        ]
    return [
        Finding(
            "ok",
            "permissions",
            f"{', '.join(ROLE_COMMANDS[role])} allowed on {prefix}*",
        )
    ]


def _transport_findings(parts: Any, sends_password: bool) -> list[Finding]:
    findings = []
    host = (parts.hostname or "").lower()
    local = host in ("localhost", "127.0.0.1", "::1") or parts.scheme in ("unix", "redis+unix")
    if parts.scheme in ("rediss", "valkeys"):
        findings.append(Finding("ok", "tls", "on (server certificate verified)"))
    elif local:
        findings.append(Finding("ok", "tls", "off (same host)"))
    else:
        findings.append(
            Finding(
                "warn",
                "tls",
                f"off: traffic to {host} is in clear",
                "use rediss:// (tls_ca_file for a private CA) when Redis is not on this host",
            )
        )
    if not sends_password:
        findings.append(
            Finding(
                "warn",
                "authentication",
                "the client sends no password and Redis accepted it",
                "give Odoo its own ACL user with a long password (SECURITY.md)",
            )
        )
    return findings


# --------------------------------------------------------------------------- stats, flush


def _options(args: argparse.Namespace) -> OptionSource:
    """odoo.conf (``--config``), the environment, and what the command line gave."""
    conf = migrate._odoo_conf_options(args.config) if args.config else {}
    given = {
        "ormcache_redis_url": ("--url", args.url),
        "ormcache_redis_prefix": ("--prefix", args.prefix),
    }
    return OptionSource(conf.get, given=given)


def _cache_client(args: argparse.Namespace) -> tuple[RedisClient, str]:
    options = _options(args)
    url = options.value("ormcache_redis_url")
    if url is None:
        fail_input("--url (or ormcache_redis_url in --config, or ORMCACHE_REDIS_URL) is required")
    prefix = options.value("ormcache_redis_prefix")
    return RedisClient(url, connect_timeout=2.0, socket_timeout=5.0), prefix


def _table(totals: dict[str, Any]) -> list[str]:
    head = (
        f"{'database':<16} {'cache':<10} {'method':<48} {'L1 hits':>9} {'L2 hits':>9} "
        f"{'misses':>8} {'ratio':>6} {'compute ms':>11} {'errors':>7}"
    )
    lines = [head, "-" * len(head)]
    for db_name, database in sorted(totals["databases"].items()):
        for cache_name, cache in sorted(database["caches"].items()):
            lines.append(
                f"{db_name:<16} {cache_name:<10} {'(all)':<48} {cache['l1_hits']:>9} "
                f"{cache['l2_hits']:>9} {cache['misses']:>8} {cache['hit_ratio']:>6.1%} "
                f"{'':>11} {cache['l2_errors']:>7}"
            )
            for name, method in sorted(cache["methods"].items()):
                errors = method["errors"] + method["redis_errors"]
                lines.append(
                    f"{'':<16} {'':<10} {name[-48:]:<48} {method['l1_hits']:>9} "
                    f"{method['l2_hits']:>9} {method['misses']:>8} {method['hit_ratio']:>6.1%} "
                    f"{method['compute_us'] / 1000:>11.1f} {errors:>7}"
                )
    sessions = totals["sessions"]
    lines.append(
        f"processes {totals['processes']} (unreadable {totals['skipped_processes']}), "
        f"sessions saved {sessions['saved']}, refused "
        f"{sum(sessions[reason] for reason in SESSION_REFUSALS)}"
    )
    lines.extend(_skipped_lines(totals))
    for role, client in sorted(totals["clients"].items()):
        lines.append(
            f"{role} client: errors {client['errors']}, writes dropped "
            f"{client['writes_dropped_full'] + client['writes_dropped_unavailable']}, "
            f"processes with the circuit open {client['unhealthy']}"
        )
    return lines


def _skipped_lines(totals: dict[str, Any]) -> list[str]:
    """What the reading left out, and why (names of reasons, never data)."""
    lines = []
    if totals["skipped_processes"]:
        reasons = ", ".join(f"{n} {why}" for why, n in totals["skipped_reasons"].items())
        lines.append(f"skipped {totals['skipped_processes']}: {reasons}")
    if totals["dropped_series"]:
        lines.append(
            f"left out of the sums (over {MAX_SERIES} names): {totals['dropped_series']} "
            "database, cache, method or reason names of processes"
        )
    return lines


def run_stats(args: argparse.Namespace) -> int:
    client, prefix = _cache_client(args)
    figures = read_cluster(client, prefix)
    if not figures.reachable:
        print(f"{PROG}: Redis at {client.address} does not answer.", file=sys.stderr)
        return 3
    if figures.error:
        print(f"{PROG}: reading the figures on {client.address}: {figures.error}", file=sys.stderr)
    totals = cluster_totals(figures)
    if args.json:
        print(json.dumps(totals, indent=2, sort_keys=True))
    elif not totals["processes"]:
        print(
            f"No process has published figures under {prefix!r} on {client.address} "
            "(is the addon loaded, and the prefix right?)."
        )
        for line in _skipped_lines(totals):
            print(line)
    else:
        print("\n".join(_table(totals)))
    return 1 if figures.error else 0


def run_flush(args: argparse.Namespace) -> int:
    if not DB_NAME.fullmatch(args.db):
        fail_input(f"--db must be a database name (letters, digits, _ . -), got {args.db!r}")
    if args.cache is not None and not CACHE_NAME.fullmatch(args.cache):
        fail_input(f"--cache must be a cache name such as default or stable, got {args.cache!r}")
    client, prefix = _cache_client(args)
    try:
        client.pipeline(flush_commands(prefix, args.db, args.cache), transaction=True)
    except RedisUnavailable as error:
        print(f"{PROG}: Redis at {client.address} does not answer ({error}).", file=sys.stderr)
        return 3
    except RedisReplyError as error:
        print(f"{PROG}: Redis at {client.address} refused the flush ({error}).", file=sys.stderr)
        return 1
    what = f"cache {args.cache!r}" if args.cache else "every shared cache"
    print(
        f"Flushed {what} of database {args.db!r} on {client.address}: every process misses "
        "from its next request on; old entries expire by their TTL."
    )
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    try:
        check_redis_url("URL", args.url)
    except ConfigError as error:
        fail_input(str(error))
    prefix = args.prefix or (CACHE_PREFIX if args.role == "cache" else SESSION_PREFIX)
    findings = doctor(args.url, args.role, prefix)
    for finding in findings:
        print(finding.line())
    blocking = [f for f in findings if f.level == "fail"]
    print(
        f"{len(blocking)} blocking problem(s), "
        f"{sum(f.level == 'warn' for f in findings)} warning(s) for {args.role} on "
        f"{redact_url(args.url)}."
    )
    return 1 if blocking else 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Check, watch and operate the Redis side of ormcache_redis.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    doctor_cmd = sub.add_parser(
        "doctor",
        help="check a Redis server for this project (one line per finding)",
        description="Reachability, latency, version, memory policy, persistence, ACL "
        "permissions and TLS of a Redis server, with advice; exit 1 on a blocking problem.",
    )
    doctor_cmd.add_argument("url", metavar="URL", help="redis://[user:password@]host:port/db")
    doctor_cmd.add_argument(
        "--role", choices=("cache", "sessions"), default="cache", help="what it is for"
    )
    doctor_cmd.add_argument("--prefix", help="key prefix to test permissions on")

    def add_source(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--url", help="cache Redis URL (default: ormcache_redis_url)")
        cmd.add_argument("-c", "--config", type=Path, help="odoo.conf to read ormcache_redis_*")
        cmd.add_argument("--prefix", help=f"key prefix (default: {CACHE_PREFIX!r})")

    stats_cmd = sub.add_parser(
        "stats",
        help="the cluster-wide figures every process published",
        description="Sums of the figures every live Odoo process published in Redis.",
    )
    add_source(stats_cmd)
    stats_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")

    flush_cmd = sub.add_parser(
        "flush",
        help="make every process miss the shared caches of a database (O(1))",
        description="Moves the database's flush epoch: every process misses its shared "
        "entries (and drops its L1) from its next request on. Never FLUSHALL or KEYS.",
    )
    add_source(flush_cmd)
    flush_cmd.add_argument("--db", required=True, help="database name")
    flush_cmd.add_argument("--cache", help="one cache (default: every shared cache)")

    sub.add_parser(
        "sessions",
        help="copy HTTP sessions between files and Redis (to-redis, to-files)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sessions":
        return migrate.main(argv[1:], prog=f"{PROG} sessions")
    args = build_parser().parse_args(argv)
    run = {"doctor": run_doctor, "stats": run_stats, "flush": run_flush}[args.command]
    try:
        return run(args)
    except ConfigError as error:
        fail_input(str(error))


if __name__ == "__main__":
    sys.exit(main())
