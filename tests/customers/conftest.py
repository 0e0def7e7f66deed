from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smartbank.customers.service import DEVELOPMENT_PII_KEY, CustomerService
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.db import Database, create_engine
from smartbank.platform.notify import OutboxNotifier
from smartbank.platform.settings import Settings

from .helpers import FakeLogins, create_fake_logins_table


@pytest.fixture
async def customers(db: Database, clock: FrozenClock) -> CustomerService:
    await create_fake_logins_table(db)
    return CustomerService(db, clock, logins=FakeLogins(), notifier=OutboxNotifier("test"), pii_key=DEVELOPMENT_PII_KEY)


@pytest.fixture
async def own_db(fresh_database, settings: Settings) -> AsyncIterator[Database]:  # type: ignore[no-untyped-def]
    """A database of the test's own, for lists whose exact contents are asserted."""
    database = Database(create_engine(fresh_database(), settings))
    await create_fake_logins_table(database)
    yield database
    await database.dispose()


@pytest.fixture
def own_customers(own_db: Database, clock: FrozenClock) -> CustomerService:
    return CustomerService(
        own_db, clock, logins=FakeLogins(), notifier=OutboxNotifier("test"), pii_key=DEVELOPMENT_PII_KEY
    )
