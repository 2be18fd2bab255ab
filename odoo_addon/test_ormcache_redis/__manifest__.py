{
    "name": "ORM cache on Redis: test models",
    "summary": "Models used by the tests of ormcache_redis (install in test databases only)",
    "version": "1.0.0",
    "category": "Hidden/Tests",
    "author": "ormcache_redis authors",
    "license": "LGPL-3",
    "depends": ["base", "ormcache_redis"],
}
