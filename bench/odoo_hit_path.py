"""An ``@ormcache`` hit inside a real Odoo process, vanilla against the addon,
side by side in the same process.

Run it in ``odoo-bin shell`` with the addon loaded server-wide (``make
bench ODOO=...`` does, through bench/odoo_rows.py)::

    odoo-bin shell -d DB --load=base,web,ormcache_redis --no-http < bench/odoo_hit_path.py

Vanilla = Odoo's own wrappers (``ormcache.lookup``) over Odoo's ``LRU``
mappings; ours = what the addon installed: the native ``OdooLookup`` in
place of Odoo's wrappers (``native_lookup.py``) over the engine's
``TwoTierCache`` mappings, each side with its own statistics counters
(Odoo's ``ormcache_counter``; the addon's, hit counts native). Both are
swapped in and out of the same registry and classes between 15
interleaved rounds, and the best round of each is kept: the
ratio, not the time, is the result. Each call is the whole call site,
``env[model].method(args)``, as in Odoo's code.

The last rows vary the key as ordinary call sites do: ``_xmlid_lookup``
over the first 256 xmlids of the database, ``_get_param`` over every
parameter key, ``has_group`` over 4 groups, each cycled (every call a hit
on another key than the call before). ``ODOO_HIT_PATH_ROUNDS`` and
``ODOO_HIT_PATH_CALLS`` change the rounds (15) and the calls per round
(20,000).

The ``request work`` rows are the server side of the steady-state mix
(bench/odoo_steady_state.py) called in this process: ``get_views``,
``web_search_read``, ``web_read_group``, ``web_read`` and the action's
``_for_xml_id`` on ``sale.order`` (``res.partner`` without
``sale_management``), each with the record cache and the transaction's
cache emptied first, as a new request has them, then all five in turn.
Every cached call in them is a hit: what they show is the whole
request's work with the addon's caches against Odoo's, in CPU time
(``time.thread_time``), free of the scheduling noise that requests per
second over HTTP carry on a shared machine.

The last line printed is the figures as JSON after ``odoo_hit_path.json:
`` (seconds per call, best round of each).
"""

# ruff: noqa: F821  (``env`` is the shell's)
from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
import time
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


# Each side keeps its own statistics counters: Odoo's for vanilla, the
# addon's (hit counts native, hit_counters.py) for ours. One mapping of
# Odoo's, its contents swapped.
counters = ODOO.counters
side_counters: dict = {"ours": {}, "vanilla": {}}
current_side = "ours"


def use(caches) -> None:
    global current_side
    side = "vanilla" if caches is vanilla_caches else "ours"
    side_counters[current_side] = dict(counters)
    counters.clear()
    counters.update(side_counters[side])
    current_side = side
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
calls: dict = {
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


def request_work() -> dict:
    """The steady-state mix's server calls, each as a fresh request runs it."""
    sys.path.insert(0, os.environ["ORMCACHE_REDIS_BENCH"])
    import odoo_steady_state as steady

    user = env.ref("base.user_admin")
    has_sale = bool(env["ir.model"].search_count([("model", "=", "sale.order")]))
    model_name = "sale.order" if has_sale else "res.partner"
    context = {"lang": user.lang or "en_US", "tz": user.tz or "UTC", "bin_size": True}
    user_env = env(user=user.id, su=False, context=context)
    model = user_env[model_name]
    record = model.search([], limit=1)
    work = steady.Workload(major, model_name, record.id, context)
    views = [[False, "list"], [False, "form"], [False, "search"]]
    options = {"action_id": False, "load_filters": True, "toolbar": True}
    group_kwargs = work.read_group()[1]["kwargs"]
    group_kwargs.pop("context")

    def fresh(call):
        def run():
            user_env.invalidate_all()
            user_env.cr.cache.clear()
            return call()

        return run

    parts = {
        "get_views": lambda: model.get_views(views, options),
        "web_search_read": lambda: model.web_search_read(
            [], steady.LIST_FIELDS[model_name], limit=80
        ),
        "web_read_group": lambda: model.web_read_group(**group_kwargs),
        "web_read": lambda: record.web_read(steady.FORM_FIELDS[model_name]),
        "action": lambda: user_env["ir.actions.actions"]._for_xml_id(steady.ACTIONS[model_name]),
    }
    parts = {name: fresh(call) for name, call in parts.items()}
    each = list(parts.values())

    def mix():
        for part in each:
            part()

    rows = {f"request work: {name}": (call, 1, 20) for name, call in parts.items()}
    rows[f"request work: the mix, 5 calls on {model_name}"] = (mix, 1, 10)
    return rows


if os.environ.get("ORMCACHE_REDIS_BENCH"):
    calls.update(request_work())
hit_path = "native OdooLookup" if native_lookup else "Odoo's ormcache.lookup"
mapping = type(next(iter(ours_caches.values()))).__name__
print(f"Odoo {major}: {hit_path} + {mapping} against Odoo's ormcache.lookup + LRU")
print(f"{'call':48} {'ours':>9} {'vanilla':>9} {'ratio':>6}")
rows = []
try:
    for name, (call, distinct, *number) in calls.items():
        best = {"ours": float("inf"), "vanilla": float("inf")}
        # The hits: wall time, CALLS of them; a request's work: CPU time.
        number, timer = (number[0], time.thread_time) if number else (CALLS, time.perf_counter)
        for _ in range(ROUNDS):
            for label, caches in (("vanilla", vanilla_caches), ("ours", ours_caches)):
                use(caches)
                for _ in range(2 * distinct):
                    call()  # warm: the next calls are hits
                seconds = timeit.timeit(call, number=number, timer=timer)
                best[label] = min(best[label], seconds / number)
        ratio = best["ours"] / best["vanilla"]
        print(f"{name:48} {best['ours'] * 1e6:8.2f}u {best['vanilla'] * 1e6:8.2f}u {ratio:6.2f}")
        rows.append({"call": name, "ours": best["ours"], "vanilla": best["vanilla"]})
finally:
    use(ours_caches)
report = {"major": major, "hit_path": hit_path, "mapping": mapping, "rows": rows}
print(JSON_MARK + json.dumps(report), flush=True)
