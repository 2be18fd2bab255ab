"""Odoo HTTP sessions in Redis, without Odoo: importable and tested without it.

- :mod:`.redis_layout`: where sessions live in Redis (one hash per
  identifier) and the bounded reads of records;
- :mod:`.records`: the authenticated record format (encode, decode);
- :mod:`.record_keys`: the keys of records, derived per purpose, and 19's
  sealed ``next_sid``;
- :mod:`.record_errors`: what is wrong with a record;
- :mod:`.session_content`: what a session holds: the keys that
  authenticate someone, what a record under the public key may hold, what
  Odoo refills, how long a session lives;
- :mod:`.versions`: what differs between Odoo 17, 18 and 19 (one rule set each);
- :mod:`.store`: ``RedisSessionStore``, Odoo's session store interface on Redis
  (needs werkzeug, which Odoo has);
- :mod:`.store_errors`: what the store raises to Odoo (a 503 when Redis
  cannot serve a session, a session value that cannot be stored) and why;
- :mod:`.settings`: the ``session_store*`` options;
- :mod:`.refusals`: counting and reporting the records a store refused;
- :mod:`.files`: Odoo's filesystem session store, read and written;
- :mod:`.migrate`: the ``ormcache-redis-sessions`` command;
- :mod:`.session_copies`: its copies between files and Redis, and their
  report;
- :mod:`.postgres_secrets`: each database's secret, read from PostgreSQL
  for the command.

``odoo_addon/ormcache_redis/session_store.py`` installs the store on Odoo.
"""
