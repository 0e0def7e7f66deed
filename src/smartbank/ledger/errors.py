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


#: What each per-transfer result code means, for people reading an error response.
TRANSFER_MESSAGES: dict[str, str] = {
    LedgerErrorCode.ID_ALREADY_EXISTS_WITH_DIFFERENT_FIELDS: "this transfer id was used for a different transfer",
    LedgerErrorCode.ACCOUNTS_MUST_BE_DIFFERENT: "the debit and credit accounts must be different",
    LedgerErrorCode.DEBIT_ACCOUNT_NOT_FOUND: "the debit account does not exist",
    LedgerErrorCode.CREDIT_ACCOUNT_NOT_FOUND: "the credit account does not exist",
    LedgerErrorCode.CURRENCY_MISMATCH: "the transfer and both accounts must have one currency",
    LedgerErrorCode.DEBIT_ACCOUNT_FROZEN: "the debit account is frozen",
    LedgerErrorCode.CREDIT_ACCOUNT_FROZEN: "the credit account is frozen",
    LedgerErrorCode.DEBIT_ACCOUNT_CLOSED: "the debit account is closed",
    LedgerErrorCode.CREDIT_ACCOUNT_CLOSED: "the credit account is closed",
    LedgerErrorCode.EXCEEDS_CREDITS: "the debit account does not have enough funds",
    LedgerErrorCode.EXCEEDS_DEBITS: "the credit account would exceed its limit",
    LedgerErrorCode.OVERFLOWS_DEBITS: "the debit account's total debits would not fit in 63 bits",
    LedgerErrorCode.OVERFLOWS_CREDITS: "the credit account's total credits would not fit in 63 bits",
    LedgerErrorCode.PENDING_TRANSFER_NOT_FOUND: "no pending transfer has this id",
    LedgerErrorCode.PENDING_TRANSFER_NOT_PENDING: "the referenced transfer is not a pending transfer",
    LedgerErrorCode.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT: "the pending transfer has another debit account",
    LedgerErrorCode.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT: "the pending transfer has another credit account",
    LedgerErrorCode.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY: "the pending transfer has another currency",
    LedgerErrorCode.PENDING_TRANSFER_ALREADY_POSTED: "the pending transfer was already posted",
    LedgerErrorCode.PENDING_TRANSFER_ALREADY_VOIDED: "the pending transfer was already voided",
    LedgerErrorCode.PENDING_TRANSFER_EXPIRED: "the pending transfer has expired",
    LedgerErrorCode.PENDING_TRANSFER_NOT_EXPIRED: "the pending transfer has not expired yet",
    LedgerErrorCode.EXCEEDS_PENDING_TRANSFER_AMOUNT: "cannot post more than the pending amount",
    LedgerErrorCode.REVERSAL_ORIGINAL_NOT_FOUND: "the transfer to reverse does not exist",
    LedgerErrorCode.REVERSAL_ORIGINAL_NOT_POSTED: "only a posted transfer can be reversed, by a posted transfer",
    LedgerErrorCode.REVERSAL_ACCOUNTS_MISMATCH: "a reversal must swap the original's accounts, in its currency",
    LedgerErrorCode.REVERSAL_EXCEEDS_ORIGINAL: "the reversals would exceed the original amount",
    LedgerErrorCode.LINKED_EVENT_FAILED: "another transfer of its linked chain failed",
    LedgerErrorCode.LINKED_EVENT_CHAIN_OPEN: "the batch ended inside a linked chain",
}

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
