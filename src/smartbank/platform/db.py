"""The database: one async SQLAlchemy engine over psycopg 3, PostgreSQL 15 or newer only."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection as DriverConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from smartbank.platform.settings import Settings

MIN_SERVER_VERSION_NUM = 150000


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` (libpq form) to the SQLAlchemy psycopg 3 dialect URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("smartbank runs on PostgreSQL only")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The reverse of :func:`sqlalchemy_url`, for psycopg and command-line tools."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    """The server to use: ``DATABASE_URL`` when set, otherwise the embedded one (started here).

    The embedded server's URL is exported as ``DATABASE_URL`` so that child processes (uvicorn
    workers, the job worker) use the same server without starting their own.
    """
    if settings.database_url:
        return settings.database_url
    from smartbank.platform.embedded_pg import start_embedded

    url = start_embedded(settings.pgdata_dir)
    os.environ["DATABASE_URL"] = url
    return url


def create_engine(url: str, settings: Settings, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_pre_ping=False,
        connect_args={
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms} -c TimeZone=UTC",
            "application_name": "smartbank",
        },
        **kwargs,
    )


class Database:
    """Holds the engine; use cases open one transaction each through :meth:`transaction`.

    Hot paths that are a single statement (the ledger's transfer call) may instead take an
    autocommit driver connection from :meth:`driver_pool`, skipping the ORM layer entirely.
    """

    def __init__(self, engine: AsyncEngine, *, statement_timeout_ms: int = 30_000) -> None:
        self.engine = engine
        self.statement_timeout_ms = statement_timeout_ms
        self._driver_pools: list[AsyncConnectionPool[DriverConnection[Any]]] = []

    def driver_pool(self, size: int, name: str) -> AsyncConnectionPool[DriverConnection[Any]]:
        """A pool of ``size`` autocommit psycopg connections to the same database (opened on first use)."""
        url = self.engine.url
        pool: AsyncConnectionPool[DriverConnection[Any]] = AsyncConnectionPool(
            libpq_url(url.render_as_string(hide_password=False)),
            min_size=size,
            max_size=size,
            name=name,
            open=False,
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={self.statement_timeout_ms} -c TimeZone=UTC",
                "application_name": f"smartbank-{name}",
            },
        )
        self._driver_pools.append(pool)
        return pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One use case, one transaction: committed on normal exit, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads outside an explicit unit of work, in autocommit mode: each
        statement sees its own snapshot, and no BEGIN or ROLLBACK round trip wraps the reads.
        Reads that must agree with each other belong in :meth:`transaction`."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def check_server(self) -> int:
        async with self.engine.connect() as conn:
            version = int((await conn.execute(text("SHOW server_version_num"))).scalar_one())
        if version < MIN_SERVER_VERSION_NUM:
            raise RuntimeError(f"PostgreSQL 15 or newer is required; the server is {version}")
        return version

    async def dispose(self) -> None:
        for pool in self._driver_pools:
            await pool.close()
        await self.engine.dispose()
