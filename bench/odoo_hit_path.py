"""An ``@ormcache`` hit inside a real Odoo process, vanilla against the addon,
side by side in the same process.

Run it in ``odoo-bin shell`` with the addon loaded server-wide (``make
bench ODOO=...`` does, through bench/odoo_rows.py)::

    odoo-bin shell -d DB --load=base,web,ormcache_redis --no-http < bench/odoo_hit_path.py

Vanilla = Odoo's own wrappers (``ormcache.lookup``) over Odoo's ``LRU``
mappings; ours = what the addon installed: the native ``OdooLookup`` in
place of Odoo's wrappers (``native_lookup.py``) over the engine's
``TwoTierCache`` mappings. Both are swapped in and out of the same registry and classes
between 15 interleaved rounds, and the best round of each is kept: the
ratio, not the time, is the result. Each call is the whole call site,
``env[model].method(args)``, as in Odoo's code.

The last rows vary the key as ordinary call sites do: ``_xmlid_lookup``
over the first 256 xmlids of the database, ``_get_param`` over every
parameter key, ``has_group`` over 4 groups, each cycled (every call a hit
on another key than the call before). ``ODOO_HIT_PATH_ROUNDS`` and
``ODOO_HIT_PATH_CALLS`` change the rounds (15) and the calls per round
(20,000). The last line printed is the figures as JSON after
``odoo_hit_path.json: `` (seconds per call, best round of each).
"""

# ruff: noqa: F821  (``env`` is the shell's)
from __future__ import annotations

import importlib
import itertools
import json
import os
import timeit

ROUNDS = int(os.environ.get("ODOO_HIT_PATH_ROUNDS", "15"))
CALLS = int(os.environ.get("ODOO_HIT_PATH_CALLS", "20000"))
JSON_MARK = "odoo_hit_path.json: "

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
# Ordinary call sites change their arguments: every key below is a hit once
# warm, but not the key of the call before.
xmlids = [
    f"{row['module']}.{row['name']}"
    for row in model_data.search_read([], ["module", "name"], order="id", limit=256)
]
parameter_keys = parameters.search([], order="id").mapped("key")
groups = ["base.group_user", "base.group_system", "base.group_erp_manager", "base.group_no_one"]
next_xmlid = itertools.cycle(xmlids).__next__
next_key = itertools.cycle(parameter_keys).__next__
next_group = itertools.cycle(groups).__next__
# name: (call, distinct keys: the calls that warm every key before a round)
calls = {
    # The method called on a record in hand: the hit path itself.
    "model_data._xmlid_lookup(xmlid)": (lambda: model_data._xmlid_lookup("base.user_admin"), 1),
    "parameters._get_param(key)": (lambda: parameters._get_param("web.base.url"), 1),
    # The whole call site, as most of Odoo's code writes it.
    'env["ir.model.data"]._xmlid_lookup': (
        lambda: env["ir.model.data"]._xmlid_lookup("base.user_admin"),
        1,
    ),
    'env["ir.config_parameter"]._get_param': (
        lambda: env["ir.config_parameter"]._get_param("web.base.url"),
        1,
    ),
    # Equal keys that are other objects at each call (as when the argument
    # is built at run time): the native path cannot reuse its last key.
    "parameters._get_param(two equal keys)": (lambda: parameters._get_param(next(equal_keys)), 2),
    "env.user.has_group": (lambda: env.user.has_group("base.group_user"), 1),
    # Varied keys at the call site (the calls to next() are in both columns).
    f'env["ir.model.data"]._xmlid_lookup, {len(xmlids)} xmlids': (
        lambda: env["ir.model.data"]._xmlid_lookup(next_xmlid()),
        len(xmlids),
    ),
    f'env["ir.config_parameter"]._get_param, {len(parameter_keys)} keys': (
        lambda: env["ir.config_parameter"]._get_param(next_key()),
        len(parameter_keys),
    ),
    f"env.user.has_group, {len(groups)} groups": (
        lambda: env.user.has_group(next_group()),
        len(groups),
    ),
}
hit_path = "native OdooLookup" if native_lookup else "Odoo's ormcache.lookup"
mapping = type(next(iter(ours_caches.values()))).__name__
print(f"Odoo {major}: {hit_path} + {mapping} against Odoo's ormcache.lookup + LRU")
print(f"{'call':48} {'ours':>9} {'vanilla':>9} {'ratio':>6}")
rows = []
try:
    for name, (call, distinct) in calls.items():
        best = {"ours": float("inf"), "vanilla": float("inf")}
        for _ in range(ROUNDS):
            for label, caches in (("vanilla", vanilla_caches), ("ours", ours_caches)):
                use(caches)
                for _ in range(2 * distinct):
                    call()  # warm: the next calls are hits
                best[label] = min(best[label], timeit.timeit(call, number=CALLS) / CALLS)
        ratio = best["ours"] / best["vanilla"]
        print(f"{name:48} {best['ours'] * 1e6:8.2f}u {best['vanilla'] * 1e6:8.2f}u {ratio:6.2f}")
        rows.append({"call": name, "ours": best["ours"], "vanilla": best["vanilla"]})
finally:
    use(ours_caches)
report = {"major": major, "hit_path": hit_path, "mapping": mapping, "rows": rows}
print(JSON_MARK + json.dumps(report), flush=True)
