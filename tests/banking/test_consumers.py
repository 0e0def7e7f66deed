"""The customers.kyc_verified consumer opens one CNY current account per customer, whatever the deliveries."""

from __future__ import annotations

import uuid

from smartbank.banking.model import BANKING_NAMESPACE, Product, is_valid_account_number
from smartbank.banking.service import BankingService
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database
from smartbank.platform.outbox import OutboxRelay, write_event

from .conftest import FakeDirectory
from .helpers import count, drain, new_customer, rows


async def kyc_verified(db: Database, customer_id: uuid.UUID) -> uuid.UUID:
    async with db.transaction() as conn:
        return await write_event(
            conn,
            "customers.kyc_verified",
            {"customer_id": str(customer_id), "verified_at": "2026-03-02T02:00:00+00:00"},
        )


async def test_kyc_verified_opens_exactly_one_account_even_when_delivered_twice(
    banking: BankingService, bledger: LedgerService, bdb: Database, relay: OutboxRelay, directory: FakeDirectory
) -> None:
    await drain(relay)
    customer = new_customer(directory)
    event_id = await kyc_verified(bdb, customer.id)
    await drain(relay)

    accounts = await banking.list_accounts(customer, customer.id)
    assert len(accounts) == 1
    (account,) = accounts
    assert account.id == uuid.uuid5(BANKING_NAMESPACE, f"kyc-current:{customer.id}")
    assert (account.product, account.currency, account.status.value) == (Product.CURRENT, "CNY", "open")
    assert is_valid_account_number(account.number)
    ledger_account = await bledger.get_account(account.id)
    assert (ledger_account.kind, ledger_account.debits_must_not_exceed_credits) == (AccountKind.LIABILITY, True)

    # The relay delivers the same event again (say it crashed before marking it published) ...
    async with bdb.transaction() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE platform.outbox SET published_at = NULL WHERE event_id = :e"), {"e": event_id})
    await drain(relay)
    # ... and a second event for the same customer arrives too.
    await kyc_verified(bdb, customer.id)
    await drain(relay)

    assert await banking.list_accounts(customer, customer.id) == [account]
    assert await count(bdb, "SELECT count(*) FROM banking.accounts WHERE customer_id = :c", c=customer.id) == 1
    opened = await rows(
        bdb,
        "SELECT actor_kind FROM platform.audit_log WHERE action = 'banking.account_opened' AND subject_id = :a",
        a=str(account.id),
    )
    assert [o.actor_kind for o in opened] == ["system"]
    assert (
        await count(
            bdb,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'banking.account_opened' "
            "AND payload->>'customer_id' = :c",
            c=str(customer.id),
        )
        == 1
    )
    assert (
        await count(
            bdb,
            "SELECT count(*) FROM platform.consumed_events WHERE consumer = 'banking.kyc_account' AND event_id = :e",
            e=event_id,
        )
        == 1
    )


async def test_two_deliveries_at_once_still_open_one_account(
    banking: BankingService, bdb: Database, directory: FakeDirectory
) -> None:
    import asyncio

    customer = new_customer(directory)
    event_id = new_id()
    results = await asyncio.gather(
        banking.open_account_on_kyc(event_id, customer.id), banking.open_account_on_kyc(event_id, customer.id)
    )
    assert sorted(r is None for r in results) == [False, True]
    assert await count(bdb, "SELECT count(*) FROM banking.accounts WHERE customer_id = :c", c=customer.id) == 1


async def test_malformed_kyc_event_is_skipped_without_holding_up_the_relay(
    banking: BankingService, bdb: Database, relay: OutboxRelay
) -> None:
    await drain(relay)
    async with bdb.transaction() as conn:
        event_id = await write_event(conn, "customers.kyc_verified", {"customer_id": "not-a-uuid"})
    await drain(relay)
    assert (
        await count(
            bdb, "SELECT count(*) FROM platform.outbox WHERE event_id = :e AND published_at IS NOT NULL", e=event_id
        )
        == 1
    )
