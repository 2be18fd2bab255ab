"""scripts/odoo_addons.py: the per-series copies of the addons that the
wheels and the linters see, and the README.rst digests."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import odoo_addons  # scripts/ is no package

ROOT = odoo_addons.ROOT

MANIFEST = b"""{
    "name": "x",
    "version": "1.2.3",  # the addon's own
    "license": "LGPL-3",
}
"""


def test_the_series_are_the_odoo_versions_the_addon_supports() -> None:
    # odoo_version.py needs Odoo to import: read its records' majors.
    source = (ROOT / "odoo_addon" / "ormcache_redis" / "odoo_version.py").read_text()
    majors = [
        keyword.value.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "OdooVersion"
        for keyword in node.keywords
        if keyword.arg == "major" and isinstance(keyword.value, ast.Constant)
    ]
    assert odoo_addons.SERIES == tuple(f"{major}.0" for major in sorted(majors))


def test_the_series_is_written_in_front_of_the_version_and_nothing_else_moves() -> None:
    staged = odoo_addons.series_manifest(MANIFEST, "18.0", Path("m"))
    assert staged == MANIFEST.replace(b'"1.2.3"', b'"18.0.1.2.3"')
    assert ast.literal_eval(staged.decode())["version"] == "18.0.1.2.3"


@pytest.mark.parametrize("version", ["19.0.1.0.0", "1.0", "1.0.0.0"])
def test_a_version_that_names_a_series_is_refused(version: str) -> None:
    manifest = MANIFEST.replace(b"1.2.3", version.encode())
    with pytest.raises(odoo_addons.AddonError, match="without a series"):
        odoo_addons.series_manifest(manifest, "19.0", Path("m"))


def test_an_unknown_series_is_refused() -> None:
    with pytest.raises(odoo_addons.AddonError, match=r"16\.0 is not one of"):
        odoo_addons.series_manifest(MANIFEST, "16.0", Path("m"))


def test_the_tree_keeps_its_own_version_and_each_copy_gets_its_series(tmp_path: Path) -> None:
    for addon in odoo_addons.ADDONS:
        manifest = (odoo_addons.ADDONS_DIR / addon / "__manifest__.py").read_bytes()
        assert odoo_addons.BASE_VERSION.fullmatch(odoo_addons.version_literal(manifest)[2])
    for series in odoo_addons.SERIES:
        for copy in odoo_addons.stage(series, tmp_path / series):
            manifest = ast.literal_eval((copy / "__manifest__.py").read_text())
            assert manifest["version"].startswith(f"{series}.")
            assert not list(copy.rglob("__pycache__"))
            assert (copy / "README.rst").is_file()


def test_the_engine_requirement_goes_to_whool(tmp_path: Path) -> None:
    (copy,) = odoo_addons.stage("19.0", tmp_path, ["ormcache_redis"], "ormcache-redis==9.9.9")
    pyproject = (copy / "pyproject.toml").read_text()
    assert 'build-backend = "whool.buildapi"' in pyproject
    assert 'ormcache_redis = "ormcache-redis==9.9.9"' in pyproject


def test_the_readmes_are_current_and_a_changed_fragment_makes_one_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert odoo_addons.stale_readmes() == []
    addons = tmp_path / "odoo_addon"
    shutil.copytree(odoo_addons.ADDONS_DIR, addons, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(odoo_addons, "ADDONS_DIR", addons)
    monkeypatch.setattr(odoo_addons, "ROOT", tmp_path)
    assert odoo_addons.stale_readmes() == []
    with (addons / "ormcache_redis" / "readme" / "USAGE.md").open("a") as usage:
        usage.write("\nOne more sentence.\n")
    (stale,) = odoo_addons.stale_readmes()
    assert stale.startswith("odoo_addon/ormcache_redis/README.rst is not generated")
