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
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from smartbank.identity.deps import RateLimited, client_info, rate_limit
from smartbank.kernel.errors import DomainError
from smartbank.openbanking.errors import InvalidClientMetadataError, OAuth2Error, OBError, OBErrorCode
from smartbank.openbanking.jose import SignatureProblem, public_jwks, sign_detached, verify_detached
from smartbank.openbanking.model import ConsentKind
from smartbank.openbanking.pisp import CBPII, PISP, DomesticPayment, consent_status
from smartbank.openbanking.service import AccessContext, Client, Consent, OpenBankingService

MAX_FORM_BYTES: Final = 16_384
MAX_JSON_BYTES: Final = 65_536
AISP: Final = "/open-banking/v4.0/aisp"
CONSENT_PAGE: Final = "/app/consents/authorize"
INTERACTION_HEADER: Final = "x-fapi-interaction-id"
SIGNATURE_HEADER: Final = "x-jws-signature"
IDEMPOTENCY_HEADER: Final = "x-idempotency-key"
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


_SIGNATURE_CODES: Final = {
    "missing": OBErrorCode.SIGNATURE_MISSING,
    "malformed": OBErrorCode.SIGNATURE_MALFORMED,
    "invalid": OBErrorCode.SIGNATURE_INVALID,
    "claim": OBErrorCode.SIGNATURE_INVALID_CLAIM,
    "missing_claim": OBErrorCode.SIGNATURE_MISSING_CLAIM,
}


async def _ob(
    request: Request,
    status: int,
    handler: Callable[[AccessContext], Awaitable[dict[str, Any] | None]],
    *,
    signed_request: bool = False,
) -> Response:
    """Run a resource-API operation: bearer token, ``x-fapi-interaction-id``, OBErrorResponse1 errors,
    the partner's ``x-jws-signature`` checked (``signed_request``) and the bank's on every JSON answer."""
    interaction = _interaction_id(request)
    headers = {INTERACTION_HEADER: interaction, "Cache-Control": "no-store"}
    service = _service(request)
    try:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        ctx = None
        if scheme.lower() == "bearer" and credentials.strip():
            ctx = await service.authenticate_access_token(credentials.strip())
        if ctx is None:
            headers["WWW-Authenticate"] = 'Bearer realm="smartbank"'
            raise OBError(401, OBErrorCode.HEADER_INVALID, "a valid access token is required", "Authorization")
        if signed_request:
            await _verify_signature(request, service, ctx)
        body = await handler(ctx)
    except OBError as exc:
        return _signed(service, exc.body(interaction), exc.status, headers)
    except DomainError as exc:
        error = OBError(exc.http_status if exc.http_status < 500 else 400, OBErrorCode.FIELD_INVALID, exc.message)
        return _signed(service, error.body(interaction), error.status, headers)
    if body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body.get(_REFUSAL), dict):  # a payment banking refused, answered as it was the first time
        refusal = body[_REFUSAL]
        error = OBError(int(refusal["status"]), OBErrorCode(refusal["code"]), str(refusal["message"]))
        return _signed(service, error.body(interaction), error.status, headers)
    return _signed(service, body, status, headers)


_REFUSAL: Final = "__refusal__"


def _signed(service: OpenBankingService, body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    """A JSON answer with the bank's detached signature over its exact bytes (``x-jws-signature``)."""
    content = orjson.dumps(body)
    signature = sign_detached(
        content, service.signing_key, issuer=service.issuer, trust_anchor=service.trust_anchor, now=service.now()
    )
    return Response(
        content, status_code=status, media_type="application/json", headers={**headers, SIGNATURE_HEADER: signature}
    )


async def _verify_signature(request: Request, service: OpenBankingService, ctx: AccessContext) -> None:
    """The partner's ``x-jws-signature`` over the exact request body, by a key it registered. Sandbox
    apps that authenticate with a client secret have no keys and sign nothing."""
    jwks = await service.client_jwks(ctx.client_id)
    if jwks is None:
        return
    body = await request.body()
    try:
        verify_detached(
            request.headers.get(SIGNATURE_HEADER),
            body,
            jwks,
            signer=ctx.client_id,
            trust_anchor=service.trust_anchor,
            now=service.now(),
        )
    except SignatureProblem as exc:
        raise OBError(400, _SIGNATURE_CODES[exc.kind], exc.message, SIGNATURE_HEADER) from exc


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


# -- account information (AISP) ---------------------------------------------------------------------------


@router.get(f"{AISP}/accounts")
async def accounts(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        return await _service(request).accounts.accounts(ctx, _service(request).url(f"{AISP}/accounts"))

    return await _ob(request, 200, handle)


@router.get(f"{AISP}/accounts/{{account_id}}")
async def account(request: Request, account_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        url = _service(request).url(f"{AISP}/accounts/{account_id}")
        return await _service(request).accounts.account(ctx, account_id, url)

    return await _ob(request, 200, handle)


@router.get(f"{AISP}/accounts/{{account_id}}/balances")
async def balances(request: Request, account_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        url = _service(request).url(f"{AISP}/accounts/{account_id}/balances")
        return await _service(request).accounts.balances(ctx, account_id, url)

    return await _ob(request, 200, handle)


def _query_time(request: Request, name: str) -> Any:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if len(value) <= 40 else None
    except ValueError:
        moment = None
    if moment is None:
        raise OBError(400, OBErrorCode.FIELD_INVALID_DATE, "expected an ISO 8601 date-time", name)
    # OBIE: a booking time without a zone is the bank's local time; this bank reads it as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get(f"{AISP}/accounts/{{account_id}}/transactions")
async def transactions(request: Request, account_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        return await service.accounts.transactions(
            ctx,
            account_id,
            base_url=service.url(f"{AISP}/accounts/{account_id}/transactions"),
            from_=_query_time(request, "fromBookingDateTime"),
            to=_query_time(request, "toBookingDateTime"),
            cursor=request.query_params.get("page"),
        )

    return await _ob(request, 200, handle)


# -- payment initiation (PISP) ------------------------------------------------------------------------------


def payment_consent_body(consent: Consent, self_url: str, now: datetime) -> dict[str, Any]:
    """An ``OBWriteDomesticConsentResponse5``: the request as sent, with the consent's id and status."""
    details = consent.details or {}
    data: dict[str, Any] = {
        "ConsentId": consent.id,
        "CreationDateTime": _iso(consent.created_at),
        "Status": consent_status(consent, now),
        "StatusUpdateDateTime": _iso(consent.status_updated_at),
        "Initiation": details.get("Initiation"),
    }
    if "ReadRefundAccount" in details:
        data["ReadRefundAccount"] = details["ReadRefundAccount"]
    return {"Data": data, "Risk": details.get("Risk", {}), "Links": {"Self": self_url}, "Meta": {}}


def payment_body(payment: DomesticPayment, consent: Consent, self_url: str) -> dict[str, Any]:
    """An ``OBWriteDomesticResponse5``, or the refusal banking gave when the payment was made."""
    if payment.refusal is not None:
        return {_REFUSAL: payment.refusal}
    return {
        "Data": {
            "DomesticPaymentId": payment.id,
            "ConsentId": payment.consent_id,
            "CreationDateTime": _iso(payment.created_at),
            "Status": payment.status,
            "StatusUpdateDateTime": _iso(payment.status_updated_at),
            "Initiation": (consent.details or {}).get("Initiation"),
        },
        "Links": {"Self": self_url},
        "Meta": {},
    }


@router.post(f"{PISP}/domestic-payment-consents")
async def create_domestic_payment_consent(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        consent = await service.payments.create_payment_consent(
            ctx, await _json(request), request.headers.get(IDEMPOTENCY_HEADER), client_info(request)
        )
        return payment_consent_body(
            consent, service.url(f"{PISP}/domestic-payment-consents/{consent.id}"), service.now()
        )

    return await _ob(request, 201, handle, signed_request=True)


@router.get(f"{PISP}/domestic-payment-consents/{{consent_id}}")
async def get_domestic_payment_consent(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        consent = await service.payments.get_payment_consent(ctx, consent_id)
        return payment_consent_body(
            consent, service.url(f"{PISP}/domestic-payment-consents/{consent.id}"), service.now()
        )

    return await _ob(request, 200, handle)


@router.get(f"{PISP}/domestic-payment-consents/{{consent_id}}/funds-confirmation")
async def domestic_payment_funds_confirmation(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        available, at = await service.payments.payment_funds(ctx, consent_id)
        return {
            "Data": {"FundsAvailableResult": {"FundsAvailableDateTime": _iso(at), "FundsAvailable": available}},
            "Links": {"Self": service.url(f"{PISP}/domestic-payment-consents/{consent_id}/funds-confirmation")},
            "Meta": {},
        }

    return await _ob(request, 200, handle)


@router.post(f"{PISP}/domestic-payments")
async def create_domestic_payment(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        payment, consent = await service.payments.create_payment(
            ctx, await _json(request), request.headers.get(IDEMPOTENCY_HEADER), client_info(request)
        )
        return payment_body(payment, consent, service.url(f"{PISP}/domestic-payments/{payment.id}"))

    return await _ob(request, 201, handle, signed_request=True)


@router.get(f"{PISP}/domestic-payments/{{payment_id}}")
async def get_domestic_payment(request: Request, payment_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        payment, consent = await service.payments.get_payment(ctx, payment_id)
        if payment.refusal is not None:  # refused when it was made: there is no payment to show
            raise OBError(404, OBErrorCode.NOT_FOUND, "no such domestic payment", "DomesticPaymentId")
        return payment_body(payment, consent, service.url(f"{PISP}/domestic-payments/{payment.id}"))

    return await _ob(request, 200, handle)


# -- confirmation of funds (CBPII) ---------------------------------------------------------------------------


def funds_consent_body(consent: Consent, self_url: str) -> dict[str, Any]:
    """An ``OBFundsConfirmationConsentResponse1``."""
    data: dict[str, Any] = {
        "ConsentId": consent.id,
        "CreationDateTime": _iso(consent.created_at),
        "Status": consent.status.value,
        "StatusUpdateDateTime": _iso(consent.status_updated_at),
        "DebtorAccount": (consent.details or {}).get("DebtorAccount"),
    }
    if consent.expires_at is not None:
        data["ExpirationDateTime"] = _iso(consent.expires_at)
    return {"Data": data, "Links": {"Self": self_url}, "Meta": {}}


@router.post(f"{CBPII}/funds-confirmation-consents")
async def create_funds_confirmation_consent(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        consent = await service.payments.create_funds_consent(ctx, await _json(request), client_info(request))
        return funds_consent_body(consent, service.url(f"{CBPII}/funds-confirmation-consents/{consent.id}"))

    return await _ob(request, 201, handle)


@router.get(f"{CBPII}/funds-confirmation-consents/{{consent_id}}")
async def get_funds_confirmation_consent(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        consent = await service.payments.get_funds_consent(ctx, consent_id)
        return funds_consent_body(consent, service.url(f"{CBPII}/funds-confirmation-consents/{consent.id}"))

    return await _ob(request, 200, handle)


@router.delete(f"{CBPII}/funds-confirmation-consents/{{consent_id}}")
async def delete_funds_confirmation_consent(request: Request, consent_id: str) -> Response:
    async def handle(ctx: AccessContext) -> None:
        await _service(request).payments.delete_funds_consent(ctx, consent_id, client_info(request))

    return await _ob(request, 204, handle)


@router.post(f"{CBPII}/funds-confirmations")
async def confirm_funds(request: Request) -> Response:
    async def handle(ctx: AccessContext) -> dict[str, Any]:
        service = _service(request)
        data = await service.payments.confirm_funds(ctx, await _json(request))
        return {"Data": data, "Links": {"Self": service.url(f"{CBPII}/funds-confirmations")}, "Meta": {}}

    return await _ob(request, 201, handle)


__all__ = ["ConsentKind", "router"]
