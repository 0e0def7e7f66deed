"""Alembic migrations, run by ``smartbank migrate`` and at the start of ``serve``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from smartbank.platform.db import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: SQL files that migrations apply (function definitions kept in one place).
SQL_DIR = MIGRATIONS_DIR / "sql"
VERSION_TABLE_SCHEMA = "platform"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table_schema": VERSION_TABLE_SCHEMA})
            return context.get_current_revision()
    finally:
        engine.dispose()


def execute_script(sql: str) -> None:
    """Run a multi-statement SQL script inside a migration, verbatim (no placeholder parsing)."""
    from alembic import op

    raw = op.get_bind().connection.driver_connection
    raw.execute(sql)  # type: ignore[union-attr]
