"""The dependencies every route uses for authentication, authorisation and rate limits.

Implemented by the identity domain (``smartbank.identity.deps``); domains that sit below ``web``
in the import layers import them from there.
"""

from __future__ import annotations

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
from smartbank.identity.model import ClientInfo, require_step_up

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "ClientInfo",
    "CurrentPrincipal",
    "RateLimited",
    "client_info",
    "current_principal",
    "money_movement_limit",
    "optional_principal",
    "rate_limit",
    "registration_limit",
    "require_customer",
    "require_permission",
    "require_step_up",
]
