"""Odoo HTTP sessions in Redis, without Odoo: importable and tested without it.

- :mod:`.records`: the Redis layout and the authenticated record format;
- :mod:`.versions`: what differs between Odoo 17, 18 and 19 (one rule set each);
- :mod:`.store`: ``RedisSessionStore``, Odoo's session store interface on Redis
  (needs werkzeug, which Odoo has);
- :mod:`.settings`: the ``session_store*`` options;
- :mod:`.refusals`: counting and reporting the records a store refused;
- :mod:`.files`: Odoo's filesystem session store, read and written;
- :mod:`.migrate`: the ``ormcache-redis-sessions`` command.

``odoo_addon/ormcache_redis/session_store.py`` installs the store on Odoo.
"""
