"""What the tests of tests/odoo/ know of an Odoo tree and of a throwaway
database (conftest.py makes them fixtures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class OdooTree:
    path: Path
    python: str
    major: int

    @property
    def series(self) -> str:
        return f"{self.major}.0"


@dataclass(frozen=True)
class Database:
    """A throwaway PostgreSQL database and the odoo-bin options that reach it."""

    name: str
    host: str
    port: int
    user: str
    password: str

    def odoo_options(self) -> list[str]:
        options = ["--db_host", self.host, "--db_port", str(self.port), "--db_user", self.user]
        return [*options, *(["--db_password", self.password] if self.password else [])]

    def connect(self, dbname: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname or self.name,
        )


def tree_major(tree: Path) -> int:
    release: dict[str, object] = {}
    exec((tree / "odoo" / "release.py").read_text(), release)
    version_info = release["version_info"]
    assert isinstance(version_info, tuple)
    return int(version_info[0])
