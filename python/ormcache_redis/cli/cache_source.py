"""Where ``stats`` and ``flush`` find the cache's Redis: ``--url`` and
``--prefix``, else odoo.conf (``--config``), else the environment."""

from __future__ import annotations

import argparse
from pathlib import Path

from ormcache_redis._native import RedisClient
from ormcache_redis.cli.bad_input import fail_input
from ormcache_redis.config import CACHE_PREFIX, OptionSource, odoo_conf_options


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--url", help="cache Redis URL (default: ormcache_redis_url)")
    command.add_argument("-c", "--config", type=Path, help="odoo.conf to read ormcache_redis_*")
    command.add_argument("--prefix", help=f"key prefix (default: {CACHE_PREFIX!r})")


def cache_options(args: argparse.Namespace) -> OptionSource:
    """odoo.conf (``--config``), the environment, and what the command line gave."""
    conf = odoo_conf_options(args.config) if args.config else {}
    given = {
        "ormcache_redis_url": ("--url", args.url),
        "ormcache_redis_prefix": ("--prefix", args.prefix),
    }
    return OptionSource(conf.get, given=given)


def cache_client(args: argparse.Namespace) -> tuple[RedisClient, str]:
    options = cache_options(args)
    url = options.value("ormcache_redis_url")
    if url is None:
        fail_input("--url (or ormcache_redis_url in --config, or ORMCACHE_REDIS_URL) is required")
    prefix = options.value("ormcache_redis_prefix")
    return RedisClient(url, connect_timeout=2.0, socket_timeout=5.0), prefix
