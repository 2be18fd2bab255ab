"""Odoo's ``@ormcache`` hit path in the engine, as the addon installs it.

``OdooLookup(wrapper, key_parts, defaults, counters, miss, *,
counters_by_model, transaction_statistics, id_field=None,
counter_class=None)`` replaces Odoo's wrapper of one
cached method on its class: it builds the key Odoo would build, adds to
Odoo's counters and asks the registry's mapping in one native call, and
hands a miss to ``miss`` (Odoo's own miss code for the running version).
Given Odoo's ``Id`` field class (``id_field``), it reads ``record.id`` in a
key expression as that field does, without its Python frame. Given a
subclass of ``HitCounter`` (``counter_class``), it creates a method's
counter of that class when Odoo's mapping has none yet, and adds its hits
natively.
The rules that differ between Odoo versions are arguments: the addon
passes those of its version record (``odoo_version.py``).
"""

from ormcache_redis._native import HitCounter, OdooLookup

__all__ = ["HitCounter", "OdooLookup"]
