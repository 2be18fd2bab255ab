"""``ormcache-redis-sessions``: copy Odoo HTTP sessions between files and Redis.

Switching ``session_store`` logs nobody out when the sessions are copied
first (and back, to return to files)::

    ormcache-redis-sessions to-redis -c /etc/odoo/odoo.conf
    ormcache-redis-sessions to-redis --session-dir ~/.local/share/Odoo/sessions \\
        --url redis://localhost:6379/0 --db-uri postgresql://odoo:pw@localhost:5432
    ormcache-redis-sessions to-files --session-dir ~/.local/share/Odoo/sessions \\
        --url redis://localhost:6379/0 --db-uri postgresql://odoo:pw@localhost:5432 \\
        --session-store-secret "$SESSION_STORE_SECRET"

The copy is what the Redis store itself writes and reads (same layout, same
records: :mod:`.redis_layout`, :mod:`.records`), and keeps each session's
remaining lifetime. Session ids are never printed.

Records are authenticated with the secret of the session's database, so the
command needs it as Odoo does: ``--secret`` (``ormcache_redis_secret``, or
``ORMCACHE_REDIS_SECRET``) when the deployment sets one, else each database's
``database.secret``, read from PostgreSQL with ``--db-uri`` (or the ``db_*``
options of ``--config``; needs ``psycopg2``, which Odoo's Python has).
Sessions without a database need neither.

Session files are read and written as Odoo does (:mod:`.files`; Odoo 17's
pickles with Odoo 17's own restrictions, so no code in a file can run); the
command needs neither Odoo nor its configuration importable.

Going back (``to-files``) needs the session ids, which Redis never holds in
clear: the store seals them into each record only when a
``session_store_secret`` is configured, and this command needs the same
secret.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ormcache_redis._native import RedisClient, RedisReplyError, RedisUnavailable, SessionSettings
from ormcache_redis.config import ConfigError, OptionSource, odoo_conf_options, redact_url
from ormcache_redis.sessions.postgres_secrets import DatabaseSecrets, connect_options
from ormcache_redis.sessions.redis_layout import DEFAULT_PREFIX
from ormcache_redis.sessions.session_content import DEFAULT_SESSION_LIFETIME
from ormcache_redis.sessions.session_copies import to_files, to_redis


def _options(args: argparse.Namespace, conf: dict[str, str]) -> OptionSource:
    """The options as the session store reads them, the command line's
    first (error sentences then name its flag). The command copies to or
    from Redis whatever ``session_store`` says."""
    given = {
        "session_store": ("session_store", "redis"),
        "session_store_url": ("--url", args.url),
        "session_store_prefix": ("--prefix", args.prefix),
        "session_store_secret": ("--session-store-secret", args.session_store_secret),
        "session_store_anonymous_ttl": ("--anonymous-ttl", args.anonymous_ttl),
        "ormcache_redis_secret": ("--secret (ormcache_redis_secret)", args.secret),
    }
    return OptionSource(conf.get, given=given)


def build_parser(prog: str = "ormcache-redis-sessions") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Copy Odoo HTTP sessions between the filesystem store and Redis.",
    )
    sub = parser.add_subparsers(dest="direction", required=True)
    for name, help_text in (
        ("to-redis", "copy session files into Redis (before switching session_store to redis)"),
        ("to-files", "copy Redis sessions back into files (before switching back)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--session-dir", type=Path, help="Odoo's session directory "
                         "(default: <data_dir>/sessions from --config)")  # fmt: skip
        cmd.add_argument("--url", help="Redis URL (default: session_store_url / SESSION_STORE_URL)")
        cmd.add_argument("-c", "--config", type=Path, help="odoo.conf to read session_store_* from")
        cmd.add_argument("--prefix", help=f"key prefix (default: {DEFAULT_PREFIX!r})")
        cmd.add_argument("--secret", help="ormcache_redis_secret, when the deployment sets "
                         "one (default: ORMCACHE_REDIS_SECRET)")  # fmt: skip
        cmd.add_argument("--db-uri", help="postgresql://user:password@host:port, to read "
                         "each database.secret (default: --config's db_* options)")  # fmt: skip
        cmd.add_argument("--session-store-secret", help="session_store_secret: seals session "
                         "ids for to-files (default: SESSION_STORE_SECRET)")  # fmt: skip
        cmd.add_argument("--lifetime", type=int, default=DEFAULT_SESSION_LIFETIME,
                         help="sessions.max_inactivity_seconds (default: 7 days)")  # fmt: skip
        cmd.add_argument("--anonymous-ttl", type=int, default=None,
                         help="session_store_anonymous_ttl (default: 4 hours)")  # fmt: skip
        cmd.add_argument("--overwrite", action="store_true",
                         help="replace sessions already at the destination")  # fmt: skip
        cmd.add_argument("--dry-run", action="store_true", help="count, write nothing")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "ormcache-redis-sessions") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        conf = odoo_conf_options(args.config)
        options = _options(args, conf)
        if options.raw("session_store_url") is None:
            raise ConfigError("--url (or session_store_url / SESSION_STORE_URL) is required.")
        # The store's own parser: same rules, defaults and sentences.
        settings = SessionSettings.parse(options, options.labels)
        assert settings is not None  # session_store is given as redis
        args.url, args.prefix = settings.url, settings.prefix
        args.session_store_secret, args.anonymous_ttl = settings.secret, settings.anonymous_ttl
        configured = options.value("ormcache_redis_secret")
        connect = None if configured else connect_options(args.db_uri, conf)
        args.secrets = DatabaseSecrets(configured, connect)
        args.secrets.check_connection()
        if args.session_dir is None:
            data_dir = conf.get("data_dir")
            if not data_dir:
                raise ConfigError("--session-dir (or --config with data_dir) is required.")
            args.session_dir = Path(data_dir).expanduser() / "sessions"
        if args.direction == "to-redis" and not args.session_dir.is_dir():
            raise ConfigError(f"--session-dir {args.session_dir} is not a directory.")
        if args.lifetime <= 0:
            raise ConfigError("--lifetime must be positive seconds.")
        client = RedisClient(args.url, connect_timeout=5.0, socket_timeout=10.0)
        client.ping()
        run = to_redis if args.direction == "to-redis" else to_files
        report = run(args, client)
    except (ConfigError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (RedisUnavailable, RedisReplyError) as exc:
        print(
            f"{prog}: Redis at {redact_url(args.url or '')} failed: {exc}",
            file=sys.stderr,
        )
        return 3
    for problem in [*args.secrets.problems, *report.problems][:20]:
        print(f"  skipped {problem}", file=sys.stderr)
    print(report.line(args.direction, args.dry_run))
    if report.no_key and args.secrets.configured is None and not args.db_uri and not args.config:
        print(
            f"{prog}: sessions of a database need its secret: pass --db-uri "
            "(or --config), or --secret when the deployment sets ormcache_redis_secret.",
            file=sys.stderr,
        )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
