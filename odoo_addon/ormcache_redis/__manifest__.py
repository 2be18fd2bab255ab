{
    "name": "ORM cache and sessions on Redis",
    "summary": "Two-tier @ormcache (in-process Rust LRU plus a Redis tier shared "
    "by every worker and server) and HTTP sessions in Redis",
    "description": """
Makes every ``@ormcache`` of Odoo and of your modules two-tier: L1 in the
process (Rust LRU), L2 in Redis shared by all workers and servers, with
invalidation driven by the database's own signaling. Optionally stores HTTP
sessions in Redis so several servers share logins and restarts keep them.
Load it as a server-wide module (``--load=base,web,ormcache_redis``) and set
``ormcache_redis_url`` (and ``session_store = redis``, ``session_store_url``).
See readme/ for configuration and usage.
""",
    "version": "1.0.0",
    "category": "Technical",
    "author": "ormcache_redis authors",
    "license": "LGPL-3",
    "depends": ["base"],
    "external_dependencies": {"python": ["ormcache_redis"]},
    "data": [
        "security/ir.model.access.csv",
        "views/ormcache_redis_stats_views.xml",
    ],
    "post_load": "post_load",
    "installable": True,
}
