"""The addon as a wheel, the Odoo Community Association's way: the
odoo-addon-ormcache_redis wheel of the tree's series, pip installed beside
an Odoo source tree, is found by ``odoo-bin --load=...,ormcache_redis``
with no addons path entry for it, installs in a fresh database with the
series version, and runs its server-wide hook against a real Redis.

The environment is a fresh virtualenv layered over the Odoo Python's
packages (a ``.pth`` file), so the wheels never touch that environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from odoo_trees import ROOT, Database, OdooTree

from ormcache_redis.testing import RedisServer
from ormcache_redis.testing.redis_server import free_port

sys.path.insert(0, str(ROOT / "scripts"))
import odoo_addons  # scripts/ is no package

MODULE_PATH = """
import json, sys
sys.path.insert(0, sys.argv[1])
from odoo.tools import config
config.parse_config(sys.argv[2:])
from odoo.modules.module import get_module_path
import odoo.addons
print(json.dumps({"module": get_module_path("ormcache_redis"),
                  "addons": [str(path) for path in odoo.addons.__path__]}))
"""


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="session")
def engine_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ormcache_redis wheel of this checkout (cargo reuses `make build`'s work)."""
    out = tmp_path_factory.mktemp("engine")
    maturin = Path(sys.executable).with_name("maturin")
    run([str(maturin), "build", "--release", "--quiet", "--out", str(out)], cwd=ROOT)
    (wheel,) = out.glob("ormcache_redis-*.whl")
    return wheel


def addon_wheel(series: str, engine: Path, out: Path) -> Path:
    """What `make wheel` builds for the series: the staged copy, packed by whool."""
    engine_version = engine.name.split("-")[1]
    (staged,) = odoo_addons.stage(
        series, out / "staged", ["ormcache_redis"], f"ormcache-redis=={engine_version}"
    )
    run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(out / "dist"), str(staged)),
        ]
    )
    (wheel,) = (out / "dist").glob(f"odoo_addon_ormcache_redis-{series}.*.whl")
    return wheel


def layered_venv(odoo_python: str, path: Path) -> Path:
    """A new virtualenv that also sees the Odoo Python's packages; its python."""
    facts = json.loads(
        run(
            [
                odoo_python,
                "-c",
                "import json, site, sys; "
                "print(json.dumps([sys._base_executable, site.getsitepackages()]))",
            ]
        ).stdout
    )
    base_python, odoo_site_packages = facts
    run([base_python, "-m", "venv", str(path)])
    python = path / "bin" / "python"
    (own_site_packages,) = json.loads(
        run(
            [str(python), "-c", "import json, site; print(json.dumps(site.getsitepackages()))"]
        ).stdout
    )
    # addsitedir, not a bare path: the Odoo environment's own .pth files apply too.
    lines = "".join(f"import site; site.addsitedir({entry!r})\n" for entry in odoo_site_packages)
    (Path(own_site_packages) / "zz_odoo_environment.pth").write_text(lines)
    return python


def test_odoo_finds_the_installed_addon_wheel_without_an_addons_path(
    odoo_tree: OdooTree, database: Database, tmp_path: Path, engine_wheel: Path
) -> None:
    wheel = addon_wheel(odoo_tree.series, engine_wheel, tmp_path)
    python = layered_venv(odoo_tree.python, tmp_path / "venv")
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    run([*pip, str(engine_wheel)])
    # Odoo from a source checkout is no installed distribution: its
    # requirement (odoo==<series>.*) is left out, as OCA documents.
    run([*pip, "--no-deps", str(wheel)])

    load = "base,rpc,web" if (odoo_tree.path / "addons" / "rpc").is_dir() else "base,web"
    # No --addons-path: Odoo's defaults, the tree's own addons only.
    options = ["-c", os.devnull, *database.odoo_options(), "-d", database.name]
    options += ["--load", f"{load},ormcache_redis"]
    if odoo_tree.major < 19:
        options.append("--without-demo=all")
    with RedisServer() as redis:
        done = subprocess.run(
            [
                str(python),
                str(odoo_tree.path / "odoo-bin"),
                *options,
                *("-i", "ormcache_redis", "--stop-after-init", "--log-level", "info"),
                *("--http-interface", "127.0.0.1", "--http-port", str(free_port())),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "ORMCACHE_REDIS_URL": redis.url},
            timeout=900,
        )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    # The server-wide hook ran and reached the Redis it was given.
    assert re.search(rf"shared caches \S+ on \S*127\.0\.0\.1:{redis.port}\b", log), log[-4000:]

    connection = database.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, latest_version FROM ir_module_module WHERE name = 'ormcache_redis'"
        )
        state, version = cursor.fetchone()
    connection.close()
    manifest = (ROOT / "odoo_addon" / "ormcache_redis" / "__manifest__.py").read_bytes()
    own_version = odoo_addons.version_literal(manifest)[2]
    assert (state, version) == ("installed", f"{odoo_tree.series}.{own_version}")

    found = json.loads(run([str(python), "-c", MODULE_PATH, str(odoo_tree.path), *options]).stdout)
    site_packages = tmp_path / "venv" / "lib"
    assert Path(found["module"]).is_relative_to(site_packages), found
    assert not any(str(ROOT) in path for path in found["addons"]), found
