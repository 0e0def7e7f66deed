"""The dependencies every route uses for authentication, authorisation and rate limits.

Implemented by the identity domain (``smartbank.identity.deps``); domains that sit below ``web``
in the import layers import them from there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from smartbank.identity.deps import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    CurrentPrincipal,
    RateLimited,
    client_info,
    current_principal,
    money_movement_limit,
    optional_principal,
    rate_limit,
    registration_limit,
    require_customer,
    require_permission,
)
from smartbank.identity.model import ClientInfo, Permission, require_step_up
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.access import internal_token_matches

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "ClientInfo",
    "CurrentPrincipal",
    "RateLimited",
    "client_info",
    "current_principal",
    "internal_or_staff",
    "money_movement_limit",
    "optional_principal",
    "rate_limit",
    "registration_limit",
    "require_customer",
    "require_permission",
    "require_step_up",
]


def internal_or_staff(permission: Permission) -> Callable[[Request], Awaitable[None]]:
    """Guard of an internal API: the internal bearer token, or a staff login holding ``permission``.

    Anyone else is refused: 401 without credentials, 403 for a customer or for staff without it.
    """

    async def guard(request: Request) -> None:
        if internal_token_matches(request, request.app.state.runtime.settings.internal_token):
            return
        principal = await current_principal(request)
        if not principal.can(permission):
            raise DomainError(ErrorCode.FORBIDDEN, "this internal API is for the bank's own systems and staff")

    return guard
