"""``ormcache-redis flush --db NAME [--cache NAME]``: every process
misses the shared caches of a database (or one of them) from its next
request on, in O(1): a new flush epoch, never FLUSHALL or KEYS."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from ormcache_redis._native import RedisReplyError, RedisUnavailable
from ormcache_redis.cli.bad_input import PROG, fail_input
from ormcache_redis.cli.cache_source import add_arguments, cache_client
from ormcache_redis.odoo_support.namespaces import flush_commands

# Odoo's own rule for database names (odoo.service.db), and cache names.
DB_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
CACHE_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,64}")


def run_flush(args: argparse.Namespace) -> int:
    if not DB_NAME.fullmatch(args.db):
        fail_input(f"--db must be a database name (letters, digits, _ . -), got {args.db!r}")
    if args.cache is not None and not CACHE_NAME.fullmatch(args.cache):
        fail_input(f"--cache must be a cache name such as default or stable, got {args.cache!r}")
    client, prefix = cache_client(args)
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


def add_parser(commands: Any) -> None:
    """``flush``'s arguments, on the command's subparsers."""
    flush_cmd = commands.add_parser(
        "flush",
        help="make every process miss the shared caches of a database (O(1))",
        description="Moves the database's flush epoch: every process misses its shared "
        "entries (and drops its L1) from its next request on. Never FLUSHALL or KEYS.",
    )
    add_arguments(flush_cmd)
    flush_cmd.add_argument("--db", required=True, help="database name")
    flush_cmd.add_argument("--cache", help="one cache (default: every shared cache)")
