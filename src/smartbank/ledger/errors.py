"""Ledger error codes. Values are part of the public API: never rename one."""

from __future__ import annotations

from enum import StrEnum

from smartbank.kernel.errors import register_statuses


class LedgerErrorCode(StrEnum):
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_EXISTS_WITH_DIFFERENT_FIELDS = "account_exists_with_different_fields"
    TRANSFER_NOT_FOUND = "transfer_not_found"
    BATCH_TOO_LARGE = "batch_too_large"
    BATCH_EMPTY = "batch_empty"
    DUPLICATE_ID_IN_BATCH = "duplicate_id_in_batch"
    METADATA_TOO_LARGE = "metadata_too_large"
    INVALID_TRANSFER = "invalid_transfer"
    INVALID_ACCOUNT_STATUS_CHANGE = "invalid_account_status_change"
    INVALID_CURSOR = "invalid_cursor"
    # Per-transfer results of the transfer function (see ledger.create_transfers).
    ID_ALREADY_EXISTS_WITH_DIFFERENT_FIELDS = "id_already_exists_with_different_fields"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    DEBIT_ACCOUNT_FROZEN = "debit_account_frozen"
    CREDIT_ACCOUNT_FROZEN = "credit_account_frozen"
    DEBIT_ACCOUNT_CLOSED = "debit_account_closed"
    CREDIT_ACCOUNT_CLOSED = "credit_account_closed"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT = "pending_transfer_has_different_debit_account"
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT = "pending_transfer_has_different_credit_account"
    PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY = "pending_transfer_has_different_currency"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    PENDING_TRANSFER_NOT_EXPIRED = "pending_transfer_not_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    REVERSAL_ORIGINAL_NOT_FOUND = "reversal_original_not_found"
    REVERSAL_ORIGINAL_NOT_POSTED = "reversal_original_not_posted"
    REVERSAL_ACCOUNTS_MISMATCH = "reversal_accounts_mismatch"
    REVERSAL_EXCEEDS_ORIGINAL = "reversal_exceeds_original"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"


_NOT_FOUND = {
    LedgerErrorCode.ACCOUNT_NOT_FOUND,
    LedgerErrorCode.TRANSFER_NOT_FOUND,
    LedgerErrorCode.DEBIT_ACCOUNT_NOT_FOUND,
    LedgerErrorCode.CREDIT_ACCOUNT_NOT_FOUND,
    LedgerErrorCode.PENDING_TRANSFER_NOT_FOUND,
    LedgerErrorCode.REVERSAL_ORIGINAL_NOT_FOUND,
}
_CONFLICT = {
    LedgerErrorCode.ACCOUNT_EXISTS_WITH_DIFFERENT_FIELDS,
    LedgerErrorCode.ID_ALREADY_EXISTS_WITH_DIFFERENT_FIELDS,
    LedgerErrorCode.DEBIT_ACCOUNT_FROZEN,
    LedgerErrorCode.CREDIT_ACCOUNT_FROZEN,
    LedgerErrorCode.DEBIT_ACCOUNT_CLOSED,
    LedgerErrorCode.CREDIT_ACCOUNT_CLOSED,
    LedgerErrorCode.EXCEEDS_CREDITS,
    LedgerErrorCode.EXCEEDS_DEBITS,
    LedgerErrorCode.PENDING_TRANSFER_ALREADY_POSTED,
    LedgerErrorCode.PENDING_TRANSFER_ALREADY_VOIDED,
    LedgerErrorCode.PENDING_TRANSFER_EXPIRED,
    LedgerErrorCode.PENDING_TRANSFER_NOT_EXPIRED,
    LedgerErrorCode.REVERSAL_EXCEEDS_ORIGINAL,
    LedgerErrorCode.LINKED_EVENT_FAILED,
    LedgerErrorCode.INVALID_ACCOUNT_STATUS_CHANGE,
}

register_statuses({code: 404 if code in _NOT_FOUND else 409 if code in _CONFLICT else 422 for code in LedgerErrorCode})
