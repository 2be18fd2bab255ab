# Minimal manifest for the `sessions` branch only (see __init__.py).
{  # noqa: B018 - an Odoo manifest is a bare dict literal
    "name": "ORM cache on Redis",
    "version": "1.0.0",
    "category": "Technical",
    "license": "LGPL-3",
    "depends": ["base"],
    "external_dependencies": {"python": ["ormcache_redis"]},
    "post_load": "post_load",
    "installable": True,
}
