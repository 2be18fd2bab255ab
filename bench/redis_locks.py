"""The single-flight lock commands in a ``redis-cli MONITOR`` recording
(``--monitor`` of odoo_first_requests.py or odoo_dashboard.py), per lock
key and per cached method, per phase (``ECHO bench:<phase>`` marks).

Lock commands (see src/two_tier/flight/ and lease.rs), on a lock key
``<prefix>l:<hex>``:

  take     ``SET <lock> <value> NX PX <lease>``: a miss that flies, and each
           poll of a waiter (each one pipelined with ``GET`` and ``PTTL`` of
           the lock, not counted here)
  release  ``EVAL <compare-and-delete> 1 <lock> <value>``: the leader's
           value was stored (or could not be)
  renew    ``EVAL <compare-and-pexpire> 1 <lock> <value> <ms>``: the lease
           thread, every 150 ms while the leader computes

The *lock commands* of a key are its takes and releases (the goal: at
most 2 per method, one flight); renewals are shown apart.

A lock maps to its method through the entry the leader stored under the
same digest (``<prefix>c:<hex>``): the entry's header carries the method's
generation token, which the generations hash (``HSETNX``/``HSET``
``<prefix>g:...``) maps to the method's name. Without such an entry (the value stayed
local, or the computation raised), a lock is named, marked ``~``, after
the compute-time record next to its commands on the same connection: the
``HGET <prefix>flight-costs:<cache> <method>`` a process sends right before
the first lock of a method it never measured, or the ``HSET`` of that
record its writer sends before the release; else it is "(no entry)". The
table shows ``(~n)`` after a method with n keys named that way.

    python bench/redis_locks.py /tmp/mon/monitor-c.txt [--phase warm-up] [--key HEX]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

LINE = re.compile(rb"^(?P<ts>\d+\.\d+) \[(?P<db>\d+) (?P<client>[^\]]+)\] (?P<args>.*)$")
ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
LOCK_KEY = re.compile(rb"^(?P<prefix>.*)l:(?P<hex>[0-9a-f]{32})$")
DATA_KEY = re.compile(rb"^(?P<prefix>.*)c:(?P<hex>[0-9a-f]{32})$")
GENERATIONS_KEY = re.compile(rb"g:")


def unquote(text: bytes) -> bytes:
    """redis-cli's ``sdscatrepr`` quoting, undone."""
    out = bytearray()
    i = 0
    while i < len(text):
        byte = text[i : i + 1]
        if byte != b"\\":
            out += byte
            i += 1
            continue
        escape = text[i + 1 : i + 2]
        if escape == b"x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += ESCAPES.get(escape, escape)
            i += 2
    return bytes(out)


@dataclass
class Lock:
    hex: str
    phase: str
    takes: int = 0
    releases: int = 0
    renewals: int = 0
    clients: set[str] = field(default_factory=set)
    first: float = 0.0
    last: float = 0.0
    # The method named by a compute-time record next to it (no entry).
    hint: str = ""

    @property
    def commands(self) -> int:
        return self.takes + self.releases


@dataclass
class Recording:
    locks: dict[tuple[str, str], Lock] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)
    token_names: dict[int, str] = field(default_factory=dict)
    entry_tokens: dict[str, int] = field(default_factory=dict)
    # Per (phase, method): cost records written and read.
    cost_records: Counter[tuple[str, str]] = field(default_factory=Counter)
    cost_reads: Counter[tuple[str, str]] = field(default_factory=Counter)
    lines: int = 0


def parse(path: Path, trace: str | None = None) -> Recording:
    rec = Recording()
    phase = "(before any mark)"
    # Per connection: the method of the compute-time record it read or
    # wrote last, and how many commands ago.
    recent: dict[str, tuple[str, int]] = {}
    for raw in path.read_bytes().splitlines():
        match = LINE.match(raw)
        if match is None:
            continue
        rec.lines += 1
        client = match["client"].decode()
        if client == "lua":
            continue  # the commands a script ran: the EVAL is counted
        args = [unquote(a) for a in ARG.findall(match["args"])]
        if not args:
            continue
        name = args[0].upper()
        ts = float(match["ts"])
        near, age = recent.get(client, ("", 99))
        recent[client] = (near, age + 1)
        if trace and any(trace.encode() in a for a in args[1:5]):
            shown = " ".join(repr(a[:60])[2:-1] for a in args[:5] if len(a) < 200)
            print(f"{ts:.6f} {phase:>12} {client:>22} {shown}")
        if name == b"ECHO" and len(args) == 2 and args[1].startswith(b"bench:"):
            phase = args[1][6:].decode()
            rec.phases.append(phase)
            continue
        if name in (b"SET", b"EVAL") and len(args) >= 4:
            key = args[1] if name == b"SET" else args[3]
            lock = LOCK_KEY.match(key)
            if lock is not None:
                kind = None
                if name == b"SET" and b"NX" in (a.upper() for a in args[3:]):
                    kind = "takes"
                elif name == b"EVAL":
                    script = args[1].lower()
                    kind = "renewals" if b"pexpire" in script else "releases"
                if kind is not None:
                    hex_ = lock["hex"].decode()
                    entry = rec.locks.setdefault((phase, hex_), Lock(hex_, phase, first=ts))
                    setattr(entry, kind, getattr(entry, kind) + 1)
                    if kind == "takes":
                        # Releases and renewals come from other connections
                        # (the writer's, the lease thread's).
                        entry.clients.add(client)
                    entry.last = ts
                    # The HGET right before a take; HSET + EXPIRE before a release.
                    if not entry.hint and near and age <= (1 if kind == "takes" else 3):
                        entry.hint = near
                continue
        if name == b"SET" and len(args) >= 3:
            data = DATA_KEY.match(args[1])
            if data is not None and len(args[2]) >= 12 and args[2][:4] == b"OCE2":
                token = int.from_bytes(args[2][4:12], "little")
                rec.entry_tokens[data["hex"].decode()] = token
            continue
        if name in (b"HSET", b"HGET", b"HSETNX") and len(args) >= 3:
            field_name = args[2].decode(errors="replace")
            if b"flight-costs:" in args[1]:
                counter = rec.cost_records if name == b"HSET" else rec.cost_reads
                counter[phase, field_name] += 1
                recent[client] = (field_name, 0)
            elif name != b"HGET" and len(args) >= 4 and GENERATIONS_KEY.search(args[1]):
                if args[3].isdigit():
                    # Every token ever set for a name is that method's.
                    rec.token_names.setdefault(int(args[3]), field_name)
    return rec


def method_of(rec: Recording, lock: Lock) -> str:
    token = rec.entry_tokens.get(lock.hex)
    if token is None:
        return f"~{lock.hint}" if lock.hint else "(no entry)"
    if token == 0:
        return "(key names no method)"
    return rec.token_names.get(token, f"(token {token})")


def short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def report(rec: Recording, phases: list[str], top: int) -> None:
    for phase in phases:
        locks = [lock for (p, _), lock in rec.locks.items() if p == phase]
        if not locks:
            print(f"\n## {phase}: no lock command")
            continue
        per_method: dict[str, list[Lock]] = defaultdict(list)
        guessed: Counter[str] = Counter()
        for lock in locks:
            name = method_of(rec, lock)
            guessed[name.lstrip("~")] += name.startswith("~")
            per_method[name.lstrip("~")].append(lock)
        commands = {name: sum(lock.commands for lock in ls) for name, ls in per_method.items()}
        per_key = [lock.commands for lock in locks]
        values = sorted(commands.values())
        print(
            f"\n## {phase}: {len(locks)} lock keys, {len(per_method)} methods, "
            f"{sum(values)} lock commands (takes {sum(lock.takes for lock in locks)}, "
            f"releases {sum(lock.releases for lock in locks)}; renewals "
            f"{sum(lock.renewals for lock in locks)} apart)"
        )
        print(
            f"per method: max {values[-1]}, median {statistics.median(values):g}, "
            f"total {sum(values)}; methods above 2: {sum(1 for v in values if v > 2)}"
        )
        print(
            f"per key: max {max(per_key)}, median {statistics.median(per_key):g}; "
            f"keys above 2: {sum(1 for v in per_key if v > 2)}; histogram "
            + ", ".join(f"{n}:{c}" for n, c in sorted(Counter(per_key).items()))
        )
        print(
            "| method | keys | lock cmds | takes | releases | renewals | "
            "taking conns | max/key | cost HGET | cost HSET |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        ranked = sorted(per_method.items(), key=lambda item: -commands[item[0]])
        for name, ls in ranked[:top]:
            # The connections that took: at least one per process.
            clients = {client for lock in ls for client in lock.clients}
            mark = f" (~{guessed[name]})" if guessed[name] else ""
            print(
                f"| {short(name)}{mark} | {len(ls)} | {commands[name]} | "
                f"{sum(lk.takes for lk in ls)} | {sum(lk.releases for lk in ls)} | "
                f"{sum(lk.renewals for lk in ls)} | {len(clients)} | "
                f"{max(lk.commands for lk in ls)} | {rec.cost_reads[phase, name]} | "
                f"{rec.cost_records[phase, name]} |"
            )
        if len(ranked) > top:
            print(f"| … {len(ranked) - top} more methods | | | | | | | | | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("monitor", type=Path, help="a redis-cli MONITOR recording")
    parser.add_argument("--phase", action="append", help="only these phases (default: all)")
    parser.add_argument("--key", help="print every command on this lock/entry hex first")
    parser.add_argument("--top", type=int, default=40, help="methods listed per phase")
    args = parser.parse_args()
    rec = parse(args.monitor, args.key)
    phases = args.phase or list(dict.fromkeys(["(before any mark)", *rec.phases]))
    print(
        f"{args.monitor}: {rec.lines} commands, {len(rec.token_names)} generation tokens, "
        f"{len(rec.entry_tokens)} entries written"
    )
    report(rec, phases, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
