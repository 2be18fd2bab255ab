{
    "name": "ORM cache and sessions on Redis",
    "summary": "Two-tier @ormcache (in-process Rust LRU plus a Redis tier shared "
    "by every worker and server) and HTTP sessions in Redis",
    "version": "1.0.0",
    "category": "Technical",
    "author": "ormcache_redis authors",
    "license": "LGPL-3",
    "depends": ["base"],
    "external_dependencies": {"python": ["ormcache_redis"]},
    "data": [
        "security/ir.model.access.csv",
        "wizards/ormcache_redis_stats_views.xml",
    ],
    "post_load": "post_load",
}
