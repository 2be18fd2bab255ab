"""``python -m ormcache_redis.cli``: the ``ormcache-redis`` command."""

import sys

from ormcache_redis.cli import main

sys.exit(main())
