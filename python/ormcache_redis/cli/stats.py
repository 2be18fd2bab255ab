"""``ormcache-redis stats [--json]``: the sums of the figures every live
process published in Redis, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ormcache_redis.cli.bad_input import PROG
from ormcache_redis.cli.cache_source import add_arguments, cache_client
from ormcache_redis.metrics.cluster_reading import cluster_totals, read_cluster
from ormcache_redis.metrics.cluster_sums import MAX_SERIES
from ormcache_redis.metrics.record_format import SESSION_REFUSALS
from ormcache_redis.stats import MIB


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
    l1 = totals["l1"]
    lines.append(
        f"L1 {l1['bytes'] / MIB:.1f} MiB of {l1['max_bytes'] / MIB:.0f} MiB (the processes' "
        f"bounds), {l1['byte_evictions']} entries evicted for bytes, {l1['too_large']} values "
        "too large to keep"
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
    client, prefix = cache_client(args)
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


def add_parser(commands: Any) -> None:
    """``stats``' arguments, on the command's subparsers."""
    stats_cmd = commands.add_parser(
        "stats",
        help="the cluster-wide figures every process published",
        description="Sums of the figures every live Odoo process published in Redis.",
    )
    add_arguments(stats_cmd)
    stats_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
