"""Banking error codes. Values are part of the public API: never rename one."""

from __future__ import annotations

from enum import StrEnum

from smartbank.kernel.errors import http_status_for, register_statuses


class BankingErrorCode(StrEnum):
    INVALID_ACCOUNT_NUMBER = "invalid_account_number"
    INVALID_IBAN = "invalid_iban"
    UNKNOWN_ACCOUNT_NUMBER = "unknown_account_number"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_CLOSED = "account_closed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    KYC_NOT_VERIFIED = "kyc_not_verified"
    PER_PAYMENT_LIMIT_EXCEEDED = "per_payment_limit_exceeded"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    STEP_UP_REQUIRED = "step_up_required"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    PAYEE_ALREADY_EXISTS = "payee_already_exists"
    TOO_MANY_PAYEES = "too_many_payees"
    RISK_DECLINED = "risk_declined"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    INVALID_PAYMENT = "invalid_payment"
    BRANCH_NOT_FOUND = "branch_not_found"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_DATE_RANGE = "invalid_date_range"
    STATEMENT_TOO_LARGE = "statement_too_large"
    PAYMENT_FAILED = "payment_failed"


_STATUSES: dict[str, int] = {
    BankingErrorCode.INVALID_ACCOUNT_NUMBER: 422,
    BankingErrorCode.INVALID_IBAN: 422,
    BankingErrorCode.UNKNOWN_ACCOUNT_NUMBER: 422,
    BankingErrorCode.ACCOUNT_FROZEN: 409,
    BankingErrorCode.ACCOUNT_CLOSED: 409,
    BankingErrorCode.INSUFFICIENT_FUNDS: 409,
    BankingErrorCode.KYC_NOT_VERIFIED: 403,
    BankingErrorCode.PER_PAYMENT_LIMIT_EXCEEDED: 422,
    BankingErrorCode.DAILY_LIMIT_EXCEEDED: 409,
    BankingErrorCode.IDEMPOTENCY_KEY_REUSED: 409,
    BankingErrorCode.INVALID_IDEMPOTENCY_KEY: 422,
    BankingErrorCode.PAYEE_ALREADY_EXISTS: 409,
    BankingErrorCode.TOO_MANY_PAYEES: 409,
    BankingErrorCode.RISK_DECLINED: 403,
    BankingErrorCode.ACCOUNTS_MUST_BE_DIFFERENT: 422,
    BankingErrorCode.INVALID_PAYMENT: 422,
    BankingErrorCode.BRANCH_NOT_FOUND: 404,
    BankingErrorCode.INVALID_CURSOR: 422,
    BankingErrorCode.INVALID_DATE_RANGE: 422,
    BankingErrorCode.STATEMENT_TOO_LARGE: 422,
    BankingErrorCode.PAYMENT_FAILED: 409,
}

register_statuses(_STATUSES)
# The identity domain may register the step-up code too (exactly this string, 403): register it only
# when no module has (an unregistered code reads as the default 400).
if http_status_for(BankingErrorCode.STEP_UP_REQUIRED) == 400:
    register_statuses({BankingErrorCode.STEP_UP_REQUIRED: 403})
