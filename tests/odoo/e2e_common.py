"""What the end-to-end scripts share: failures, their options, their report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ormcache_redis.testing import OdooProcessError


class Failure(AssertionError):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise Failure(message)


def add_odoo_arguments(parser: argparse.ArgumentParser) -> None:
    """odoo-bin, its Python and addons path, and the PostgreSQL connection."""
    parser.add_argument("--odoo-bin", required=True, help="path to odoo-bin")
    parser.add_argument("--python", default=sys.executable, help="Odoo's Python")
    parser.add_argument("--addons-path", required=True, help="Odoo's addons path")
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", default="5432")
    parser.add_argument("--db-user", default="odoo")
    parser.add_argument("--db-password", default="odoo")


def report(run: Callable[[], list[str]]) -> int:
    """Runs the checks, prints one line each; 1 on the first failure."""
    started = time.monotonic()
    try:
        passed = run()
    except (Failure, OdooProcessError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    for line in passed:
        print(f"ok  {line}")
    print(f"{len(passed)} checks passed in {time.monotonic() - started:.0f}s")
    return 0
