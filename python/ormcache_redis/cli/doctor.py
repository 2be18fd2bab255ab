"""``ormcache-redis doctor URL [--role cache|sessions]``: one line per
finding about a Redis server (reachability, latency, version, memory
policy, persistence, ACL permissions, TLS), with advice; exit 1 on a
blocking problem."""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
from dataclasses import dataclass
from typing import Any
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
from ormcache_redis.cli.bad_input import fail_input
from ormcache_redis.config import CACHE_PREFIX, SESSION_PREFIX
from ormcache_redis.server_check import _config_value, eviction_warning

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


def add_parser(commands: Any) -> None:
    """``doctor``'s arguments, on the command's subparsers."""
    doctor_cmd = commands.add_parser(
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
