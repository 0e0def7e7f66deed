"""HTTP adapters of the open-banking domain: the OAuth 2 authorization server and the v4.0 consent API.

These routes speak the standards' own contracts (form-encoded OAuth requests, RFC 6749 error bodies,
OBIE v4.0 ``OBReadConsentResponse1`` / ``OBErrorResponse1``), not the platform's JSON error
envelope, so they are not part of the platform's OpenAPI document: the pinned OBIE files and the
RFCs are their contract (docs/openbanking.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from smartbank.identity.deps import RateLimited, client_info, rate_limit
from smartbank.kernel.errors import DomainError
from smartbank.openbanking.errors import InvalidClientMetadataError, OAuth2Error, OBError, OBErrorCode
from smartbank.openbanking.jose import public_jwks
from smartbank.openbanking.service import AccessContext, Client, Consent, OpenBankingService

MAX_FORM_BYTES: Final = 16_384
MAX_JSON_BYTES: Final = 65_536
AISP: Final = "/open-banking/v4.0/aisp"
CONSENT_PAGE: Final = "/app/consents/authorize"
INTERACTION_HEADER: Final = "x-fapi-interaction-id"
_INTERACTION_ID: Final = re.compile(r"^[A-Za-z0-9\-]{1,64}$")

router = APIRouter(include_in_schema=False)

#: Registration is open (sandbox apps): 100 an hour per address.
_registration_limit = rate_limit("openbanking.register", per_ip=100, per_principal=100, window_s=3600)


def _service(request: Request) -> OpenBankingService:
    service: OpenBankingService = request.app.state.openbanking
    return service


async def _form(request: Request) -> dict[str, list[str]]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise _InvalidBody("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise _InvalidBody("the body is too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=False, strict_parsing=False, max_num_fields=40)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _InvalidBody("the body is not a valid form") from exc


class _InvalidBody(Exception):
    pass


def _oauth_response(exc: OAuth2Error) -> JSONResponse:
    body = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
    # A failed client authentication is always 401 (RFC 6749 §5.2), whoever raised it.
    status = 401 if exc.error == "invalid_client" else (exc.status_code or 400)
    response = JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="smartbank"'
    return response


async def _oauth(request: Request, handler: Callable[[], Awaitable[Response]]) -> Response:
    """Run an OAuth endpoint: its errors as RFC 6749 §5.2 bodies, never the platform envelope."""
    try:
        return await handler()
    except OAuth2Error as exc:
        return _oauth_response(exc)
    except _InvalidBody as exc:
        return JSONResponse(
            {"error": "invalid_request", "error_description": str(exc)},
            status_code=400,
            headers={"Cache-Control": "no-store"},
        )
    except RateLimited as exc:
        return JSONResponse(
            {"error": "slow_down", "error_description": "too many requests"},
            status_code=429,
            headers=exc.headers or {},
        )


def _no_store(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# -- discovery -----------------------------------------------------------------------------------------


@router.get("/.well-known/oauth-authorization-server")
@router.get("/.well-known/openid-configuration")
async def server_metadata(request: Request) -> JSONResponse:
    """RFC 8414 authorization server metadata."""
    return JSONResponse(_service(request).metadata())


@router.get("/oauth2/jwks")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(public_jwks(_service(request).signing_key), headers={"Cache-Control": "public, max-age=300"})


# -- dynamic client registration (RFC 7591) -------------------------------------------------------------


@router.post("/oauth2/register")
@router.post("/open-banking/register")
async def register(request: Request) -> Response:
    """Register a sandbox partner app. The software statement is optional in the sandbox."""

    async def handle() -> Response:
        await _registration_limit(request)
        body = await request.body()
        if len(body) > MAX_JSON_BYTES:
            raise InvalidClientMetadataError(description="the metadata is too large")
        try:
            metadata = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidClientMetadataError(description="the body must be JSON client metadata") from exc
        registration = await _service(request).register_client(metadata, client_info(request))
        data = registration.client.metadata()
        if registration.client_secret is not None:
            data["client_secret"] = registration.client_secret
            data["client_secret_expires_at"] = 0
        return _no_store(data, 201)

    return await _oauth(request, handle)


# -- PAR, authorization, token, revocation, introspection ----------------------------------------------


async def _authenticated(
    request: Request, handler: Callable[[OpenBankingService, Client, dict[str, list[str]]], Awaitable[Response]]
) -> Response:
    """A back-channel endpoint: read the form, authenticate the client, then run ``handler``."""

    async def handle() -> Response:
        form = await _form(request)
        service = _service(request)
        client = await service.authenticate_client(form, request.headers.get("authorization"))
        return await handler(service, client, form)

    return await _oauth(request, handle)


@router.post("/oauth2/par")
async def pushed_authorization_request(request: Request) -> Response:
    async def handle(service: OpenBankingService, client: Client, form: dict[str, list[str]]) -> Response:
        request_uri, expires_in = await service.push_authorization_request(client, form)
        return _no_store({"request_uri": request_uri, "expires_in": expires_in}, 201)

    return await _authenticated(request, handle)


@router.get("/oauth2/authorize")
async def authorize(request: Request) -> Response:
    """Check the request, then hand the browser to the consent screen of the customer web app."""
    service = _service(request)
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    try:
        request_id = await service.authorize(params)
    except OAuth2Error as exc:
        if exc.redirect_uri:  # the redirect URI is a registered one: the error goes back to the app
            query: dict[str, str] = {"error": exc.error}
            if exc.description:
                query["error_description"] = exc.description
            if exc.state:
                query["state"] = exc.state
            query["iss"] = service.issuer
            separator = "&" if "?" in exc.redirect_uri else "?"
            return RedirectResponse(exc.redirect_uri + separator + urlencode(query), status_code=303)
        return _oauth_response(exc)  # never redirect to an unchecked URI
    return RedirectResponse(f"{CONSENT_PAGE}/{request_id}", status_code=303)


@router.post("/oauth2/token")
async def token(request: Request) -> Response:
    async def handle(service: OpenBankingService, client: Client, form: dict[str, list[str]]) -> Response:
        return _no_store(await service.token(client, form, client_info(request)))

    return await _authenticated(request, handle)


@router.post("/oauth2/revoke")
async def revoke(request: Request) -> Response:
    async def handle(service: OpenBankingService, client: Client, form: dict[str, list[str]]) -> Response:
        await service.revoke(client, form, client_info(request))
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    return await _authenticated(request, handle)


@router.post("/oauth2/introspect")
async def introspect(request: Request) -> Response:
    async def handle(service: OpenBankingService, client: Client, form: dict[str, list[str]]) -> Response:
        return _no_store(await service.introspect(client, form))

    return await _authenticated(request, handle)


# -- account-access consents (OBIE v4.0) ----------------------------------------------------------------


def _interaction_id(request: Request) -> str:
    incoming = request.headers.get(INTERACTION_HEADER, "")
    return incoming if _INTERACTION_ID.match(incoming) else str(uuid.uuid4())


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def consent_body(consent: Consent, self_url: str) -> dict[str, Any]:
    """An ``OBReadConsentResponse1``."""
    data: dict[str, Any] = {
        "ConsentId": consent.id,
        "CreationDateTime": _iso(consent.created_at),
        "Status": consent.status.value,
        "StatusUpdateDateTime": _iso(consent.status_updated_at),
        "Permissions": list(consent.permissions),
    }
    for name, value in (
        ("ExpirationDateTime", consent.expires_at),
        ("TransactionFromDateTime", consent.transaction_from),
        ("TransactionToDateTime", consent.transaction_to),
    ):
        if value is not None:
            data[name] = _iso(value)
    return {"Data": data, "Risk": {}, "Links": {"Self": self_url}, "Meta": {}}


async def _ob(
    request: Request, status: int, handler: Callable[[AccessContext], Awaitable[dict[str, Any] | None]]
) -> Response:
    """Run a resource-API operation: bearer token, ``x-fapi-interaction-id``, OBErrorResponse1 errors."""
    interaction = _interaction_id(request)
    headers = {INTERACTION_HEADER: interaction, "Cache-Control": "no-store"}
    try:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        ctx = None
        if scheme.lower() == "bearer" and credentials.strip():
            ctx = await _service(request).authenticate_access_token(credentials.strip())
        if ctx is None:
            headers["WWW-Authenticate"] = 'Bearer realm="smartbank"'
            raise OBError(401, OBErrorCode.HEADER_INVALID, "a valid access token is required", "Authorization")
        body = await handler(ctx)
    except OBError as exc:
        return JSONResponse(exc.body(interaction), status_code=exc.status, headers=headers)
    except DomainError as exc:
        error = OBError(exc.http_status if exc.http_status < 500 else 400, OBErrorCode.FIELD_INVALID, exc.message)
        return JSONResponse(error.body(interaction), status_code=error.status, headers=headers)
    if body is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/json")


async def _json(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise OBError(415, OBErrorCode.HEADER_INVALID, "the body must be application/json", "Content-Type")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise OBError(400, OBErrorCode.INVALID_FORMAT, "the body is too large")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OBError(400, OBErrorCode.INVALID_FORMAT, "the body is not valid JSON") from exc


@router.post(f"{AISP}/account-access-consents")
async def create_account_access_consent(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        body = await _json(request)
        consent = await _service(request).create_account_access_consent(ctx, body, client_info(request))
        return consent_body(consent, _service(request).url(f"{AISP}/account-access-consents/{consent.id}"))

    return await _ob(request, 201, handle)


@router.get(f"{AISP}/account-access-consents/{{consent_id}}")
async def get_account_access_consent(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        consent = await _service(request).get_account_access_consent(ctx, consent_id)
        return consent_body(consent, _service(request).url(f"{AISP}/account-access-consents/{consent.id}"))

    return await _ob(request, 200, handle)


@router.delete(f"{AISP}/account-access-consents/{{consent_id}}")
async def delete_account_access_consent(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> None:
        await _service(request).delete_account_access_consent(ctx, consent_id, client_info(request))

    return await _ob(request, 204, handle)
