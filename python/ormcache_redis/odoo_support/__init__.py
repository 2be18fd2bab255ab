"""The Odoo addon's logic that needs no Odoo, importable and tested without it.

- :mod:`.settings`: the ``ormcache_redis_*`` options and what stays local;
- :mod:`.value_types`: Odoo's value types taught to the codec;
- :mod:`.shared_tier`: one registry's shared tier (namespaces from Odoo's
  signaling, the transaction gate, units of work, method clears);
- :mod:`.namespaces`: what names a cache's state in Redis (the namespace,
  the flush epochs, the methods version), their keys, the flush's
  commands and how they are read back;
- :mod:`.deployment_secrets`: which secret keys which database;
- :mod:`.metrics_access`: who may read the metrics route;
- :mod:`.odoo_lookup`: the engine's hit path for Odoo's ``@ormcache``.

``odoo_addon/ormcache_redis`` connects them to Odoo's registry.
"""
