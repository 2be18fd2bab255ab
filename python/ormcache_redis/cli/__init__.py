"""``ormcache-redis``: look at and operate the Redis side of a deployment.

::

    ormcache-redis doctor redis://odoo:PASSWORD@redis:6379/0 [--role sessions]
    ormcache-redis stats [-c /etc/odoo/odoo.conf | --url URL] [--json]
    ormcache-redis flush --db NAME [--cache NAME] [-c odoo.conf | --url URL]
    ormcache-redis sessions to-redis|to-files ...   (ormcache-redis-sessions)
    ormcache-redis --version

Exit codes: 0 fine, 1 a problem found (doctor: a blocking finding; flush:
Redis refused; stats: the reading failed part-way, said on stderr), 2 bad
input (one sentence on stderr), 3 Redis unreachable.
Passwords never appear in what it prints.

One module per command: :mod:`.doctor`, :mod:`.stats`, :mod:`.flush`
(both reading the cache's Redis as :mod:`.cache_source` says);
``sessions`` is :mod:`ormcache_redis.sessions.migrate`'s command;
:mod:`.bad_input` holds the rule for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ormcache_redis._native import ConfigError, __version__
from ormcache_redis.cli import doctor, flush, stats
from ormcache_redis.cli.bad_input import PROG, Parser, fail_input
from ormcache_redis.sessions import migrate


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Check, watch and operate the Redis side of ormcache_redis.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    doctor.add_parser(sub)
    stats.add_parser(sub)
    flush.add_parser(sub)
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
    run = {"doctor": doctor.run_doctor, "stats": stats.run_stats, "flush": flush.run_flush}[
        args.command
    ]
    try:
        return run(args)
    except ConfigError as error:
        fail_input(str(error))
