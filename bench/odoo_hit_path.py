"""An ``@ormcache`` hit inside a real Odoo process, vanilla against the addon,
side by side in the same process.

Run it in ``odoo-bin shell`` with the addon loaded server-wide::

    odoo-bin shell -d DB --load=base,web,ormcache_redis --no-http < bench/odoo_hit_path.py

Vanilla = Odoo's own wrappers (``ormcache.lookup``) over Odoo's ``LRU``
mappings; ours = what the addon installed: the native ``OdooLookup`` in
place of Odoo's wrappers (``native_lookup.py``) over the engine's
``TwoTierCache`` mappings. Both are swapped in and out of the same registry and classes
between 15 interleaved rounds, and the best round of each is kept: the
ratio, not the time, is the result. Each call is the whole call site,
``env[model].method(args)``, as in Odoo's code.
"""

# ruff: noqa: F821  (``env`` is the shell's)
from __future__ import annotations

import importlib
import itertools
import timeit

ODOO = importlib.import_module("odoo.addons.ormcache_redis.odoo_version").ODOO
major = ODOO.major
lru_module = importlib.import_module("odoo.tools.lru")
registry_module = ODOO.registry_module()

registry = env.registry
ours_caches = registry._Registry__caches
vanilla_caches = {
    name: lru_module.LRU(size) for name, size in registry_module._REGISTRY_CACHES.items()
}


native_lookup = importlib.import_module("odoo.addons.ormcache_redis.native_lookup")
if not native_lookup._replaced:
    native_lookup = None  # turned off (ormcache_redis_native_lookup = False)


def use(caches) -> None:
    registry._Registry__caches = caches
    if native_lookup is not None:
        if caches is vanilla_caches:
            native_lookup.uninstall()
        else:
            native_lookup.install(registry)


model_data, parameters = env["ir.model.data"], env["ir.config_parameter"]
equal_keys = itertools.cycle(["".join(["web.base.", "url"]) for _ in range(2)])
calls = {
    # The method called on a record in hand: the hit path itself.
    "model_data._xmlid_lookup(xmlid)": lambda: model_data._xmlid_lookup("base.user_admin"),
    "parameters._get_param(key)": lambda: parameters._get_param("web.base.url"),
    # The whole call site, as most of Odoo's code writes it.
    'env["ir.model.data"]._xmlid_lookup': lambda: env["ir.model.data"]._xmlid_lookup(
        "base.user_admin"
    ),
    'env["ir.config_parameter"]._get_param': lambda: env["ir.config_parameter"]._get_param(
        "web.base.url"
    ),
    # Equal keys that are other objects at each call (as when the argument
    # is built at run time): the native path cannot reuse its last key.
    "parameters._get_param(two equal keys)": lambda: parameters._get_param(next(equal_keys)),
    "env.user.has_group": lambda: env.user.has_group("base.group_user"),
}
hit_path = "native OdooLookup" if native_lookup else "Odoo's ormcache.lookup"
mapping = type(next(iter(ours_caches.values()))).__name__
print(f"Odoo {major}: {hit_path} + {mapping} against Odoo's ormcache.lookup + LRU")
print(f"{'call':40} {'ours':>9} {'vanilla':>9} {'ratio':>6}")
try:
    for name, call in calls.items():
        best = {"ours": float("inf"), "vanilla": float("inf")}
        for _ in range(15):
            for label, caches in (("vanilla", vanilla_caches), ("ours", ours_caches)):
                use(caches)
                call()  # warm: the next calls are hits
                n = 20_000
                best[label] = min(best[label], timeit.timeit(call, number=n) / n)
        print(
            f"{name:40} {best['ours'] * 1e6:8.2f}u {best['vanilla'] * 1e6:8.2f}u "
            f"{best['ours'] / best['vanilla']:6.2f}"
        )
finally:
    use(ours_caches)
