"""Customer error codes. Values are part of the public API: never rename one."""

from __future__ import annotations

from enum import StrEnum

from smartbank.kernel.errors import register_statuses


class CustomerErrorCode(StrEnum):
    CUSTOMER_NOT_FOUND = "customer_not_found"
    # Contact details
    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    # Verification codes
    VERIFICATION_NOT_FOUND = "verification_not_found"
    VERIFICATION_EXPIRED = "verification_expired"
    VERIFICATION_CODE_INVALID = "verification_code_invalid"
    VERIFICATION_ATTEMPTS_EXHAUSTED = "verification_attempts_exhausted"
    VERIFICATION_ALREADY_USED = "verification_already_used"
    VERIFICATION_RATE_LIMITED = "verification_rate_limited"
    # Registration
    TERMS_NOT_ACCEPTED = "terms_not_accepted"
    #: The phone or e-mail already belongs to a customer (the identity domain raises the same code
    #: when the login exists there).
    LOGIN_TAKEN = "login_taken"
    # KYC profile
    INVALID_NAME = "invalid_name"
    INVALID_BIRTH_DATE = "invalid_birth_date"
    CUSTOMER_UNDERAGE = "customer_underage"
    INVALID_ID_NUMBER = "invalid_id_number"
    ID_BIRTH_DATE_MISMATCH = "id_birth_date_mismatch"
    ID_NUMBER_IN_USE = "id_number_in_use"
    INVALID_ADDRESS = "invalid_address"
    # KYC decisions and tiers
    INVALID_KYC_TRANSITION = "invalid_kyc_transition"
    KYC_PROFILE_MISSING = "kyc_profile_missing"
    REASON_REQUIRED = "reason_required"
    UNKNOWN_TIER = "unknown_tier"
    # Lists
    INVALID_CURSOR = "invalid_cursor"
    INVALID_SEARCH = "invalid_search"


_STATUS: dict[CustomerErrorCode, int] = {
    CustomerErrorCode.CUSTOMER_NOT_FOUND: 404,
    CustomerErrorCode.VERIFICATION_NOT_FOUND: 404,
    CustomerErrorCode.VERIFICATION_EXPIRED: 410,
    CustomerErrorCode.VERIFICATION_ATTEMPTS_EXHAUSTED: 429,
    CustomerErrorCode.VERIFICATION_ALREADY_USED: 409,
    CustomerErrorCode.VERIFICATION_RATE_LIMITED: 429,
    CustomerErrorCode.LOGIN_TAKEN: 409,
    CustomerErrorCode.ID_NUMBER_IN_USE: 409,
    CustomerErrorCode.INVALID_KYC_TRANSITION: 409,
    CustomerErrorCode.KYC_PROFILE_MISSING: 409,
}

register_statuses({code: _STATUS.get(code, 422) for code in CustomerErrorCode})
