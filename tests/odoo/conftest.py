"""Fixtures of the tests that need real Odoo source trees (``--odoo-tree``).

Collected only when trees are given (tests/conftest.py), e.g.::

    .venv/bin/python -m pytest tests/odoo --odoo-tree /path/to/odoo-19 \\
        --odoo-python /path/to/odoo-venv/bin/python \\
        --odoo-db-url postgresql://odoo@127.0.0.1:5432/ocr_test

Nothing here downloads or builds Odoo.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from odoo_trees import Database, OdooTree, tree_major


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "odoo_tree" in metafunc.fixturenames:
        trees = [Path(tree).resolve() for tree in metafunc.config.getoption("--odoo-tree")]
        metafunc.parametrize("odoo_tree", trees, ids=[tree.name for tree in trees], indirect=True)


@pytest.fixture
def odoo_tree(request: pytest.FixtureRequest) -> OdooTree:
    path: Path = request.param
    if not (path / "odoo-bin").is_file():
        pytest.fail(f"no odoo-bin in {path}")
    python = request.config.getoption("--odoo-python") or sys.executable
    return OdooTree(path, python, tree_major(path))


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A database name nobody uses, dropped (with its filestore) afterwards."""
    url = urlsplit(request.config.getoption("--odoo-db-url"))
    prefix = url.path.strip("/") or "ocr_test"
    db = Database(
        name=f"{prefix}_{uuid.uuid4().hex[:8]}",
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
    )
    yield db
    connection = db.connect("postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    connection.close()
    filestore = Path.home() / ".local" / "share" / "Odoo" / "filestore" / db.name
    shutil.rmtree(filestore, ignore_errors=True)
