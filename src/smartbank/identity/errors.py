"""Identity error codes. Values are part of the public API: never rename one."""

from __future__ import annotations

from enum import StrEnum

from smartbank.kernel.errors import register_statuses


class IdentityErrorCode(StrEnum):
    LOGIN_TAKEN = "login_taken"
    INVALID_LOGIN = "invalid_login"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 - an error code, not a password
    INVALID_CREDENTIALS = "invalid_credentials"
    ACCOUNT_LOCKED = "account_locked"
    INVALID_MFA_CODE = "invalid_mfa_code"
    MFA_CHALLENGE_INVALID = "mfa_challenge_invalid"
    MFA_NOT_ENROLLED = "mfa_not_enrolled"
    MFA_ALREADY_ENROLLED = "mfa_already_enrolled"
    MFA_ENROLMENT_NOT_STARTED = "mfa_enrolment_not_started"
    MFA_REQUIRED = "mfa_required"
    STEP_UP_REQUIRED = "step_up_required"
    CSRF_FAILED = "csrf_failed"
    SESSION_NOT_FOUND = "session_not_found"
    REFRESH_TOKEN_INVALID = "refresh_token_invalid"  # noqa: S105
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105


register_statuses(
    {
        IdentityErrorCode.LOGIN_TAKEN: 409,
        IdentityErrorCode.INVALID_LOGIN: 422,
        IdentityErrorCode.WEAK_PASSWORD: 422,
        IdentityErrorCode.INVALID_CREDENTIALS: 401,
        IdentityErrorCode.ACCOUNT_LOCKED: 423,
        IdentityErrorCode.INVALID_MFA_CODE: 401,
        IdentityErrorCode.MFA_CHALLENGE_INVALID: 401,
        IdentityErrorCode.MFA_NOT_ENROLLED: 409,
        IdentityErrorCode.MFA_ALREADY_ENROLLED: 409,
        IdentityErrorCode.MFA_ENROLMENT_NOT_STARTED: 409,
        IdentityErrorCode.MFA_REQUIRED: 403,
        IdentityErrorCode.STEP_UP_REQUIRED: 403,
        IdentityErrorCode.CSRF_FAILED: 403,
        IdentityErrorCode.SESSION_NOT_FOUND: 404,
        IdentityErrorCode.REFRESH_TOKEN_INVALID: 401,
        IdentityErrorCode.REFRESH_TOKEN_REUSED: 401,
    }
)
