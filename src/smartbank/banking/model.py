"""Banking rules in plain Python: no database, no web framework.

Account numbers and their check digits, IBAN forms, payment requests and their fingerprints,
limits and step-up, the mapping of ledger results to banking codes, and statement arithmetic.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, Literal
from zoneinfo import ZoneInfo

import orjson
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from smartbank.banking.errors import BankingErrorCode
from smartbank.customers.model import KycStatus as KycStatus  # the customers domain's vocabulary
from smartbank.customers.model import PaymentProfile as PaymentProfile
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.money import MAX_AMOUNT_MINOR, Money, currency_exponent

#: Account number: 4-digit branch, 10-digit serial, 2 check digits (ISO 7064 MOD 97-10).
BRANCH_DIGITS: Final = 4
SERIAL_DIGITS: Final = 10
ACCOUNT_NUMBER_LENGTH: Final = BRANCH_DIGITS + SERIAL_DIGITS + 2
_BRANCH_RE: Final = re.compile(r"^[0-9]{4}$")

MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 20
MAX_PAYEES: Final = 200
MAX_PAYEE_NAME: Final = 140
MAX_REFERENCE: Final = 140
MAX_IDEMPOTENCY_KEY: Final = 100
MAX_TEXT_QUERY: Final = 100
MAX_STATEMENT_DAYS: Final = 366
MAX_STATEMENT_LINES: Final = 5000
#: A payee added less than this long ago makes a payment to it need a step-up.
NEW_PAYEE_PERIOD: Final = timedelta(hours=24)

#: Ledger chart-of-accounts codes used by banking.
LEDGER_CODE_CURRENT: Final = 2001
LEDGER_CODE_SAVINGS: Final = 2002
#: Transfer codes (the ledger's ``code`` of a transfer says what moved the money).
TRANSFER_CODE_PAYMENT: Final = 100
TRANSFER_CODE_CASH_DEPOSIT: Final = 110
TRANSFER_CODE_CASH_WITHDRAWAL: Final = 111

#: The bank's own ledger accounts, created by migration 0006 with these fixed ids (CNY).
BANK_SETTLEMENT_ACCOUNT_ID: Final = uuid.UUID("00000000-0000-4000-8000-000000001001")
BANK_FEES_INCOME_ACCOUNT_ID: Final = uuid.UUID("00000000-0000-4000-8000-000000004001")
BANK_INTEREST_EXPENSE_ACCOUNT_ID: Final = uuid.UUID("00000000-0000-4000-8000-000000005001")
#: Branch code → the ledger account of that branch's cash (tellers post against it).
BRANCH_CASH_ACCOUNT_IDS: Final = {
    "0001": uuid.UUID("00000000-0000-4000-8001-000000000001"),
    "0002": uuid.UUID("00000000-0000-4000-8001-000000000002"),
    "0003": uuid.UUID("00000000-0000-4000-8001-000000000003"),
}

#: Namespace of the deterministic ids banking derives (the account opened on KYC, and so on).
BANKING_NAMESPACE: Final = uuid.UUID("6f1c1f5e-8a4e-4f57-9a53-3f0b8d9f2b10")


class Product(StrEnum):
    CURRENT = "current"
    SAVINGS = "savings"

    @property
    def ledger_code(self) -> int:
        return LEDGER_CODE_CURRENT if self is Product.CURRENT else LEDGER_CODE_SAVINGS


class AccountState(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


class PaymentKind(StrEnum):
    TRANSFER = "transfer"
    CASH_DEPOSIT = "cash_deposit"
    CASH_WITHDRAWAL = "cash_withdrawal"


class PaymentStatus(StrEnum):
    SUBMITTED = "submitted"  # written, transfer sent (or about to be) to the ledger
    COMPLETED = "completed"
    FAILED = "failed"


class RiskOutcome(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"  # allowed now, flagged for an analyst
    DENY = "deny"


# -- account numbers -----------------------------------------------------------------------------


def mod97_check_digits(digits: str) -> str:
    """ISO 7064 MOD 97-10 check digits for a string of digits (as in IBAN): two digits."""
    return f"{98 - int(digits + '00') % 97:02d}"


def make_account_number(branch_code: str, serial: int) -> str:
    if not _BRANCH_RE.match(branch_code):
        raise DomainError(BankingErrorCode.BRANCH_NOT_FOUND, "a branch code is four digits", branch=branch_code)
    if not 1 <= serial < 10**SERIAL_DIGITS:
        raise ValueError("account serial out of range")
    base = f"{branch_code}{serial:0{SERIAL_DIGITS}d}"
    return base + mod97_check_digits(base)


def is_valid_account_number(text: str) -> bool:
    return (
        isinstance(text, str)
        and len(text) == ACCOUNT_NUMBER_LENGTH
        and text.isascii()
        and text.isdigit()
        and int(text) % 97 == 1
    )


def check_account_number(text: str) -> str:
    """The account number without spaces, or ``invalid_account_number`` (length, digits, check digits)."""
    cleaned = text.replace(" ", "") if isinstance(text, str) else ""
    if not is_valid_account_number(cleaned):
        raise DomainError(
            BankingErrorCode.INVALID_ACCOUNT_NUMBER,
            f"an account number is {ACCOUNT_NUMBER_LENGTH} digits with valid check digits",
            field="account_number",
        )
    return cleaned


def format_account_number(number: str) -> str:
    """Groups of four digits, for people."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def iban_for(number: str, country: str, bank_code: str) -> str:
    """The IBAN form of an account number in a country whose BBAN holds it (e.g. PL: 8 + 16 digits)."""
    try:
        return str(IBAN.generate(country, bank_code=bank_code, account_code=number).compact)
    except SchwiftyException as exc:
        raise DomainError(BankingErrorCode.INVALID_IBAN, f"cannot form an IBAN: {exc}", field="iban") from exc


def account_number_from_iban(text: str, country: str, bank_code: str) -> str:
    """The account number inside one of this bank's IBANs, or ``invalid_iban``."""
    try:
        iban = IBAN(text)
    except SchwiftyException as exc:
        raise DomainError(BankingErrorCode.INVALID_IBAN, "not a valid IBAN", field="iban") from exc
    if iban.country_code != country or iban.bank_code != bank_code:
        raise DomainError(BankingErrorCode.INVALID_IBAN, "not an IBAN of this bank", field="iban")
    return check_account_number(str(iban.account_code)[-ACCOUNT_NUMBER_LENGTH:])


# -- the customers domain's view, and risk ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskDecision:
    decision: RiskOutcome
    reason: str
    version: str


@dataclass(frozen=True, slots=True)
class PaymentAssessment:
    """What the risk gate is told about a payment before it is written."""

    payment_id: uuid.UUID
    kind: PaymentKind
    customer_id: uuid.UUID
    initiated_by: uuid.UUID
    account_id: uuid.UUID
    counterparty_account_id: uuid.UUID | None
    amount_minor: int
    currency: str
    new_payee: bool
    at: datetime


# -- requests ------------------------------------------------------------------------------------


def check_amount(amount_minor: int, currency: str) -> None:
    if type(amount_minor) is not int:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "amount_minor must be an integer", field="amount_minor")
    if amount_minor <= 0:
        raise DomainError(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor must be positive", field="amount_minor")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise DomainError(ErrorCode.AMOUNT_TOO_LARGE, "amount_minor must be below 2^63", field="amount_minor")
    currency_exponent(currency)


def check_reference(reference: str) -> str:
    if not isinstance(reference, str) or len(reference) > MAX_REFERENCE or not reference.isprintable():
        raise DomainError(
            BankingErrorCode.INVALID_PAYMENT,
            f"a reference is at most {MAX_REFERENCE} printable characters",
            field="reference",
        )
    return reference.strip()


def check_idempotency_key(key: str) -> str:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or not key.isascii()
        or not key.isprintable()
    ):
        raise DomainError(
            BankingErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"an idempotency key is 1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            field="idempotency_key",
        )
    return key


def _fingerprint(parts: list[object]) -> bytes:
    return hashlib.sha256(orjson.dumps(parts)).digest()


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A customer's payment from one of their accounts to a payee or to another of their accounts."""

    from_account_id: uuid.UUID
    amount_minor: int
    currency: str
    to_payee_id: uuid.UUID | None = None
    to_account_id: uuid.UUID | None = None
    reference: str = ""

    def validate(self) -> None:
        if (self.to_payee_id is None) == (self.to_account_id is None):
            raise DomainError(
                BankingErrorCode.INVALID_PAYMENT, "name exactly one of to_payee_id and to_account_id", field="to"
            )
        if self.to_account_id is not None and self.to_account_id == self.from_account_id:
            raise DomainError(BankingErrorCode.ACCOUNTS_MUST_BE_DIFFERENT, "pay to another account")
        check_amount(self.amount_minor, self.currency)
        check_reference(self.reference)

    def fingerprint(self) -> bytes:
        return _fingerprint(
            [
                "transfer",
                str(self.from_account_id),
                str(self.to_payee_id) if self.to_payee_id else None,
                str(self.to_account_id) if self.to_account_id else None,
                self.amount_minor,
                self.currency,
                self.reference.strip(),
            ]
        )


@dataclass(frozen=True, slots=True)
class CashRequest:
    """A teller's cash deposit into, or withdrawal from, a customer's account at a branch."""

    kind: PaymentKind
    account_id: uuid.UUID
    branch_code: str
    amount_minor: int
    currency: str
    reference: str = ""

    def validate(self) -> None:
        if self.kind not in (PaymentKind.CASH_DEPOSIT, PaymentKind.CASH_WITHDRAWAL):
            raise DomainError(BankingErrorCode.INVALID_PAYMENT, "a cash operation is a deposit or a withdrawal")
        if not _BRANCH_RE.match(self.branch_code):
            raise DomainError(BankingErrorCode.BRANCH_NOT_FOUND, "no such branch", branch=self.branch_code)
        check_amount(self.amount_minor, self.currency)
        check_reference(self.reference)

    def fingerprint(self) -> bytes:
        return _fingerprint(
            [
                self.kind.value,
                str(self.account_id),
                self.branch_code,
                self.amount_minor,
                self.currency,
                self.reference.strip(),
            ]
        )


# -- rules ---------------------------------------------------------------------------------------


def check_can_pay(profile: PaymentProfile, amount_minor: int, currency: str) -> None:
    """KYC, currency and the per-payment limit of the customer's tier."""
    if profile.kyc_status != KycStatus.VERIFIED:
        raise DomainError(
            BankingErrorCode.KYC_NOT_VERIFIED, "payments need a verified identity", kyc_status=profile.kyc_status
        )
    if currency != profile.currency:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"payment limits are in {profile.currency}; this payment is in {currency}",
            left=currency,
            right=profile.currency,
        )
    if amount_minor > profile.per_payment_limit_minor:
        raise DomainError(
            BankingErrorCode.PER_PAYMENT_LIMIT_EXCEEDED,
            "the amount is above the per-payment limit of the customer's tier",
            limit_minor=profile.per_payment_limit_minor,
            tier=profile.tier,
        )


def check_daily_limit(used_minor: int, amount_minor: int, limit_minor: int, tier: str) -> None:
    if used_minor + amount_minor > limit_minor:
        raise DomainError(
            BankingErrorCode.DAILY_LIMIT_EXCEEDED,
            "the payment would take the day's payments above the daily limit of the customer's tier",
            limit_minor=limit_minor,
            used_minor=used_minor,
            tier=tier,
        )


def step_up_reason(
    amount_minor: int, threshold_minor: int, payee_created_at: datetime | None, now: datetime
) -> str | None:
    """Why this payment needs a fresh MFA, or None when it does not."""
    if amount_minor > threshold_minor:
        return "amount_above_threshold"
    if payee_created_at is not None and now - payee_created_at < NEW_PAYEE_PERIOD:
        return "new_payee"
    return None


def local_day(moment: datetime, timezone: str) -> date:
    """The calendar day of ``moment`` in the bank's time zone (daily limits follow it)."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def day_bounds(first: date, last: date, timezone: str) -> tuple[datetime, datetime]:
    """[start of ``first``, start of the day after ``last``) in the bank's time zone, as aware datetimes."""
    zone = ZoneInfo(timezone)
    return datetime.combine(first, time(), zone), datetime.combine(last + timedelta(days=1), time(), zone)


#: Ledger result codes that banking reports under its own name.
_LEDGER_CODES: Final = {
    "exceeds_credits": BankingErrorCode.INSUFFICIENT_FUNDS,
    "debit_account_frozen": BankingErrorCode.ACCOUNT_FROZEN,
    "credit_account_frozen": BankingErrorCode.ACCOUNT_FROZEN,
    "debit_account_closed": BankingErrorCode.ACCOUNT_CLOSED,
    "credit_account_closed": BankingErrorCode.ACCOUNT_CLOSED,
}


def banking_code_for_ledger(code: str) -> str:
    return _LEDGER_CODES.get(code, code)


# -- history and statements ----------------------------------------------------------------------


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("e"):
            raise ValueError(raw)
        seq = int(raw[1:])
        if not 0 < seq < 2**63:
            raise ValueError(raw)
        return seq
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainError(BankingErrorCode.INVALID_CURSOR, "cursor is not one this API gave out") from exc


def check_page_size(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"limit must be 1..{MAX_PAGE}", field="limit")


def check_statement_period(first: date, last: date) -> None:
    if last < first:
        raise DomainError(BankingErrorCode.INVALID_DATE_RANGE, "the period ends before it starts")
    if (last - first).days + 1 > MAX_STATEMENT_DAYS:
        raise DomainError(BankingErrorCode.INVALID_DATE_RANGE, f"a statement covers at most {MAX_STATEMENT_DAYS} days")


def format_minor(amount_minor: int, currency: str) -> str:
    """A minor-unit amount as a decimal string with the currency's exponent (never through float)."""
    return Money(amount_minor, currency).format()


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an account's history: a posted ledger transfer seen from this account."""

    seq: int
    account_id: uuid.UUID
    transfer_id: uuid.UUID
    amount_minor: int  # signed: positive money in, negative money out
    currency: str
    posted_at: datetime
    counterparty_number: str | None
    counterparty_name: str | None
    description: str
    payment_id: uuid.UUID | None
    kind: str | None


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry: Entry
    balance_minor: int


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: uuid.UUID
    account_number: str
    currency: str
    first_day: date
    last_day: date
    opening_minor: int
    lines: list[StatementLine]
    closing_minor: int
    generated_at: datetime


def build_statement(
    *,
    account_id: uuid.UUID,
    account_number: str,
    currency: str,
    first_day: date,
    last_day: date,
    opening_minor: int,
    entries: Sequence[Entry],
    generated_at: datetime,
) -> Statement:
    """Each entry in order with the balance after it; the closing balance is the last running one."""
    balance = opening_minor
    lines: list[StatementLine] = []
    for entry in entries:
        balance += entry.amount_minor
        lines.append(StatementLine(entry, balance))
    return Statement(
        account_id, account_number, currency, first_day, last_day, opening_minor, lines, balance, generated_at
    )


# -- views ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepositAccount:
    id: uuid.UUID  # also the id of the ledger account behind it
    customer_id: uuid.UUID
    number: str
    iban: str | None
    product: Product
    currency: str
    status: AccountState
    branch_code: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account: DepositAccount
    posted_minor: int
    available_minor: int


@dataclass(frozen=True, slots=True)
class Branch:
    code: str
    name: str
    currency: str
    cash_account_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Payee:
    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    account_number: str
    account_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    kind: PaymentKind
    customer_id: uuid.UUID
    initiated_by: uuid.UUID
    account_id: uuid.UUID
    counterparty_account_id: uuid.UUID | None
    payee_id: uuid.UUID | None
    branch_code: str | None
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int
    currency: str
    reference: str
    transfer_id: uuid.UUID
    status: PaymentStatus
    failure_code: str | None
    usage_day: date | None
    step_up: bool
    risk_decision: RiskOutcome
    risk_reason: str
    risk_version: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class CustomerPayment:
    """A payment as one customer sees it: money out of or into one of their accounts."""

    payment: Payment
    #: ``in`` (a cash deposit, or another customer's transfer to them) or ``out``.
    direction: str
    #: The other side's account number (a transfer), or None (cash at a branch).
    counterparty_number: str | None

    @property
    def signed_amount_minor(self) -> int:
        return self.payment.amount_minor if self.direction == "in" else -self.payment.amount_minor


def payment_direction(payment: Payment, customer_id: uuid.UUID) -> str:
    """Whether ``payment`` brings money to ``customer_id`` (``in``) or takes it away (``out``)."""
    if payment.customer_id != customer_id:
        return "in"  # another customer's transfer to one of theirs
    return "in" if payment.kind is PaymentKind.CASH_DEPOSIT else "out"


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Filters of an account's history; every one optional. Times are [since, until)."""

    since: datetime | None = None
    until: datetime | None = None
    min_amount_minor: int | None = None  # on the absolute amount
    max_amount_minor: int | None = None
    counterparty: str | None = None  # an account number (exact) or part of a name
    text: str | None = None  # part of the payment reference
    direction: Literal["in", "out"] | None = None  # money in (credits) or money out (debits)

    def validate(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise DomainError(ErrorCode.VALIDATION_ERROR, "times need a time zone", field="since")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise DomainError(BankingErrorCode.INVALID_DATE_RANGE, "until must be after since")
        for name in ("min_amount_minor", "max_amount_minor"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 <= value <= MAX_AMOUNT_MINOR):
                raise DomainError(ErrorCode.VALIDATION_ERROR, f"{name} must be 0..2^63-1", field=name)
        if (
            self.min_amount_minor is not None
            and self.max_amount_minor is not None
            and self.min_amount_minor > self.max_amount_minor
        ):
            raise DomainError(ErrorCode.VALIDATION_ERROR, "min_amount_minor is above max_amount_minor")
        for name in ("counterparty", "text"):
            value = getattr(self, name)
            if value is not None and not 1 <= len(value) <= MAX_TEXT_QUERY:
                raise DomainError(ErrorCode.VALIDATION_ERROR, f"{name} is 1..{MAX_TEXT_QUERY} characters", field=name)
        if self.direction not in (None, "in", "out"):
            raise DomainError(ErrorCode.VALIDATION_ERROR, "direction is in or out", field="direction")


@dataclass(frozen=True, slots=True)
class EntryPage:
    items: list[Entry]
    next_cursor: str | None
    #: Asks for the entries newer than this page (None on the newest page).
    prev_cursor: str | None = None
