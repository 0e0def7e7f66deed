"""Request and response models of the banking HTTP API.

Money is integer minor units (``*_minor``) with its ``currency``; the decimal strings beside them
(``amount``, ``posted``, ...) are formatted from the integers with the currency's exponent, never
through a float.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.config import JsonDict

from smartbank.banking.model import (
    MAX_PAYEE_NAME,
    MAX_REFERENCE,
    AccountBalance,
    AccountState,
    Entry,
    Payee,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    format_minor,
)
from smartbank.banking.service import MAX_FREEZE_REASON, TransactionDetail

MAX_AMOUNT: Final = 2**63 - 1

AmountMinor = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT, description="Amount in minor units (fen for CNY).")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["CNY"])]
Reference = Annotated[str, Field(max_length=MAX_REFERENCE, description="Shown to both sides; printable characters.")]
AccountNumber = Annotated[
    str,
    Field(
        min_length=16,
        max_length=19,
        pattern=r"^[0-9 ]+$",
        description="16 digits (spaces allowed) with valid check digits.",
        examples=["0001000000000158"],
    ),
]

_ACCOUNT_EXAMPLE: JsonDict = {
    "id": "0193a1f0-7c2e-7000-8000-000000000101",
    "number": "0001000000000158",
    "iban": None,
    "product": "current",
    "currency": "CNY",
    "status": "open",
    "branch_code": "0001",
    "opened_at": "2026-11-27T09:00:00Z",
    "posted_minor": 1250000,
    "available_minor": 1250000,
    "posted": "12500.00",
    "available": "12500.00",
}
_PAYMENT_EXAMPLE: JsonDict = {
    "id": "0193a1f0-7c2e-7000-8000-0000000003a1",
    "kind": "transfer",
    "status": "completed",
    "account_id": "0193a1f0-7c2e-7000-8000-000000000101",
    "counterparty_account_id": "0193a1f0-7c2e-7000-8000-000000000202",
    "payee_id": "0193a1f0-7c2e-7000-8000-0000000002b1",
    "branch_code": None,
    "amount_minor": 12550,
    "amount": "125.50",
    "currency": "CNY",
    "reference": "rent November",
    "transfer_id": "5b0c8c0e-1f4e-5d7a-9a61-0c1e2f3a4b5c",
    "failure_code": None,
    "step_up": False,
    "created_at": "2026-11-27T09:30:00Z",
    "finished_at": "2026-11-27T09:30:00Z",
}
_TRANSACTION_EXAMPLE: JsonDict = {
    "id": "5b0c8c0e-1f4e-5d7a-9a61-0c1e2f3a4b5c",
    "account_id": "0193a1f0-7c2e-7000-8000-000000000101",
    "amount_minor": -12550,
    "amount": "-125.50",
    "currency": "CNY",
    "posted_at": "2026-11-27T09:30:00Z",
    "counterparty_number": "0001000000000261",
    "counterparty_name": "Wang Fang",
    "description": "rent November",
    "payment_id": "0193a1f0-7c2e-7000-8000-0000000003a1",
    "kind": "transfer",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- accounts ------------------------------------------------------------------------------------


class DepositAccountOut(BaseModel):
    id: uuid.UUID
    number: str = Field(description="16 digits: branch, serial, check digits (ISO 7064 MOD 97-10).")
    iban: str | None
    product: Product
    currency: str
    status: AccountState
    branch_code: str
    opened_at: datetime
    posted_minor: int = Field(description="Balance of posted transfers, in minor units.")
    available_minor: int = Field(description="Posted balance less holds: what can be spent now.")
    posted: str = Field(description="posted_minor as a decimal string.")
    available: str = Field(description="available_minor as a decimal string.")

    model_config = ConfigDict(json_schema_extra={"examples": [_ACCOUNT_EXAMPLE]})

    @classmethod
    def of(cls, balance: AccountBalance) -> DepositAccountOut:
        a = balance.account
        return cls(
            id=a.id,
            number=a.number,
            iban=a.iban,
            product=a.product,
            currency=a.currency,
            status=a.status,
            branch_code=a.branch_code,
            opened_at=a.opened_at,
            posted_minor=balance.posted_minor,
            available_minor=balance.available_minor,
            posted=format_minor(balance.posted_minor, a.currency),
            available=format_minor(balance.available_minor, a.currency),
        )


class DepositAccountListOut(BaseModel):
    items: list[DepositAccountOut] = Field(description="At most 50 accounts, oldest first.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_ACCOUNT_EXAMPLE]}]})


# -- history -------------------------------------------------------------------------------------


class TransactionOut(BaseModel):
    id: uuid.UUID = Field(description="The ledger transfer's id.")
    account_id: uuid.UUID
    amount_minor: int = Field(description="Signed: positive money in, negative money out.")
    amount: str
    currency: str
    posted_at: datetime
    counterparty_number: str | None
    counterparty_name: str | None
    description: str
    payment_id: uuid.UUID | None
    kind: str | None = Field(description="`transfer`, `cash_deposit`, `cash_withdrawal`, or null.")

    model_config = ConfigDict(json_schema_extra={"examples": [_TRANSACTION_EXAMPLE]})

    @classmethod
    def of(cls, e: Entry) -> TransactionOut:
        return cls(
            id=e.transfer_id,
            account_id=e.account_id,
            amount_minor=e.amount_minor,
            amount=format_minor(e.amount_minor, e.currency),
            currency=e.currency,
            posted_at=e.posted_at,
            counterparty_number=e.counterparty_number,
            counterparty_name=e.counterparty_name,
            description=e.description,
            payment_id=e.payment_id,
            kind=e.kind,
        )


class TransactionPageOut(BaseModel):
    items: list[TransactionOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_TRANSACTION_EXAMPLE], "next_cursor": "ZTQy"}]}
    )


# -- payments ------------------------------------------------------------------------------------


class PaymentIn(Strict):
    from_account_id: uuid.UUID
    to_payee_id: uuid.UUID | None = Field(None, description="Pay one of your payees ...")
    to_account_id: uuid.UUID | None = Field(None, description="... or another of your own accounts (name one).")
    amount_minor: AmountMinor
    currency: Currency
    reference: Reference = ""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_account_id": "0193a1f0-7c2e-7000-8000-000000000101",
                    "to_payee_id": "0193a1f0-7c2e-7000-8000-0000000002b1",
                    "amount_minor": 12550,
                    "currency": "CNY",
                    "reference": "rent November",
                }
            ]
        },
    )


class PaymentOut(BaseModel):
    id: uuid.UUID
    kind: PaymentKind
    status: PaymentStatus
    account_id: uuid.UUID = Field(description="The customer's account the payment debits (or a cash operation's).")
    counterparty_account_id: uuid.UUID | None
    payee_id: uuid.UUID | None
    branch_code: str | None = Field(description="Cash operations: the branch.")
    amount_minor: int
    amount: str
    currency: str
    reference: str
    transfer_id: uuid.UUID = Field(description="The ledger transfer that moves the money.")
    failure_code: str | None
    step_up: bool = Field(description="Whether the payment needed a fresh MFA.")
    created_at: datetime
    finished_at: datetime | None

    model_config = ConfigDict(json_schema_extra={"examples": [_PAYMENT_EXAMPLE]})

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        return cls(
            id=p.id,
            kind=p.kind,
            status=p.status,
            account_id=p.account_id,
            counterparty_account_id=p.counterparty_account_id,
            payee_id=p.payee_id,
            branch_code=p.branch_code,
            amount_minor=p.amount_minor,
            amount=format_minor(p.amount_minor, p.currency),
            currency=p.currency,
            reference=p.reference,
            transfer_id=p.transfer_id,
            failure_code=p.failure_code,
            step_up=p.step_up,
            created_at=p.created_at,
            finished_at=p.finished_at,
        )


class TransactionDetailOut(TransactionOut):
    transfer_code: int = Field(description="The ledger's code of why the money moved.")
    transfer_created_at: datetime
    payment: PaymentOut | None = Field(description="The payment behind it, when it is yours.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_TRANSACTION_EXAMPLE,
                    "transfer_code": 100,
                    "transfer_created_at": "2026-11-27T09:30:00Z",
                    "payment": _PAYMENT_EXAMPLE,
                }
            ]
        }
    )

    @classmethod
    def of_detail(cls, d: TransactionDetail) -> TransactionDetailOut:
        return cls(
            **TransactionOut.of(d.entry).model_dump(),
            transfer_code=d.transfer.code,
            transfer_created_at=d.transfer.created_at,
            payment=PaymentOut.of(d.payment) if d.payment is not None else None,
        )


# -- payees --------------------------------------------------------------------------------------


class PayeeIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_PAYEE_NAME, description="Shown in your history.")]
    account_number: AccountNumber

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Wang Fang", "account_number": "0001 0000 0000 0261"}]},
    )


class PayeeOut(BaseModel):
    id: uuid.UUID
    name: str
    account_number: str
    created_at: datetime = Field(description="Payments to a payee younger than 24 hours need a step-up.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0193a1f0-7c2e-7000-8000-0000000002b1",
                    "name": "Wang Fang",
                    "account_number": "0001000000000261",
                    "created_at": "2026-11-26T08:00:00Z",
                }
            ]
        }
    )

    @classmethod
    def of(cls, p: Payee) -> PayeeOut:
        return cls(id=p.id, name=p.name, account_number=p.account_number, created_at=p.created_at)


class PayeeListOut(BaseModel):
    items: list[PayeeOut] = Field(description="At most 200 payees.")


# -- staff ---------------------------------------------------------------------------------------


class FreezeIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_FREEZE_REASON, description="Kept in the audit log.")]

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "card reported stolen; customer called 09:12"}]}
    )


class CashIn(Strict):
    account_id: uuid.UUID
    branch_code: Annotated[str, Field(pattern=r"^[0-9]{4}$", description="The branch whose cash moves.")]
    amount_minor: AmountMinor
    currency: Currency
    reference: Reference = ""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "account_id": "0193a1f0-7c2e-7000-8000-000000000101",
                    "branch_code": "0002",
                    "amount_minor": 500000,
                    "currency": "CNY",
                    "reference": "cash at counter 3",
                }
            ]
        },
    )
