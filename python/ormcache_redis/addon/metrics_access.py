"""Who may read the metrics route, and how often processes publish: the
``ormcache_redis_metrics_*`` options, checked at start-up like the others
(a bad value is one sentence naming the option).

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

from ormcache_redis._native import ConfigError, parse_seconds
from ormcache_redis.config import OptionSource

OPTION_NAMES = (
    "ormcache_redis_metrics_allow",
    "ormcache_redis_metrics_token",
    "ormcache_redis_metrics_interval",
)
DEFAULT_INTERVAL = 15.0
MIN_TOKEN_LENGTH = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MetricsAccess:
    allow: tuple[Network, ...] = ()
    token: str | None = field(default=None, repr=False)
    interval: float = DEFAULT_INTERVAL

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


def _networks(option: str, raw: str) -> tuple[Network, ...]:
    networks = []
    for part in (item.strip() for item in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"{option} must be a comma-separated list of IP addresses or networks "
                f"(such as 127.0.0.1, 10.0.0.0/8), got {raw!r}."
            ) from None
    return tuple(networks)


def _token(option: str, raw: str) -> str:
    if len(raw) < MIN_TOKEN_LENGTH or any(char.isspace() for char in raw):
        # The value itself is never repeated: it is a secret.
        raise ConfigError(
            f"{option} must be at least {MIN_TOKEN_LENGTH} characters without spaces "
            f"(got {len(raw)} characters)."
        )
    return raw


def load_metrics_access(source: OptionSource) -> MetricsAccess:
    """Reads the options; raises ConfigError (one sentence) on a bad value."""
    allow_raw, token_raw, interval_raw = (source.raw(name) for name in OPTION_NAMES)
    return MetricsAccess(
        allow=_networks(OPTION_NAMES[0], allow_raw) if allow_raw else (),
        token=_token(OPTION_NAMES[1], token_raw) if token_raw else None,
        interval=parse_seconds(
            OPTION_NAMES[2], interval_raw, DEFAULT_INTERVAL, above=0.0, at_most=3600.0
        ),
    )


def access_from(allow: Iterable[str] = (), token: str | None = None) -> MetricsAccess:
    """A MetricsAccess from plain values, checked like the options (tests)."""
    raw = ",".join(allow)
    return MetricsAccess(
        allow=_networks(OPTION_NAMES[0], raw) if raw else (),
        token=_token(OPTION_NAMES[1], token) if token else None,
    )
