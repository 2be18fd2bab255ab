"""Real servers for tests, benchmarks and demos: nothing here is a mock.

- :class:`RedisServer`: a throwaway ``redis-server`` on a free loopback port,
  without persistence, in a temporary directory; it can be stopped, paused
  (SIGSTOP) and started again to simulate an outage.
- :class:`FaultProxy`: a TCP proxy in front of a real Redis whose faults
  (delay, black hole, cut replies, drip, refused or hanging connections)
  are switched at run time; :func:`run_through_fault` hammers a
  :class:`~ormcache_redis.TwoTierCache` through one and measures what its
  callers saw; :data:`FAULT_SCENARIOS` are the faults the test suite and
  ``bench/faults.py`` run.
- :class:`OdooProcess`: a real ``odoo-bin`` (given by the caller) serving HTTP
  on a free loopback port, for end-to-end tests and benchmarks.

Used by this project's test suite, benchmarks and demo, and handy for users'
own tests of cached code.
"""

from __future__ import annotations

from .fault_proxy import FaultProxy
from .fault_runs import FAULT_SCENARIOS, FaultReport, FaultScenario, paused_gc, run_through_fault
from .odoo_process import OdooProcess, OdooProcessError
from .redis_server import RedisServer, free_port

__all__ = [
    "FAULT_SCENARIOS",
    "FaultProxy",
    "FaultReport",
    "FaultScenario",
    "OdooProcess",
    "OdooProcessError",
    "RedisServer",
    "free_port",
    "paused_gc",
    "run_through_fault",
]
