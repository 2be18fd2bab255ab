"""Odoo's ``@ormcache`` hit path in the engine, as the addon installs it.

``OdooLookup(wrapper, key_parts, defaults, counters, miss, *,
counters_by_model, transaction_statistics)`` replaces Odoo's wrapper of one
cached method on its class: it builds the key Odoo would build, adds to
Odoo's counters and asks the registry's mapping in one native call, and
hands a miss to ``miss`` (Odoo's own miss code for the running version).
The rules that differ between Odoo versions are arguments: the addon
passes those of its version record (``odoo_version.py``).
"""

from ormcache_redis._native import OdooLookup

__all__ = ["OdooLookup"]
