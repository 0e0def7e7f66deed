"""Pages of the customer web app for open banking: the consent screen a partner app sends the
customer to (``/app/consents/authorize/{id}``), and the customer's list of consents with revocation
(``/app/consents``).

Thin like the other pages: the open-banking service decides; this module reads forms and renders.
Approving needs a fresh code from the customer's authenticator app (the identity service's step-up);
a customer without MFA is sent to set it up first.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from smartbank.identity.deps import client_info
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import Principal
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.openbanking.model import AccountPermission, ConsentKind
from smartbank.openbanking.pisp import parse_initiation
from smartbank.openbanking.service import AuthorizationView, OpenBankingService
from smartbank.web.ui.i18n import N_
from smartbank.web.ui.routes import (
    MAX_CODE,
    MAX_FORM_BYTES,
    PREFIX,
    Customer,
    _banking,
    _csrf_ok,
    _formatter,
    _identity,
    _limited,
    _mfa_limit,
    _redirect,
    _render,
    _uuid,
)

router = APIRouter(prefix=PREFIX + "/consents", include_in_schema=False)

#: Each permission in plain words (translated on the page).
PERMISSION_TEXT: Final[dict[str, str]] = {
    AccountPermission.READ_ACCOUNTS_BASIC: N_("See your accounts: their names, types and currencies"),
    AccountPermission.READ_ACCOUNTS_DETAIL: N_("See your account numbers"),
    AccountPermission.READ_BALANCES: N_("See your balances"),
    AccountPermission.READ_TRANSACTIONS_BASIC: N_("See your transactions: dates and amounts"),
    AccountPermission.READ_TRANSACTIONS_DETAIL: N_("See your transactions in detail: who paid whom, and references"),
    AccountPermission.READ_TRANSACTIONS_CREDITS: N_("See money coming into your accounts"),
    AccountPermission.READ_TRANSACTIONS_DEBITS: N_("See money going out of your accounts"),
}
STATUS_TEXT: Final[dict[str, str]] = {
    "AWAU": N_("Waiting for your decision"),
    "AUTH": N_("Active"),
    "RJCT": N_("Declined"),
    "EXPD": N_("Expired"),
    "CANC": N_("Revoked"),
    "COND": N_("Used"),
}
MESSAGES: Final[dict[str, str]] = {
    "choose_account": N_("Choose at least one account to share."),
    "unknown_account_number": N_("The app asks to pay an account this bank does not know. Decline, and tell the app."),
    "code_required": N_("Enter the code from your authenticator app."),
    IdentityErrorCode.INVALID_MFA_CODE: N_("That code is wrong, already used or expired. Try the next code."),
    "gone": N_("This request has expired or was already answered. Go back to the app and start again."),
    "revoked": N_("The consent is revoked. The app can no longer see your information."),
    ErrorCode.RATE_LIMITED: N_("Too many requests. Wait a minute and try again."),
}


def _service(request: Request) -> OpenBankingService:
    service: OpenBankingService = request.app.state.openbanking
    return service


async def _fields(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=60)
    except (UnicodeDecodeError, ValueError):
        return {}


def _first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


async def _screen(
    request: Request,
    principal: Principal,
    csrf: str,
    view: AuthorizationView,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    fmt = _formatter(request)
    service = _service(request)
    accounts = [a for a in await _banking(request).list_accounts(principal, principal.id) if a.status == "open"]
    mfa = await _identity(request).mfa_status(principal)
    consent = view.consent
    payment: dict[str, str] | None = None
    funds: dict[str, str] | None = None
    if consent.kind is not ConsentKind.ACCOUNT_ACCESS:  # one account, one that fits the payment or the check
        accounts = [a for a in accounts if service.payments.payer_problem(consent, a) is None]
        details = consent.details or {}
        if consent.kind is ConsentKind.DOMESTIC_PAYMENT:
            initiation = parse_initiation(details.get("Initiation"))
            payment = {
                "amount": fmt.money(initiation.amount.amount_minor, initiation.amount.currency),
                "creditor_name": initiation.creditor.name or "",
                "creditor_account": initiation.creditor.identification,
                "reference": initiation.reference,
            }
        else:
            funds = {"account": str((details.get("DebtorAccount") or {}).get("Identification", ""))}
    return _render(
        request,
        "consent.html",
        status_code=status_code,
        csrf=csrf,
        principal=principal,
        view=view,
        permissions=[fmt.gettext(PERMISSION_TEXT.get(p, p)) for p in consent.permissions],
        accounts=accounts,
        single=consent.kind is not ConsentKind.ACCOUNT_ACCESS,
        payment=payment,
        funds=funds,
        mfa_enrolled=mfa.enrolled,
        error=fmt.gettext(MESSAGES[error]) if error else None,
    )


def _gone(request: Request, principal: Principal, csrf: str) -> HTMLResponse:
    fmt = _formatter(request)
    return _render(
        request, "error.html", status_code=404, csrf=csrf, principal=principal, message=fmt.gettext(MESSAGES["gone"])
    )


@router.get("/authorize/{request_id}", response_class=HTMLResponse)
async def consent_screen(request: Request, request_id: str, me: Customer) -> Response:
    principal, csrf = me
    rid = _uuid(request_id)
    try:
        if rid is None:
            raise DomainError("not_found", "no such request")
        view = await _service(request).authorization_view(principal, rid)
    except DomainError:
        return _gone(request, principal, csrf)
    return await _screen(request, principal, csrf, view)


@router.post("/authorize/{request_id}", response_class=HTMLResponse)
async def consent_decision(request: Request, request_id: str, me: Customer) -> Response:
    principal, csrf = me
    form = await _fields(request)
    rid = _uuid(request_id)
    service = _service(request)
    if rid is None:
        return _gone(request, principal, csrf)
    if not _csrf_ok(_first(form, "csrf_token"), csrf):
        return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")
    try:
        view = await service.authorization_view(principal, rid)
    except DomainError:
        return _gone(request, principal, csrf)
    approve = _first(form, "decision") == "approve"
    account_ids = [a for a in (_uuid(v) for v in form.get("account", [])[:50]) if a is not None]
    code = _first(form, "code").strip()[:MAX_CODE]
    if approve and not account_ids:
        return await _screen(request, principal, csrf, view, error="choose_account", status_code=422)
    if approve and not code:
        return await _screen(request, principal, csrf, view, error="code_required", status_code=422)
    if approve and await _limited(request, _mfa_limit) is not None:  # the login and step-up budget for codes
        return await _screen(request, principal, csrf, view, error=ErrorCode.RATE_LIMITED, status_code=429)
    try:
        target = await service.decide(
            principal, rid, approve=approve, account_ids=account_ids, mfa_code=code, client_info=client_info(request)
        )
    except DomainError as exc:
        if exc.code == IdentityErrorCode.INVALID_MFA_CODE:
            return await _screen(request, principal, csrf, view, error=exc.code, status_code=401)
        if exc.code == IdentityErrorCode.MFA_NOT_ENROLLED:
            return await _screen(request, principal, csrf, view, status_code=409)
        if exc.code == "validation_error":
            return await _screen(request, principal, csrf, view, error="choose_account", status_code=422)
        if exc.code == "unknown_account_number":
            return await _screen(request, principal, csrf, view, error=exc.code, status_code=422)
        return _gone(request, principal, csrf)
    return RedirectResponse(target, status_code=303)


@router.get("", response_class=HTMLResponse)
async def consents_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    fmt = _formatter(request)
    items = await _service(request).customer_consents(principal)
    notice = fmt.gettext(MESSAGES["revoked"]) if request.query_params.get("done") == "revoked" else None
    return _render(
        request,
        "consents.html",
        csrf=csrf,
        principal=principal,
        items=items,
        notice=notice,
        status_text={k: fmt.gettext(v) for k, v in STATUS_TEXT.items()},
        permission_text={k: fmt.gettext(v) for k, v in PERMISSION_TEXT.items()},
    )


@router.post("/{consent_id}/revoke", response_class=HTMLResponse)
async def revoke_consent(request: Request, consent_id: str, me: Customer) -> Response:
    principal, csrf = me
    form = await _fields(request)
    if not _csrf_ok(_first(form, "csrf_token"), csrf):
        return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")
    try:
        await _service(request).revoke_by_customer(principal, consent_id, client_info(request))
    except DomainError:
        return _render(request, "error.html", status_code=404, csrf=csrf, principal=principal, code="not_found")
    return _redirect(PREFIX + "/consents?done=revoked")
