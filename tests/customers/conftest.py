from __future__ import annotations

import pytest

from smartbank.customers.service import DEVELOPMENT_PII_KEY, CustomerService
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.db import Database
from smartbank.platform.notify import OutboxNotifier

from .helpers import FakeLogins, create_fake_logins_table


@pytest.fixture
async def customers(db: Database, clock: FrozenClock) -> CustomerService:
    await create_fake_logins_table(db)
    return CustomerService(db, clock, logins=FakeLogins(), notifier=OutboxNotifier("test"), pii_key=DEVELOPMENT_PII_KEY)
