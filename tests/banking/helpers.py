"""Helpers shared by banking tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text

from smartbank.banking.model import BANK_SETTLEMENT_ACCOUNT_ID, PaymentProfile, Product
from smartbank.banking.service import BankingService
from smartbank.customers.model import KycStatus
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import TransferRequest
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database
from smartbank.platform.outbox import OutboxRelay

from .conftest import FakeDirectory


def new_customer(
    directory: FakeDirectory,
    *,
    kyc: str = "verified",
    per_payment_minor: int = 2_000_000,
    daily_minor: int = 5_000_000,
    mfa_at: datetime | None = None,
) -> Principal:
    customer_id = new_id()
    directory.profiles[customer_id] = PaymentProfile(
        customer_id, KycStatus(kyc), "standard", per_payment_minor, daily_minor, "CNY"
    )
    return Principal(customer_id, PrincipalKind.CUSTOMER, mfa_verified_at=mfa_at)


def with_mfa(principal: Principal, at: datetime) -> Principal:
    return Principal(principal.id, principal.kind, principal.roles, principal.session_id, at)


def staff(*roles: StaffRole) -> Principal:
    return Principal(new_id(), PrincipalKind.STAFF, frozenset(roles))


async def funded_account(
    banking: BankingService,
    ledger: LedgerService,
    owner: Principal,
    amount_minor: int,
    product: Product = Product.CURRENT,
) -> uuid.UUID:
    account = await banking.open_account(owner, product, "CNY")
    if amount_minor:
        result = await ledger.submit(
            TransferRequest(
                id=new_id(),
                debit_account_id=BANK_SETTLEMENT_ACCOUNT_ID,
                credit_account_id=account.id,
                amount_minor=amount_minor,
                currency="CNY",
                code=1,
            )
        )
        assert result.ok
    return account.id


async def posted(ledger: LedgerService, account_id: uuid.UUID) -> int:
    account = await ledger.get_account(account_id)
    return account.balances.posted(account.kind)


async def drain(relay: OutboxRelay) -> None:
    for _ in range(100):
        if await relay.relay_once() == 0:
            return
    raise AssertionError("the outbox did not drain")


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def count(db: Database, sql: str, **params: Any) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())
