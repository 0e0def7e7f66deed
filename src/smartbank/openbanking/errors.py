"""Open-banking errors: the v4.0 ``OBErrorResponse1`` codes of the resource API, and the OAuth 2
errors of the authorization server (Authlib's error classes, RFC 6749 §5.2 and RFC 7591 §3.2.2).

Values are part of the public API: never rename one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError

__all__ = [
    "AccessDeniedError",
    "InvalidClientError",
    "InvalidClientMetadataError",
    "InvalidGrantError",
    "InvalidRedirectURIError",
    "InvalidRequestError",
    "InvalidScopeError",
    "OAuth2Error",
    "OBError",
    "OBErrorCode",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UnsupportedResponseTypeError",
]


class OBErrorCode(StrEnum):
    """v4.0 error codes (``OBExternalStatusReason1Code``, four characters) with their ``UK.OBIE.*`` names,
    as the Open Banking internal code set (``OB_Internal_Codeset.csv``) lists them."""

    UNEXPECTED_ERROR = "U000"  # UK.OBIE.UnexpectedError
    FIELD_EXPECTED = "U001"  # UK.OBIE.Field.Expected
    FIELD_INVALID = "U002"  # UK.OBIE.Field.Invalid
    FIELD_INVALID_DATE = "U003"  # UK.OBIE.Field.InvalidDate
    FIELD_MISSING = "U004"  # UK.OBIE.Field.Missing
    FIELD_UNEXPECTED = "U005"  # UK.OBIE.Field.Unexpected
    HEADER_INVALID = "U006"  # UK.OBIE.Header.Invalid
    HEADER_MISSING = "U007"  # UK.OBIE.Header.Missing
    CONSENT_MISMATCH = "U008"  # UK.OBIE.Resource.ConsentMismatch
    INVALID_CONSENT_STATUS = "U009"  # UK.OBIE.Resource.InvalidConsentStatus
    INVALID_FORMAT = "U010"  # UK.OBIE.Resource.InvalidFormat
    NOT_FOUND = "U011"  # UK.OBIE.Resource.NotFound
    AFTER_CUT_OFF = "U012"  # UK.OBIE.Rules.AfterCutOffDateTime
    DUPLICATE_REFERENCE = "U013"  # UK.OBIE.Rules.DuplicateReference
    FAILS_CONTROL_PARAMETERS = "U014"  # UK.OBIE.Rules.FailsControlParameters
    SIGNATURE_INVALID = "U015"  # UK.OBIE.Signature.Invalid
    SIGNATURE_INVALID_CLAIM = "U016"  # UK.OBIE.Signature.InvalidClaim
    SIGNATURE_MISSING_CLAIM = "U017"  # UK.OBIE.Signature.MissingClaim
    SIGNATURE_MALFORMED = "U018"  # UK.OBIE.Signature.Malformed
    SIGNATURE_MISSING = "U019"  # UK.OBIE.Signature.Missing
    SIGNATURE_UNEXPECTED = "U020"  # UK.OBIE.Signature.Unexpected
    UNSUPPORTED_ACCOUNT_IDENTIFIER = "U021"  # UK.OBIE.Unsupported.AccountIdentifier
    UNSUPPORTED_ACCOUNT_SECONDARY_IDENTIFIER = "U022"  # UK.OBIE.Unsupported.AccountSecondaryIdentifier
    UNSUPPORTED_CURRENCY = "U023"  # UK.OBIE.Unsupported.Currency
    UNSUPPORTED_EVENT_TYPE = "U024"  # UK.OBIE.Unsupported.EventType
    UNSUPPORTED_FREQUENCY = "U025"  # UK.OBIE.Unsupported.Frequency
    UNSUPPORTED_LOCAL_INSTRUMENT = "U026"  # UK.OBIE.Unsupported.LocalInstrument
    UNSUPPORTED_SCHEME = "U027"  # UK.OBIE.Unsupported.Scheme
    REAUTHENTICATE = "U028"  # UK.OBIE.Reauthenticate
    RESOURCE_ALREADY_EXISTS = "U029"  # UK.OBIE.Rules.ResourceAlreadyExists


#: The HTTP status category text of the (deprecated, still sent) ``Code`` field.
_STATUS_TEXT = {
    400: "400 BadRequest",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 NotFound",
    405: "405 MethodNotAllowed",
    406: "406 NotAcceptable",
    415: "415 UnsupportedMediaType",
    429: "429 TooManyRequests",
    500: "500 InternalServerError",
}


class OBError(Exception):
    """A refusal of the open-banking resource API, rendered as ``OBErrorResponse1``.

    401 and 403 carry no ``Errors`` detail in the standard; they still carry one entry here because
    the schema requires ``Errors`` (minItems 1).
    """

    def __init__(self, status: int, code: OBErrorCode, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path

    def body(self, error_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"ErrorCode": self.code.value, "Message": self.message[:500]}
        if self.path:
            error["Path"] = self.path[:500]
        return {
            "Id": error_id[:40],
            "Code": _STATUS_TEXT.get(self.status, f"{self.status} Error"),
            "Message": self.message[:500],
            "Errors": [error],
        }
