{
    "name": "Sales dashboard on ormcache_redis (example)",
    "summary": "An expensive dashboard cached with @ormcache: computed once for the "
    "whole cluster, invalidated when an order is confirmed",
    "version": "1.0.0",
    "category": "Sales",
    "author": "ormcache_redis authors",
    "license": "LGPL-3",
    "depends": ["sale_management"],
    "installable": True,
}
