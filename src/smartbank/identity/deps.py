"""FastAPI dependencies: who is calling, what they may do, and how often.

``smartbank.web.deps`` re-exports these; domains below ``web`` in the import layers (customers,
banking) import them from here.

- Bearer access token (API clients): no CSRF check, a token is never sent by a browser on its own.
- Session cookie (browsers): unsafe methods must carry the ``X-CSRF-Token`` header with the token
  given at login (also in the readable ``sb_csrf`` cookie). It is an HMAC of the session token, so
  it cannot be guessed or planted from another site.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import structlog
from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import ClientInfo, Permission, Principal
from smartbank.identity.service import IdentityService
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.settings import Settings

SESSION_COOKIE: Final = "sb_session"
CSRF_COOKIE: Final = "sb_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_UNSET: Final = object()


def identity_service(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


def client_info(request: Request) -> ClientInfo:
    """The caller's address (when it is an IP address), user agent and request id."""
    ip: str | None = None
    if request.client is not None:
        try:
            ip = str(ipaddress.ip_address(request.client.host))
        except ValueError:
            ip = None
    device = request.headers.get("user-agent") or None
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return ClientInfo(ip=ip, device=device[:300] if device else None, request_id=request_id)


async def _authenticate(request: Request) -> tuple[Principal, str | None] | None:
    """(principal, CSRF token expected or None for bearer) — looked up once per request."""
    cached: Any = getattr(request.state, "identity_auth", _UNSET)
    if cached is not _UNSET:
        result: tuple[Principal, str | None] | None = cached
        return result
    service = identity_service(request)
    found: tuple[Principal, str | None] | None = None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        principal = await service.authenticate_access_token(credentials.strip())
        found = None if principal is None else (principal, None)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = await service.authenticate_session(cookie)
    request.state.identity_auth = found
    return found


async def optional_principal(request: Request) -> Principal | None:
    """The authenticated caller, or None (no CSRF check: for rate-limit keys and read-only hints)."""
    found = await _authenticate(request)
    return None if found is None else found[0]


async def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 ``unauthenticated`` otherwise, 403 ``csrf_failed`` on a bad CSRF token."""
    found = await _authenticate(request)
    if found is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "log in first: a bearer access token or a session cookie")
    principal, csrf_expected = found
    if csrf_expected is not None and request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "")
        if not presented or not hmac.compare_digest(presented.encode(), csrf_expected.encode()):
            raise DomainError(IdentityErrorCode.CSRF_FAILED, f"a cookie session needs the {CSRF_HEADER} header")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_customer(principal: CurrentPrincipal) -> Principal:
    """The caller, who must be a customer (403 ``forbidden`` otherwise)."""
    if not principal.is_customer:
        raise DomainError(ErrorCode.FORBIDDEN, "only customers may do this")
    return principal


def require_permission(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must be staff holding ``permission`` (403 ``forbidden`` otherwise)."""

    async def dependency(request: Request, principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise DomainError(ErrorCode.FORBIDDEN, "you may not do this", permission=permission.value)
        if identity_service(request).staff_mfa_required and principal.mfa_verified_at is None:
            raise DomainError(IdentityErrorCode.MFA_REQUIRED, "staff routes need a session that passed MFA")
        return principal

    return dependency


class RateLimited(HTTPException):
    """429 with ``Retry-After``; the error handler turns it into the ``rate_limited`` error shape."""

    def __init__(self, retry_after_s: int, scope: str) -> None:
        super().__init__(429, "too many requests: slow down", headers={"Retry-After": str(retry_after_s)})
        self.details = {"scope": scope, "retry_after_s": retry_after_s}


def rate_limit(
    scope: str,
    *,
    per_ip: int,
    per_principal: int,
    window_s: int,
    configured: Callable[[Settings], tuple[int, int]] | None = None,
) -> Callable[[Request], Awaitable[None]]:
    """A dependency counting each request against the caller's IP and, when known, principal.

    Over either limit within the fixed window: 429 ``rate_limited`` with ``Retry-After``. Counters
    live in PostgreSQL, so every server process shares them. With ``configured``, the (per IP, per
    principal) limits come from the app's settings (``app.state.settings``) when it has them.
    """

    async def dependency(request: Request) -> None:
        ip_limit, principal_limit = per_ip, per_principal
        settings = getattr(request.app.state, "settings", None)
        if configured is not None and isinstance(settings, Settings):
            ip_limit, principal_limit = configured(settings)
        host = request.client.host if request.client else "unknown"
        limits = [(f"ip:{host}", ip_limit)]
        principal = await optional_principal(request)
        if principal is not None:
            limits.append((f"principal:{principal.id}", principal_limit))
        retry_after_s = await identity_service(request).limiter.hit(scope, limits, window_s)
        if retry_after_s is not None:
            raise RateLimited(retry_after_s, scope)

    return dependency


#: Ready-made limits for other domains, so that every route of a kind shares one budget.
#: Registration (customers): 5 an hour per address; there is no principal yet.
registration_limit = rate_limit("customers.register", per_ip=5, per_principal=5, window_s=3600)
#: Money movement (banking, mall, link, lending): by default 60 a minute per address, 30 per principal
#: (``SMARTBANK_MONEY_MOVE_PER_IP_PER_MIN``, ``SMARTBANK_MONEY_MOVE_PER_PRINCIPAL_PER_MIN``).
money_movement_limit = rate_limit(
    "money.move",
    per_ip=60,
    per_principal=30,
    window_s=60,
    configured=lambda s: (s.money_move_per_ip_per_min, s.money_move_per_principal_per_min),
)
