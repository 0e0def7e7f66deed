"""Helpers shared by ledger tests."""

from __future__ import annotations

import uuid

from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind, AccountSpec, TransferRequest, TransferType
from smartbank.ledger.service import LedgerService


async def open_account(
    ledger: LedgerService,
    *,
    currency: str = "CNY",
    kind: AccountKind = AccountKind.LIABILITY,
    no_overdraft: bool = True,
    limit_minor: int = 0,
) -> uuid.UUID:
    spec = AccountSpec(
        id=new_id(),
        currency=currency,
        kind=kind,
        code=100,
        debits_must_not_exceed_credits=no_overdraft,
        limit_minor=limit_minor,
    )
    await ledger.open_account(spec)
    return spec.id


async def open_funding(ledger: LedgerService, currency: str = "CNY") -> uuid.UUID:
    """A bank-side asset account with no limit, to fund customer accounts from."""
    return await open_account(ledger, currency=currency, kind=AccountKind.ASSET, no_overdraft=False)


def transfer(
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    *,
    currency: str = "CNY",
    type: TransferType = TransferType.POSTED,
    timeout_s: int | None = None,
    id: uuid.UUID | None = None,
) -> TransferRequest:
    return TransferRequest(
        id=id or new_id(),
        type=type,
        debit_account_id=debit,
        credit_account_id=credit,
        amount_minor=amount,
        currency=currency,
        code=1,
        timeout_s=timeout_s,
    )
