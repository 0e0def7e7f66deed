"""Ledger rules in plain Python: no database, no web framework.

The database function ``ledger.create_transfers`` is the executor of these rules; this module
validates requests before they reach it, fingerprints them for idempotency, and derives balances.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.money import MAX_AMOUNT_MINOR, currency_exponent
from smartbank.ledger.errors import LedgerErrorCode

MAX_BATCH: Final = 1000
MAX_METADATA_BYTES: Final = 2048
MAX_METADATA_KEYS: Final = 32
MAX_TIMEOUT_S: Final = 90 * 24 * 3600
MAX_CODE: Final = 65535
MAX_PAGE: Final = 500
#: The fields a new (posted or pending) transfer must name.
_NEW_TRANSFER_FIELDS: Final = ("debit_account_id", "credit_account_id", "amount_minor", "currency", "code")


class AccountKind(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def debit_normal(self) -> bool:
        """Assets and expenses grow with debits; the others grow with credits."""
        return self in (AccountKind.ASSET, AccountKind.EXPENSE)


class AccountStatus(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


#: Allowed status changes. A closed account stays closed.
STATUS_CHANGES: Final = {
    AccountStatus.OPEN: {AccountStatus.FROZEN, AccountStatus.CLOSED},
    AccountStatus.FROZEN: {AccountStatus.OPEN, AccountStatus.CLOSED},
    AccountStatus.CLOSED: set(),
}


class TransferType(StrEnum):
    POSTED = "posted"  # single-phase: moves money at once
    PENDING = "pending"  # reserves funds until posted, voided or expired
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"
    EXPIRE_PENDING = "expire_pending"  # written only by the expiry job

    @property
    def resolves_pending(self) -> bool:
        return self in (TransferType.POST_PENDING, TransferType.VOID_PENDING, TransferType.EXPIRE_PENDING)


class ResultStatus(StrEnum):
    CREATED = "created"
    EXISTS = "exists"  # same id and same fields: the original result, replayed
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    id: uuid.UUID
    currency: str
    kind: AccountKind
    code: int
    owner_ref: str | None = None
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    limit_minor: int = 0

    def validate(self) -> None:
        currency_exponent(self.currency)
        if not 1 <= self.code <= MAX_CODE:
            raise DomainError(LedgerErrorCode.INVALID_TRANSFER, f"code must be 1..{MAX_CODE}", field="code")
        if self.debits_must_not_exceed_credits and self.credits_must_not_exceed_debits:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "an account takes at most one balance-limit flag", field="flags"
            )
        if not 0 <= self.limit_minor <= MAX_AMOUNT_MINOR:
            raise DomainError(ErrorCode.AMOUNT_TOO_LARGE, "limit_minor out of range", field="limit_minor")
        if self.limit_minor and not (self.debits_must_not_exceed_credits or self.credits_must_not_exceed_debits):
            raise DomainError(ErrorCode.VALIDATION_ERROR, "limit_minor needs a balance-limit flag", field="limit_minor")


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One transfer as a client asks for it. ``id`` is the client's idempotency key."""

    id: uuid.UUID
    type: TransferType = TransferType.POSTED
    debit_account_id: uuid.UUID | None = None
    credit_account_id: uuid.UUID | None = None
    amount_minor: int | None = None
    currency: str | None = None
    code: int | None = None
    pending_id: uuid.UUID | None = None
    timeout_s: int | None = None
    reversal_of: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    linked: bool = False

    def validate(self) -> None:
        """Shape rules that need no database. Raises :class:`DomainError` (4xx)."""
        if self.type in (TransferType.POSTED, TransferType.PENDING):
            if (
                self.debit_account_id is None
                or self.credit_account_id is None
                or self.amount_minor is None
                or self.currency is None
                or self.code is None
            ):
                name = next(name for name in _NEW_TRANSFER_FIELDS if getattr(self, name) is None)
                raise DomainError(LedgerErrorCode.INVALID_TRANSFER, f"{name} is required", field=name)
            if self.pending_id is not None:
                raise DomainError(
                    LedgerErrorCode.INVALID_TRANSFER, "pending_id only applies to post or void", field="pending_id"
                )
            if self.debit_account_id == self.credit_account_id:
                raise DomainError(LedgerErrorCode.ACCOUNTS_MUST_BE_DIFFERENT, "debit and credit accounts must differ")
        else:
            if self.pending_id is None:
                raise DomainError(LedgerErrorCode.INVALID_TRANSFER, "pending_id is required", field="pending_id")
            if self.reversal_of is not None:
                raise DomainError(
                    LedgerErrorCode.INVALID_TRANSFER, "only a posted transfer can be a reversal", field="reversal_of"
                )
            if self.type is not TransferType.POST_PENDING and self.amount_minor is not None:
                raise DomainError(
                    LedgerErrorCode.INVALID_TRANSFER, "a void releases the whole hold", field="amount_minor"
                )
        if self.amount_minor is not None:
            check_amount(self.amount_minor)
        if self.currency is not None:
            currency_exponent(self.currency)
        if self.code is not None and not (type(self.code) is int and 1 <= self.code <= MAX_CODE):
            raise DomainError(LedgerErrorCode.INVALID_TRANSFER, f"code must be 1..{MAX_CODE}", field="code")
        if self.timeout_s is not None:
            if self.type is not TransferType.PENDING:
                raise DomainError(
                    LedgerErrorCode.INVALID_TRANSFER, "timeout_s only applies to pending", field="timeout_s"
                )
            if not 1 <= self.timeout_s <= MAX_TIMEOUT_S:
                raise DomainError(
                    LedgerErrorCode.INVALID_TRANSFER, f"timeout_s must be 1..{MAX_TIMEOUT_S}", field="timeout_s"
                )
        if self.metadata or type(self.metadata) is not dict:  # most transfers carry none
            check_metadata(self.metadata)

    def fingerprint(self) -> bytes:
        """A hash of every field that defines the request (not ``linked``): equal iff same request."""
        canonical = orjson.dumps(
            [
                self.type,  # a StrEnum: orjson writes its value
                self.debit_account_id,  # orjson writes a UUID as its canonical string
                self.credit_account_id,
                self.amount_minor,
                self.currency,
                self.code,
                self.pending_id,
                self.timeout_s,
                self.reversal_of,
                self.metadata,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(canonical).digest()


def check_amount(amount_minor: int) -> None:
    if type(amount_minor) is not int:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "amount_minor must be an integer", field="amount_minor")
    if amount_minor <= 0:
        raise DomainError(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor must be positive", field="amount_minor")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise DomainError(ErrorCode.AMOUNT_TOO_LARGE, "amount_minor must be below 2^63", field="amount_minor")


def check_metadata(metadata: dict[str, Any]) -> None:
    if not isinstance(metadata, dict):
        raise DomainError(LedgerErrorCode.INVALID_TRANSFER, "metadata must be an object", field="metadata")
    if not metadata:
        return  # most transfers carry none
    if len(metadata) > MAX_METADATA_KEYS:
        raise DomainError(
            LedgerErrorCode.METADATA_TOO_LARGE, f"metadata takes at most {MAX_METADATA_KEYS} keys", field="metadata"
        )
    try:
        size = len(orjson.dumps(metadata))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise DomainError(LedgerErrorCode.INVALID_TRANSFER, "metadata must be plain JSON", field="metadata") from exc
    if size > MAX_METADATA_BYTES:
        raise DomainError(
            LedgerErrorCode.METADATA_TOO_LARGE,
            f"metadata is {size} bytes; at most {MAX_METADATA_BYTES}",
            field="metadata",
        )
    if metadata and _holds_nul(metadata):
        # PostgreSQL's jsonb cannot store U+0000 in a key or a string.
        raise DomainError(
            LedgerErrorCode.INVALID_TRANSFER, "metadata must not contain the character U+0000", field="metadata"
        )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def validate_batch(requests: list[TransferRequest]) -> None:
    if not requests:
        raise DomainError(LedgerErrorCode.BATCH_EMPTY, "a batch needs at least one transfer")
    if len(requests) > MAX_BATCH:
        raise DomainError(
            LedgerErrorCode.BATCH_TOO_LARGE, f"a batch takes at most {MAX_BATCH} transfers", size=len(requests)
        )
    # Ids compared as integers: hashing a UUID object runs Python code, its integer does not. When
    # an id repeats, the first problem in batch order is reported, a repeat or an invalid transfer.
    unique = len({request.id.int for request in requests}) == len(requests)
    seen: set[int] = set()
    for index, request in enumerate(requests):
        if not unique:
            if request.id.int in seen:
                raise DomainError(
                    LedgerErrorCode.DUPLICATE_ID_IN_BATCH, "each transfer in a batch needs its own id", index=index
                )
            seen.add(request.id.int)
        try:
            request.validate()
        except DomainError as exc:
            exc.details.setdefault("index", index)
            raise
    if requests[-1].linked:
        raise DomainError(
            LedgerErrorCode.LINKED_EVENT_CHAIN_OPEN, "the last transfer of a batch cannot open a linked chain"
        )


@dataclass(frozen=True, slots=True)
class TransferResult:
    id: uuid.UUID
    status: ResultStatus
    code: str | None = None  # the error code when status is FAILED
    created_at: datetime | None = None
    amount_minor: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is not ResultStatus.FAILED


def result_from_db(
    request_id: uuid.UUID, result: str, created_at: datetime | None, amount: int | None
) -> TransferResult:
    if result == "created":
        return TransferResult(request_id, ResultStatus.CREATED, None, created_at, amount)
    if result == "exists":
        return TransferResult(request_id, ResultStatus.EXISTS, None, created_at, amount)
    return TransferResult(request_id, ResultStatus.FAILED, LedgerErrorCode(result).value)


@dataclass(frozen=True, slots=True)
class Balances:
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    def posted(self, kind: AccountKind) -> int:
        """The balance on the account's normal side, counting posted transfers only."""
        if kind.debit_normal:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    def pending(self, kind: AccountKind) -> int:
        """Holds that will reduce the balance when posted (incoming holds are not yet money)."""
        return self.credits_pending if kind.debit_normal else self.debits_pending

    def available(self, kind: AccountKind) -> int:
        return self.posted(kind) - self.pending(kind)


def allowed_status_change(current: AccountStatus, new: AccountStatus) -> bool:
    return new in STATUS_CHANGES[current]


class PendingStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


RESOLUTION_STATUS: Final = {
    TransferType.POST_PENDING: PendingStatus.POSTED,
    TransferType.VOID_PENDING: PendingStatus.VOIDED,
    TransferType.EXPIRE_PENDING: PendingStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Account:
    id: uuid.UUID
    currency: str
    kind: AccountKind
    code: int
    owner_ref: str | None
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    limit_minor: int
    status: AccountStatus
    balances: Balances
    created_at: datetime

    def same_spec(self, spec: AccountSpec) -> bool:
        return (
            self.currency == spec.currency
            and self.kind == spec.kind
            and self.code == spec.code
            and self.owner_ref == spec.owner_ref
            and self.debits_must_not_exceed_credits == spec.debits_must_not_exceed_credits
            and self.credits_must_not_exceed_debits == spec.credits_must_not_exceed_debits
            and self.limit_minor == spec.limit_minor
        )


@dataclass(frozen=True, slots=True)
class Transfer:
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
    #: For a pending transfer: whether its hold is still open, or how it was resolved.
    pending_status: PendingStatus | None = None
