"""Alembic environment: migrations run on a synchronous psycopg 3 connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    # One migrator at a time, even when several processes start together.
    connection.execute(text("SELECT pg_advisory_lock(7310550001)"))
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS platform"))
    connection.commit()
    context.configure(
        connection=connection,
        version_table_schema="platform",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    connection.execute(text("SELECT pg_advisory_unlock(7310550001)"))
    connection.commit()
engine.dispose()
