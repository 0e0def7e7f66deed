"""Request and response models of the ledger HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from smartbank.ledger.model import (
    MAX_BATCH,
    MAX_CODE,
    MAX_TIMEOUT_S,
    Account,
    AccountKind,
    AccountStatus,
    PendingStatus,
    Transfer,
    TransferResult,
    TransferType,
)

AmountMinor = Annotated[StrictInt, Field(gt=0, le=2**63 - 1, description="Amount in minor units (fen for CNY).")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["CNY"])]
Code = Annotated[StrictInt, Field(ge=1, le=MAX_CODE, description="Why the money moves (a chart of codes).")]
Metadata = Annotated[dict[str, Any], Field(default_factory=dict, description="At most 32 keys and 2 KiB.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(Strict):
    id: uuid.UUID = Field(description="Client-chosen id; creating it again with the same fields is a no-op.")
    currency: Currency
    kind: AccountKind
    code: Code
    owner_ref: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    debits_must_not_exceed_credits: StrictBool = False
    credits_must_not_exceed_debits: StrictBool = False
    limit_minor: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] = 0

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "0193a1f0-7c2e-7000-8000-000000000001",
                    "currency": "CNY",
                    "kind": "liability",
                    "code": 100,
                    "owner_ref": "customer:42",
                    "debits_must_not_exceed_credits": True,
                }
            ]
        },
    )


class BalancesOut(BaseModel):
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    posted_minor: int = Field(description="Balance on the account's normal side, posted transfers only.")
    pending_minor: int = Field(description="Outgoing holds not yet posted or voided.")
    available_minor: int = Field(description="Posted balance less outgoing holds.")


class AccountOut(BaseModel):
    id: uuid.UUID
    currency: str
    kind: AccountKind
    code: int
    owner_ref: str | None
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    limit_minor: int
    status: AccountStatus
    balances: BalancesOut
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        b = account.balances
        return cls(
            id=account.id,
            currency=account.currency.strip(),
            kind=account.kind,
            code=account.code,
            owner_ref=account.owner_ref,
            debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
            limit_minor=account.limit_minor,
            status=account.status,
            balances=BalancesOut(
                debits_pending=b.debits_pending,
                debits_posted=b.debits_posted,
                credits_pending=b.credits_pending,
                credits_posted=b.credits_posted,
                posted_minor=b.posted(account.kind),
                pending_minor=b.pending(account.kind),
                available_minor=b.available(account.kind),
            ),
            created_at=account.created_at,
        )


class AccountStatusIn(Strict):
    status: AccountStatus

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "frozen"}]})


class TransferIn(Strict):
    id: uuid.UUID = Field(description="Client-chosen id and idempotency key.")
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: AmountMinor
    currency: Currency
    code: Code
    pending: StrictBool = Field(False, description="Reserve the funds now; post or void later.")
    timeout_s: Annotated[StrictInt, Field(ge=1, le=MAX_TIMEOUT_S)] | None = Field(
        None, description="A pending transfer not posted within this many seconds is voided."
    )
    reversal_of: uuid.UUID | None = Field(None, description="The posted transfer this one reverses.")
    metadata: Metadata

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "0193a1f0-7c2e-7000-8000-0000000000aa",
                    "debit_account_id": "0193a1f0-7c2e-7000-8000-000000000001",
                    "credit_account_id": "0193a1f0-7c2e-7000-8000-000000000002",
                    "amount_minor": 12550,
                    "currency": "CNY",
                    "code": 1001,
                    "metadata": {"reference": "invoice 2026-118"},
                }
            ]
        },
    )


class PostPendingIn(Strict):
    id: uuid.UUID = Field(description="Id of the posting transfer (idempotency key).")
    amount_minor: AmountMinor | None = Field(None, description="Post less than the hold; omitted posts it all.")
    metadata: Metadata

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"id": "0193a1f0-7c2e-7000-8000-0000000000ab", "amount_minor": 9900, "metadata": {}}]
        },
    )


class VoidPendingIn(Strict):
    id: uuid.UUID = Field(description="Id of the voiding transfer (idempotency key).")
    metadata: Metadata

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"id": "0193a1f0-7c2e-7000-8000-0000000000ac", "metadata": {"reason": "order cancelled"}}]
        },
    )


class BatchIn(Strict):
    transfers: Annotated[list[TransferIn], Field(min_length=1, max_length=MAX_BATCH)]
    atomic: StrictBool = Field(True, description="All transfers succeed or none does.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "atomic": True,
                    "transfers": [
                        {
                            "id": "0193a1f0-7c2e-7000-8000-0000000000b1",
                            "debit_account_id": "0193a1f0-7c2e-7000-8000-000000000001",
                            "credit_account_id": "0193a1f0-7c2e-7000-8000-000000000002",
                            "amount_minor": 10000,
                            "currency": "CNY",
                            "code": 1001,
                        },
                        {
                            "id": "0193a1f0-7c2e-7000-8000-0000000000b2",
                            "debit_account_id": "0193a1f0-7c2e-7000-8000-000000000002",
                            "credit_account_id": "0193a1f0-7c2e-7000-8000-000000000003",
                            "amount_minor": 250,
                            "currency": "CNY",
                            "code": 2001,
                        },
                    ],
                }
            ]
        },
    )


class TransferOut(BaseModel):
    seq: int
    id: uuid.UUID
    type: TransferType
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int
    currency: str
    code: int
    pending_id: uuid.UUID | None
    timeout_s: int | None
    expires_at: datetime | None
    reversal_of: uuid.UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    pending_status: PendingStatus | None

    @classmethod
    def of(cls, t: Transfer) -> TransferOut:
        return cls(
            seq=t.seq,
            id=t.id,
            type=t.type,
            debit_account_id=t.debit_account_id,
            credit_account_id=t.credit_account_id,
            amount_minor=t.amount_minor,
            currency=t.currency,
            code=t.code,
            pending_id=t.pending_id,
            timeout_s=t.timeout_s,
            expires_at=t.expires_at,
            reversal_of=t.reversal_of,
            metadata=t.metadata,
            created_at=t.created_at,
            pending_status=t.pending_status,
        )


class TransferResultOut(BaseModel):
    index: int
    id: uuid.UUID
    status: Literal["created", "exists", "failed"]
    code: str | None = Field(None, description="Why this transfer failed.")
    created_at: datetime | None = None
    amount_minor: int | None = None

    @classmethod
    def of(cls, index: int, r: TransferResult) -> TransferResultOut:
        return cls(
            index=index,
            id=r.id,
            status=r.status.value,
            code=r.code,
            created_at=r.created_at,
            amount_minor=r.amount_minor,
        )


class BatchOut(BaseModel):
    results: list[TransferResultOut]
    created: int
    failed: int


class TransferPageOut(BaseModel):
    items: list[TransferOut]
    next_cursor: str | None


class VerifyOut(BaseModel):
    ok: bool
    problems: list[str]
