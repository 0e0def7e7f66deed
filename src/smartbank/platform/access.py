"""Service-to-service access: the internal bearer token.

Internal callers (batch jobs, other services, operations tooling) present
``Authorization: Bearer <SMARTBANK_INTERNAL_TOKEN>``. Without a configured token no request is an
internal caller: deny by default. Staff reach internal APIs with their own login instead (the web
layer combines both; see ``smartbank.web.deps.internal_or_staff``).
"""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr


def internal_token_matches(request: Request, token: SecretStr | None) -> bool:
    """Whether the request carries the configured internal token (compared in constant time)."""
    if token is None:
        return False
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.get_secret_value().encode()
    )
