"""Who may read the metrics route, and how often processes publish: the
``ormcache_redis_metrics_*`` options, parsed at start-up by the engine like
the others (``MetricsSettings``: a bad value is one sentence naming the
option).

The route is closed unless one of these is set:

* ``ormcache_redis_metrics_allow``: comma-separated IP addresses or networks
  (``127.0.0.1, 10.0.0.0/8, ::1``); the address is the one Odoo sees (with
  ``proxy_mode``, the one the proxy forwarded);
* ``ormcache_redis_metrics_token``: at least 32 characters; the scraper
  sends ``Authorization: Bearer <token>``.

A request passes when its address is allowed or its token matches.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from ormcache_redis._native import MetricsSettings
from ormcache_redis.config import OPTIONS, OptionSource

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MetricsAccess:
    allow: tuple[Network, ...] = ()
    token: str | None = field(default=None, repr=False)
    interval: float = OPTIONS["ormcache_redis_metrics_interval"].default

    @property
    def open(self) -> bool:
        """Whether the route serves anyone at all."""
        return bool(self.allow) or self.token is not None

    def allows(self, address: str | None, authorization: str | None) -> bool:
        if self.token is not None and authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                credentials.strip().encode(), self.token.encode()
            ):
                return True
        if self.allow and address:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return False
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            return any(ip in network for network in self.allow)
        return False


def _access(settings: MetricsSettings) -> MetricsAccess:
    # The engine checked each network and wrote it as address/length.
    return MetricsAccess(
        allow=tuple(ipaddress.ip_network(network) for network in settings.allow),
        token=settings.token,
        interval=settings.interval,
    )


def load_metrics_access(source: OptionSource) -> MetricsAccess:
    """Reads the options; raises ConfigError (one sentence) on a bad value."""
    return _access(MetricsSettings.parse(source))


def access_from(allow: Iterable[str] = (), token: str | None = None) -> MetricsAccess:
    """A MetricsAccess from plain values, checked like the options (tests)."""
    raw = ",".join(allow)
    return _access(
        MetricsSettings.parse(
            {"ormcache_redis_metrics_allow": raw or None, "ormcache_redis_metrics_token": token}
        )
    )
