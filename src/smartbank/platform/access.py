"""The access seam for internal and staff APIs until the identity domain provides principals.

With ``SMARTBANK_INTERNAL_TOKEN`` set, callers must send ``Authorization: Bearer <token>``.
Without it, development and test accept local callers, and production refuses everyone:
deny by default.
"""

from __future__ import annotations

import hmac
import os

from fastapi import Request

from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.settings import get_settings


async def internal_caller(request: Request) -> str:
    token = os.environ.get("SMARTBANK_INTERNAL_TOKEN")
    if token:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
            raise DomainError(ErrorCode.UNAUTHENTICATED, "a valid internal bearer token is required")
        return "internal"
    if get_settings().env == "production":
        raise DomainError(ErrorCode.FORBIDDEN, "internal API is disabled: SMARTBANK_INTERNAL_TOKEN is not set")
    return "internal-dev"
