"""An ``@ormcache`` hit inside a real Odoo process, vanilla against the addon,
side by side in the same process.

Run it in ``odoo-bin shell`` with the addon loaded server-wide::

    odoo-bin shell -d DB --load=base,web,ormcache_redis --no-http < bench/odoo_hit_path.py

Vanilla = Odoo's own ``LRU`` mappings; ours = the engine's ``TwoTierCache``
mappings the addon installed. The lookup is Odoo's own in both (a native
``lookup`` measured no faster than CPython 3.11's specialised bytecode for
the same operations; see the README). Both mapping sets are swapped in and
out of the same registry between interleaved rounds, and the best round of
each is kept: the ratio, not the time, is the result.
"""

# ruff: noqa: F821  (``env`` is the shell's)
from __future__ import annotations

import importlib
import timeit

import odoo.release

major = odoo.release.version_info[0]
lru_module = importlib.import_module("odoo.tools.lru")
registry_module = importlib.import_module(
    "odoo.orm.registry" if major >= 19 else "odoo.modules.registry"
)

registry = env.registry
ours_caches = registry._Registry__caches
vanilla_caches = {
    name: lru_module.LRU(size) for name, size in registry_module._REGISTRY_CACHES.items()
}


def use(caches) -> None:
    registry._Registry__caches = caches


calls = {
    "ir.model.data._xmlid_lookup": lambda: env["ir.model.data"]._xmlid_lookup("base.user_admin"),
    "ir.config_parameter._get_param": lambda: env["ir.config_parameter"]._get_param("web.base.url"),
    "res.users.has_group": lambda: env.user.has_group("base.group_user"),
}
print(f"Odoo {major}: {type(next(iter(ours_caches.values()))).__name__} against Odoo's LRU")
print(f"{'method':34} {'ours':>9} {'vanilla':>9} {'ratio':>6}")
try:
    for name, call in calls.items():
        best = {"ours": float("inf"), "vanilla": float("inf")}
        for _ in range(7):
            for label, caches in (("vanilla", vanilla_caches), ("ours", ours_caches)):
                use(caches)
                call()  # warm: the next calls are hits
                n = 20_000
                best[label] = min(best[label], timeit.timeit(call, number=n) / n)
        print(
            f"{name:34} {best['ours'] * 1e6:8.2f}u {best['vanilla'] * 1e6:8.2f}u "
            f"{best['ours'] / best['vanilla']:6.2f}"
        )
finally:
    use(ours_caches)
