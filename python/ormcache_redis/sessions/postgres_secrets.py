"""The secret of each database's session records, for the migration
command: the configured ``ormcache_redis_secret`` for every database, else
the database's own ``database.secret``, read from PostgreSQL with psycopg2
(which Odoo's Python has)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ormcache_redis.config import ConfigError
from ormcache_redis.odoo_support.deployment_secrets import DeploymentSecrets

_SECRET_SQL = "SELECT value FROM ir_config_parameter WHERE key = 'database.secret'"


class DatabaseSecrets(DeploymentSecrets):
    """The secret of each database's session records, found as the addon
    finds it: the configured secret for every database, else the
    database's own ``database.secret``, read once with psycopg2."""

    def __init__(self, configured: str | None, connect: dict[str, str] | None) -> None:
        self._connect = connect
        self.problems: list[str] = []
        self._psycopg2: Any = _import_psycopg2() if connect is not None else None
        super().__init__(configured, self._read_secret)

    def check_connection(self) -> None:
        """A clear error now rather than one per database later."""
        if self._connect is None or self.configured is not None:
            return
        try:
            self._psycopg2.connect(**{"dbname": "postgres", **self._connect}).close()
        except self._psycopg2.Error as exc:
            raise ConfigError(
                f"--db-uri: cannot connect to PostgreSQL ({str(exc).strip()})."
            ) from None

    def _read_secret(self, db: str) -> str | None:
        if self._connect is None:
            return None
        try:
            connection = self._psycopg2.connect(**{**self._connect, "dbname": db})
            try:
                with connection.cursor() as cursor:
                    cursor.execute(_SECRET_SQL)
                    row = cursor.fetchone()
            finally:
                connection.close()
        except self._psycopg2.Error as exc:
            self.problems.append(f"database {db!r}: {str(exc).strip().splitlines()[0]}")
            return None
        return row[0] if row else None


def _import_psycopg2() -> Any:
    try:
        import psycopg2  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "--db-uri (or --config's db_* options) needs psycopg2 to read each database's "
            "database.secret: run this command with Odoo's Python, install psycopg2-binary, "
            "or pass --secret when the deployment sets ormcache_redis_secret."
        ) from None
    return psycopg2


def connect_options(db_uri: str | None, conf: dict[str, str]) -> dict[str, str] | None:
    """psycopg2.connect() keywords from ``--db-uri``, else from odoo.conf's db_* options."""
    if db_uri:
        if not db_uri.startswith(("postgresql://", "postgres://")):
            raise ConfigError("--db-uri must look like postgresql://user:password@host:5432.")
        database = urlsplit(db_uri).path.strip("/")
        return {"dsn": db_uri, **({"dbname": database} if database else {})}
    if not conf:
        return None
    options = {}
    for name, keyword in (("db_host", "host"), ("db_port", "port"),
                          ("db_user", "user"), ("db_password", "password")):  # fmt: skip
        value = conf.get(name)
        if value not in (None, "", "False"):  # Odoo writes unset options as False
            options[keyword] = str(value)
    return options
