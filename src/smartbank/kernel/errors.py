"""The error model: every failure a caller can see has a stable code.

A domain raises :class:`DomainError` with an :class:`ErrorCode`; the web layer maps it to
``{"error": {"code": ..., "message": ..., "details": {...}}}`` with the code's HTTP status.
Domains extend the vocabulary by defining their own ``StrEnum`` of codes and registering statuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Codes shared by every domain. Values are part of the public API: never rename one."""

    VALIDATION_ERROR = "validation_error"
    MALFORMED_JSON = "malformed_json"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_AMOUNT = "invalid_amount"
    TOO_MANY_DECIMALS = "too_many_decimals"
    AMOUNT_TOO_LARGE = "amount_too_large"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVARIANT_VIOLATED = "invariant_violated"


_STATUS: dict[str, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.INVALID_CURRENCY: 422,
    ErrorCode.INVALID_AMOUNT: 422,
    ErrorCode.TOO_MANY_DECIMALS: 422,
    ErrorCode.AMOUNT_TOO_LARGE: 422,
    ErrorCode.AMOUNT_MUST_BE_POSITIVE: 422,
    ErrorCode.CURRENCY_MISMATCH: 422,
    ErrorCode.INVARIANT_VIOLATED: 500,
}


def register_statuses(statuses: dict[str, int]) -> None:
    """Let a domain declare the HTTP status of its own codes (done once, at import)."""
    for code, status in statuses.items():
        existing = _STATUS.get(code)
        if existing is not None and existing != status:
            raise ValueError(f"error code {code!r} already registered with status {existing}")
        _STATUS[code] = status


def http_status_for(code: str) -> int:
    return _STATUS.get(code, 400)


class DomainError(Exception):
    """A failure with a stable code, a human message and structured details."""

    def __init__(self, code: str, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return http_status_for(self.code)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r}, {self.details!r})"
