"""ormcache_redis: shared two-tier cache for Odoo."""

from ormcache_redis._native import __version__

__all__ = ["__version__"]
