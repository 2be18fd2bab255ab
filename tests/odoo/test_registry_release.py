"""A registry that goes is freed with the addon loaded, as without it.

Odoo drops a registry on ``Registry.delete``, when a module install or
upgrade replaces it, and when a database falls out of its registry LRU.
The addon's objects must not keep the old one alive: its native hit path
is installed on the classes that define the methods (which outlive every
registry), and its caches, their gates and the shared tier form cycles
the garbage collector has to see through. A script run with the tree's
Python loads a registry with the addon server-wide (and a Redis, so that
the shared tier is on), uses the cached paths (``has_group``,
``_xmlid_lookup``, ``_get_company_ids``, ``get_param``), deletes the
registry, collects, and reports whether the registry and one of its
model classes are gone; vanilla Odoo runs the same script as the
reference.

Needs ``ormcache_redis`` installed in the tree's Python (``--odoo-python``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from odoo_trees import ROOT, Database, OdooTree

from ormcache_redis.testing import RedisServer

USE_AND_DELETE = """
import gc, json, sys, weakref
sys.path.insert(0, sys.argv[1])
from odoo.tools import config
config.parse_config(sys.argv[3:])
from odoo.modules.module import load_openerp_module
modules = config["server_wide_modules"]
for module in modules.split(",") if isinstance(modules, str) else modules:
    load_openerp_module(module)
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

def use(db):
    registry = Registry(db)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        for _ in range(2):
            env.user.has_group("base.group_user")
            env["ir.model.data"]._xmlid_lookup("base.user_admin")
            env["res.users"].browse(env.uid)._get_company_ids()
            env["ir.config_parameter"].get_param("web.base.url")
        users = type(env["res.users"])
    return weakref.ref(registry), weakref.ref(users)

registry, users = use(sys.argv[2])
Registry.delete(sys.argv[2])
gc.collect()
print("RESULT " + json.dumps({"registry": registry() is None, "class": users() is None}))
"""


def odoo_bin(tree: OdooTree, conf: Path, *args: str) -> None:
    argv = [tree.python, str(tree.path / "odoo-bin"), "-c", str(conf), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]


def freed(tree: OdooTree, conf: Path, database: Database, load: str) -> dict[str, bool]:
    argv = [tree.python, "-c", USE_AND_DELETE, str(tree.path), database.name]
    argv += ["-c", str(conf), "--load", load, "--log-level", "warn"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def test_a_deleted_registry_is_freed_with_the_addon(
    odoo_tree: OdooTree, database: Database, tmp_path: Path
) -> None:
    addons = [odoo_tree.path / "odoo" / "addons", odoo_tree.path / "addons", ROOT / "odoo_addon"]
    redis = RedisServer().start()
    try:
        conf = tmp_path / "odoo.conf"
        options = database.odoo_options()
        pairs = zip(options[::2], options[1::2], strict=True)
        lines = [f"{name.lstrip('-')} = {value}" for name, value in pairs]
        conf.write_text(
            "[options]\n"
            + "".join(f"{line}\n" for line in lines)
            + f"addons_path = {','.join(str(path) for path in addons if path.is_dir())}\n"
            + f"ormcache_redis_url = {redis.url}\n"
            + f"data_dir = {tmp_path / 'data'}\n"
        )
        odoo_bin(odoo_tree, conf, "-d", database.name, "-i", "base,web", "--stop-after-init")
        vanilla = freed(odoo_tree, conf, database, "base,web")
        addon = freed(odoo_tree, conf, database, "base,web,ormcache_redis")
    finally:
        redis.close()
    if not all(vanilla.values()):
        pytest.fail(f"vanilla Odoo {odoo_tree.series} keeps its registry here: {vanilla}")
    assert addon == {"registry": True, "class": True}
