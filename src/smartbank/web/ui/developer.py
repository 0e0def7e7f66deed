"""The developer portal of the staff console (``/staff/developer``): bank administrators list the
partner apps and register new ones, sandbox or production.

Partners register sandbox apps themselves through the RFC 7591 endpoint (``/oauth2/register``);
a production app is registered here, by staff, after the bank has onboarded the partner.
"""

from __future__ import annotations

from typing import Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from smartbank.identity.deps import client_info
from smartbank.identity.model import Principal, StaffRole
from smartbank.kernel.errors import DomainError
from smartbank.openbanking.errors import OAuth2Error
from smartbank.openbanking.model import Environment
from smartbank.openbanking.service import OpenBankingService
from smartbank.web.ui.i18n import N_
from smartbank.web.ui.routes import _csrf_ok, _form, _formatter
from smartbank.web.ui.staff import PREFIX, _error, _render, _staff

router = APIRouter(prefix=PREFIX + "/developer", include_in_schema=False)

MAX_JWKS_CHARS: Final = 20_000
MESSAGES: Final[dict[str, str]] = {
    "registered": N_("The app is registered. Give the partner its client id (and secret, shown only now)."),
    "invalid": N_("The app could not be registered: %(reason)s"),
}


def _service(request: Request) -> OpenBankingService:
    service: OpenBankingService = request.app.state.openbanking
    return service


async def _page(
    request: Request, principal: Principal, csrf: str, status_code: int = 200, **context: object
) -> HTMLResponse:
    clients = await _service(request).list_clients(principal)
    return _render(
        request, "developer.html", status_code=status_code, csrf=csrf, principal=principal, clients=clients, **context
    )


@router.get("", response_class=HTMLResponse)
async def developer_portal(request: Request) -> Response:
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    if StaffRole.ADMIN not in principal.roles:
        return _error(request, found, "forbidden", 403)
    return await _page(request, principal, csrf)


@router.post("", response_class=HTMLResponse)
async def register_app(request: Request) -> Response:
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    if StaffRole.ADMIN not in principal.roles:
        return _error(request, found, "forbidden", 403)
    form = await _form(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _error(request, found, "form_expired", 403)
    fmt = _formatter(request)
    environment = Environment.PRODUCTION if form.get("environment") == "production" else Environment.SANDBOX
    metadata: dict[str, object] = {
        "client_name": form.get("name", "").strip(),
        "redirect_uris": [line.strip() for line in form.get("redirect_uris", "").splitlines() if line.strip()],
        "token_endpoint_auth_method": form.get("auth_method", "private_key_jwt"),
    }
    jwks_text = form.get("jwks", "").strip()
    try:
        if jwks_text:
            if len(jwks_text) > MAX_JWKS_CHARS:
                raise ValueError("too long")
            metadata["jwks"] = orjson.loads(jwks_text)
        registration = await _service(request).register_client(
            metadata, client_info(request), environment=environment, registered_by=principal
        )
    except (OAuth2Error, ValueError, DomainError) as exc:
        reason = getattr(exc, "description", None) or getattr(exc, "message", None) or "the JWKS is not JSON"
        return await _page(
            request, principal, csrf, status_code=422, error=fmt.gettext(MESSAGES["invalid"], reason=reason)
        )
    return await _page(
        request,
        principal,
        csrf,
        status_code=201,
        notice=fmt.gettext(MESSAGES["registered"]),
        created=registration.client,
        secret=registration.client_secret,
    )
