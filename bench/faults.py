"""What callers of a TwoTierCache see while Redis misbehaves.

For each fault of ``ormcache_redis.testing.FAULT_SCENARIOS`` (a fault proxy
of our own in front of a throwaway redis-server, or that server paused with
SIGSTOP or restarted), threads look values up and store them before, during
(1.1 s) and after the fault. The table gives, over every call of every thread:
the longest call, how many exceptions reached the callers, and how long
after the fault ended a lookup was answered by Redis again. Deadlines are
the client's ``socket_timeout`` (0.25 s unless the row says otherwise).

    python bench/faults.py
"""

from __future__ import annotations

import logging

from ormcache_redis.testing import FAULT_SCENARIOS, FaultProxy, RedisServer


def main() -> None:
    # The client logs each outage and recovery: not wanted in the table.
    logging.getLogger("ormcache_redis").setLevel(logging.ERROR)
    print("| fault | deadline | max caller latency | exceptions | recovery time |")
    print("|---|--:|--:|--:|--:|")
    with RedisServer() as server, FaultProxy(server.port) as proxy:
        for scenario in FAULT_SCENARIOS:
            report = scenario.run(proxy, server)
            recovery = "never" if report.recovery is None else f"{report.recovery * 1000:.0f} ms"
            print(
                f"| {scenario.name} | {scenario.socket_timeout * 1000:.0f} ms "
                f"| {report.max_latency * 1000:.1f} ms | {len(report.exceptions)} | {recovery} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
