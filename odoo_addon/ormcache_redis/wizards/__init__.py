from . import ormcache_redis_stats
