"""No Python source of the package or the addon is above 500 lines, its
tests aside: a file that grows past it is split by concern (issue 18).
The native module's stub (``_native.pyi``) is a declaration file that
stubtest checks against the built module, not code: it is not counted."""

from __future__ import annotations

from pathlib import Path

from test_odoo_version_home import sources

REPO = Path(__file__).parent.parent
LIMIT = 500


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_sources_include_the_package_and_the_addon() -> None:
    names = {path.relative_to(REPO).as_posix() for path in sources()}
    assert "python/ormcache_redis/odoo_support/shared_tier.py" in names
    assert "odoo_addon/ormcache_redis/registry_hooks.py" in names
    assert not any("/tests/" in name for name in names)


def test_no_source_file_is_above_500_lines() -> None:
    too_long = {
        path.relative_to(REPO).as_posix(): count
        for path in sources()
        if (count := line_count(path)) > LIMIT
    }
    assert too_long == {}
