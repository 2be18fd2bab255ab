"""What differs between Odoo 17.0, 18.0 and 19.0 has one home, the addon's
``odoo_version.py`` (one record per version): no other source of the
package or the addon reads Odoo's release. The records themselves are
checked against each real Odoo by the addon's ``tests/test_odoo_version.py``."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).parent.parent
ADDON = REPO / "odoo_addon" / "ormcache_redis"
READS_THE_RELEASE = re.compile(r"\bversion_info\b|\bodoo\.release\b|from odoo import release")


def sources() -> list[Path]:
    """The package's and the addons' Python sources, their tests aside."""
    paths = []
    for root in (REPO / "python" / "ormcache_redis", REPO / "odoo_addon"):
        for path in sorted(root.rglob("*.py")):
            if "tests" not in path.relative_to(root).parts:
                paths.append(path)
    return paths


def test_only_odoo_version_reads_odoos_release() -> None:
    assert ADDON / "odoo_version.py" in sources()
    readers = [path for path in sources() if READS_THE_RELEASE.search(path.read_text())]
    assert readers == [ADDON / "odoo_version.py"]
