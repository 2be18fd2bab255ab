"""Cluster-wide figures: every process publishes its own to Redis, any
process (or the ``ormcache-redis`` command) reads them all back and sums
them, and :func:`exposition` renders the sums in Prometheus's text format.

Layout, under the cache prefix (``ormcache:`` by default)::

    {prefix}metrics:p:{process}   one process's figures (JSON), with a TTL
    {prefix}metrics:processes     hash: process -> unix time its figures expire

A process that dies stops refreshing its key, which expires, and the next
reader drops it from the hash. Publishing uses the engine's write-behind
queue from a daemon thread of each process, never a request. Every command
is in SECURITY.md's ACL list: SET, HSET, EXPIRE; readers EVAL scripts that
run STRLEN (optional), GET, HGETALL, HDEL and DEL.

What is read back is untrusted (anyone who can write to Redis can write
there): every record is measured by Redis before it is sent and checked
whole, and readings are bounded (records, bytes, names), and so is the
text they render. Figures hold counters and names of databases, caches and
methods only: no key, value, address or secret.

- :mod:`.record_format`: what a record holds (counters, latency buckets,
  caps) and its keys;
- :mod:`.record_check`: :func:`check_process`, the one check of a record;
- :mod:`.process_record`: this process's figures, encoded within the caps;
- :mod:`.publisher`: :class:`MetricsPublisher`, the publishing thread;
- :mod:`.cluster_sums`: the sums over processes, bounded in series;
- :mod:`.cluster_reading`: :func:`read_cluster` and :func:`cluster_totals`;
- :mod:`.prometheus_text`: :func:`render` and :func:`exposition`.

The names below are the package's public API; the project's own modules
import from the module that defines each name.
"""

from __future__ import annotations

from ormcache_redis.metrics.cluster_reading import ClusterFigures, read_cluster
from ormcache_redis.metrics.process_record import encode_figures, process_figures
from ormcache_redis.metrics.prometheus_text import CONTENT_TYPE, exposition
from ormcache_redis.metrics.publisher import MetricsPublisher
from ormcache_redis.metrics.record_check import check_process
from ormcache_redis.metrics.record_format import LATENCY_BUCKETS

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "ClusterFigures",
    "MetricsPublisher",
    "check_process",
    "encode_figures",
    "exposition",
    "process_figures",
    "read_cluster",
]
