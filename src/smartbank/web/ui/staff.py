"""Pages of the staff console under ``/staff``: log in (with MFA, and MFA set-up when the bank requires
it), customer search (name, phone, ID number, account number or IBAN), the KYC queue, the customer
view (profile, accounts, payments, audit trail) and its actions (KYC decision, tier, revealing the ID
number, freeze/unfreeze, teller cash).

Built like the customer pages (``routes.py``, whose helpers it reuses): plain forms, the session's
CSRF token in every signed-in form, the same services. A page shows only the actions the
principal's permissions allow; the services check the permission again and refuse the rest.
"""

from __future__ import annotations

import uuid
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from smartbank.banking.errors import BankingErrorCode
from smartbank.banking.model import CashRequest, PaymentKind
from smartbank.customers.errors import CustomerErrorCode
from smartbank.customers.model import MAX_REASON_CHARS, KycDecision, RequestInfo
from smartbank.identity.deps import client_info, money_movement_limit
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import Permission, Principal, PrincipalKind
from smartbank.identity.service import LoginResult
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.money import Money
from smartbank.web.ui.i18n import LANGUAGE_COOKIE, LANGUAGES, N_
from smartbank.web.ui.routes import (
    FORM_COOKIE,
    MAX_CODE,
    MAX_LOGIN,
    _banking,
    _clear_session,
    _csrf_ok,
    _customers,
    _form,
    _formatter,
    _identity,
    _limited,
    _message,
    _mfa_limit,
    _redirect,
    _session,
    _set_session,
    _uuid,
    mfa_login,
    password_login,
)
from smartbank.web.ui.routes import _render as _render_page
from smartbank.web.ui.staff_audit import describe

PREFIX: Final = "/staff"
SEARCH_PAGE: Final = 20
MAX_QUERY: Final = 64
RECENT_ITEMS: Final = 5
MAX_ACCOUNTS_SHOWN: Final = 20
RECENT_PAYMENTS: Final = 10
AUDIT_PAGE: Final = 20
KYC_PAGE: Final = 20
SEARCH_BY: Final = ("name", "phone", "id_number", "account")

router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: Staff-console messages by code (the customer app's messages serve the shared codes).
STAFF_MESSAGES: Final[dict[str, str]] = {
    "customer_login": N_("This console is for bank staff. Customers sign in to the web app."),
    "forbidden": N_("Your role does not allow this."),
    "reason_required": N_("Give a reason."),
    "search_needs_one": N_("Enter a name, a phone number, an ID number or an account number."),
    "invalid_iban": N_("That is not an IBAN of this bank; check it or enter the 16-digit account number."),
    "no_id_number": N_("This customer has not sent an ID number yet."),
    "unknown_tier": N_("Choose one of the tiers."),
    "mfa_enrol_first": N_("Scan the QR code and enter a code first."),
    "kyc_not_pending": N_("This customer's identity check is not waiting for a decision."),
    "done": N_("Done."),
    "mfa_required": N_(
        "The staff console needs a login that passed MFA. Set up an authenticator app and log in again."
    ),
}
#: The names of the tiers the migrations create; a tier added later shows its code.
TIER_NAMES: Final[dict[str, str]] = {"basic": N_("Basic"), "standard": N_("Standard"), "premium": N_("Premium")}
_CODE_ALIASES: Final[dict[str, str]] = {
    ErrorCode.FORBIDDEN: "forbidden",
    CustomerErrorCode.REASON_REQUIRED: "reason_required",
    CustomerErrorCode.INVALID_SEARCH: "search_needs_one",
    CustomerErrorCode.CUSTOMER_NOT_FOUND: ErrorCode.NOT_FOUND,
    IdentityErrorCode.MFA_REQUIRED: "mfa_required",
    IdentityErrorCode.MFA_ENROLMENT_NOT_STARTED: "mfa_enrol_first",
    BankingErrorCode.INVALID_IBAN: "invalid_iban",
    CustomerErrorCode.KYC_PROFILE_MISSING: "no_id_number",
    CustomerErrorCode.UNKNOWN_TIER: "unknown_tier",
}


def _text(request: Request, code: str) -> str:
    fmt = _formatter(request)
    code = _CODE_ALIASES.get(code, code)
    if code in STAFF_MESSAGES:
        return fmt.gettext(STAFF_MESSAGES[code])
    return _message(fmt, code)


def _render(request: Request, name: str, **context: Any) -> HTMLResponse:
    principal = context.get("principal")
    return _render_page(request, "staff/" + name, prefix=PREFIX, staff=principal, Permission=Permission, **context)


def _local(value: str | None) -> str:
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/"


async def _staff_session(request: Request) -> tuple[Principal, str] | Response:
    """The signed-in staff member and the session's CSRF token, MFA or not; else the login page."""
    found = await _session(request)
    if found is None:
        return _redirect(f"{PREFIX}/login?" + urlencode({"next": request.url.path}))
    if not found[0].is_staff:
        return _error(request, found, "customer_login", 403)
    return found


async def _staff(request: Request) -> tuple[Principal, str] | Response:
    """The signed-in staff member and the session's CSRF token; else the login page, the MFA set-up
    (the bank requires MFA and they have none yet) or a refusal."""
    found = await _staff_session(request)
    if isinstance(found, Response):
        return found
    if _identity(request).staff_mfa_required and found[0].mfa_verified_at is None:
        # The same rule as the staff JSON routes (``require_permission``): a session that passed MFA.
        if not (await _identity(request).mfa_status(found[0])).enrolled:
            return _redirect(PREFIX + "/mfa/setup")
        return _error(request, found, IdentityErrorCode.MFA_REQUIRED, 403)
    return found


def _error(request: Request, found: tuple[Principal, str], code: str, status_code: int) -> HTMLResponse:
    principal, csrf = found
    return _render(
        request, "error.html", status_code=status_code, csrf=csrf, principal=principal, message=_text(request, code)
    )


def _audit(request: Request) -> RequestInfo:
    client = client_info(request)
    return RequestInfo(ip=client.ip, device=client.device, request_id=client.request_id)


# -- signing in and out --------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def staff_root() -> RedirectResponse:
    return _redirect(PREFIX + "/")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    found = await _session(request)
    if found is not None and found[0].is_staff:
        return _redirect(PREFIX + "/")
    return _render(request, "login.html", next=_local(request.query_params.get("next")))


async def _signed_in(request: Request, result: LoginResult, next_path: str) -> Response:
    """The redirect that sets the session, or (for a customer) end that session and refuse."""
    if result.kind != PrincipalKind.STAFF:
        assert result.session_token is not None
        found = await _identity(request).authenticate_session(result.session_token)
        if found is not None:
            await _identity(request).logout(found[0], client_info(request))
        return _render(request, "login.html", status_code=403, error=_text(request, "customer_login"), next=next_path)
    response = _redirect(next_path)
    _set_session(response, result)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    form = await _form(request)
    next_path = _local(form.get("next"))
    login = form.get("login", "").strip()[:MAX_LOGIN]

    def again(code: str, status_code: int) -> HTMLResponse:
        return _render(
            request, "login.html", status_code=status_code, error=_text(request, code), login=login, next=next_path
        )

    result = await password_login(request, form, login, again)
    if isinstance(result, Response):
        return result
    if result.status == "mfa_required":
        return _render(request, "mfa.html", challenge=result.mfa_challenge, next=next_path)
    return await _signed_in(request, result, next_path)


@router.post("/login/mfa", response_class=HTMLResponse)
async def login_mfa(request: Request) -> Response:
    form = await _form(request)
    next_path = _local(form.get("next"))
    result = await mfa_login(request, form, next_path, _render, lambda code: _text(request, code))
    if isinstance(result, Response):
        return result
    return await _signed_in(request, result, next_path)


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    form = await _form(request)
    found = await _session(request)
    if found is not None:
        if not _csrf_ok(form.get("csrf_token"), found[1]):
            return _error(request, found, "form_expired", 403)
        await _identity(request).logout(found[0], client_info(request))
    response = _redirect(PREFIX + "/login")
    _clear_session(response)
    return response


@router.post("/language", response_class=HTMLResponse)
async def choose_language(request: Request) -> Response:
    form = await _form(request)
    found = await _session(request)
    expected = found[1] if found is not None else request.cookies.get(FORM_COOKIE)
    tag = form.get("language", "")
    response = _redirect(_local(form.get("next")))
    if _csrf_ok(form.get("csrf_token"), expected) and tag in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, tag, max_age=365 * 86400, path="/", secure=True, samesite="lax")
    return response


# -- search --------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def search(request: Request) -> Response:
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    params = request.query_params
    by = params.get("by", "name")
    if by not in SEARCH_BY:
        by = "name"
    query = (params.get("q") or "").strip()[:MAX_QUERY]
    cursor = (params.get("cursor") or "")[:200] or None
    context: dict[str, Any] = {"by": by, "query": query, "results": None, "more": None}
    if query and by == "account":
        try:
            context["results"] = await _account_holder(request, principal, query)
        except DomainError as exc:
            return _render(
                request,
                "search.html",
                status_code=exc.http_status,
                csrf=csrf,
                principal=principal,
                error=_text(request, exc.code),
                **context,
            )
    elif query:
        try:
            page = await _customers(request).search(principal, **{by: query}, cursor=cursor, limit=SEARCH_PAGE)
        except DomainError as exc:
            return _render(
                request,
                "search.html",
                status_code=exc.http_status,
                csrf=csrf,
                principal=principal,
                error=_text(request, exc.code),
                **context,
            )
        context["results"] = page.items
        if page.next_cursor:
            context["more"] = "?" + urlencode({"by": by, "q": query, "cursor": page.next_cursor})
    return _render(request, "search.html", csrf=csrf, principal=principal, **context)


async def _account_holder(request: Request, principal: Principal, number: str) -> list[Any]:
    """The customer holding the account with this number or IBAN (a list of one), or none."""
    try:
        account = await _banking(request).find_account(principal, number)
    except DomainError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return []
        raise
    return [await _customers(request).get_customer(principal, account.customer_id)]


# -- the KYC queue -------------------------------------------------------------------------------


@router.get("/kyc", response_class=HTMLResponse)
async def kyc_queue(request: Request) -> Response:
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    cursor = (request.query_params.get("cursor") or "")[:200] or None
    try:
        page = await _customers(request).kyc_queue(principal, cursor=cursor, limit=KYC_PAGE)
    except DomainError as exc:
        return _error(request, found, exc.code, exc.http_status)
    more = "?" + urlencode({"cursor": page.next_cursor}) if page.next_cursor else None
    return _render(request, "kyc_queue.html", csrf=csrf, principal=principal, items=page.items, more=more)


# -- one customer --------------------------------------------------------------------------------


async def _customer_page(
    request: Request,
    principal: Principal,
    csrf: str,
    customer_id: uuid.UUID,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    audit_before: int | None = None,
    revealed: str | None = None,
) -> HTMLResponse:
    try:
        profile = await _customers(request).get_customer(principal, customer_id)
    except DomainError as exc:
        status = 404 if exc.code == CustomerErrorCode.CUSTOMER_NOT_FOUND else exc.http_status
        return _error(request, (principal, csrf), exc.code, status)
    banking = _banking(request)
    balances = []
    recent: dict[uuid.UUID, list[Any]] = {}
    if principal.can(Permission.ACCOUNTS_READ):
        balances = await banking.list_account_balances(principal, customer_id)
        for balance in balances[:MAX_ACCOUNTS_SHOWN]:
            page = await banking.history(principal, balance.account.id, limit=RECENT_ITEMS)
            recent[balance.account.id] = page.items
    payments = None
    if principal.can(Permission.PAYMENTS_READ):
        payments = await banking.recent_payments(principal, customer_id, RECENT_PAYMENTS)
    audit_lines = None
    audit_more = None
    if principal.can(Permission.AUDIT_READ):
        records = await banking.audit_trail(principal, customer_id, before_seq=audit_before, limit=AUDIT_PAGE + 1)
        staff = await _identity(request).staff_members(
            principal, [r.actor_id for r in records if r.actor_kind == "staff" and r.actor_id is not None]
        )
        audit_lines = describe(_formatter(request), records[:AUDIT_PAGE], customer_id, staff)
        if len(records) > AUDIT_PAGE:
            audit_more = f"{PREFIX}/customers/{customer_id}?" + urlencode({"audit_before": records[AUDIT_PAGE - 1].seq})
    tiers = await _customers(request).tiers() if principal.can(Permission.TIERS_SET) else []
    return _render(
        request,
        "customer.html",
        status_code=status_code,
        csrf=csrf,
        principal=principal,
        profile=profile,
        balances=balances[:MAX_ACCOUNTS_SHOWN],
        recent=recent,
        error=error,
        notice=notice,
        keys=[str(uuid.uuid4()) for _ in balances],
        max_reason=MAX_REASON_CHARS,
        payments=payments,
        audit_lines=audit_lines,
        audit_more=audit_more,
        audit_paged=audit_before is not None,
        tiers=tiers,
        tier_name=lambda code: _formatter(request).gettext(TIER_NAMES[code]) if code in TIER_NAMES else code,
        revealed=revealed,
    )


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_view(request: Request, customer_id: str) -> Response:
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    ident = _uuid(customer_id)
    if ident is None:
        return _error(request, found, ErrorCode.NOT_FOUND, 404)
    done = request.query_params.get("done") == "1"
    before = request.query_params.get("audit_before", "")
    return await _customer_page(
        request,
        principal,
        csrf,
        ident,
        notice=_text(request, "done") if done else None,
        audit_before=int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None,
    )


async def _action(request: Request, customer_id: str) -> tuple[Principal, str, uuid.UUID, dict[str, str]] | Response:
    """The staff member, CSRF-checked form and customer id of an action, or the page that refuses it."""
    found = await _staff(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    ident = _uuid(customer_id)
    if ident is None:
        return _error(request, found, ErrorCode.NOT_FOUND, 404)
    form = await _form(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _error(request, found, "form_expired", 403)
    return principal, csrf, ident, form


def _done(customer_id: uuid.UUID) -> RedirectResponse:
    return _redirect(f"{PREFIX}/customers/{customer_id}?done=1")


async def _refused(
    request: Request, principal: Principal, csrf: str, customer_id: uuid.UUID, exc: DomainError, code: str | None = None
) -> HTMLResponse:
    """The customer page again, with why an action was refused (``code``, or the error's own)."""
    return await _customer_page(
        request, principal, csrf, customer_id, status_code=exc.http_status, error=_text(request, code or exc.code)
    )


@router.post("/customers/{customer_id}/kyc", response_class=HTMLResponse)
async def kyc_decide(request: Request, customer_id: str) -> Response:
    checked = await _action(request, customer_id)
    if isinstance(checked, Response):
        return checked
    principal, csrf, ident, form = checked
    decision = form.get("decision", "")
    reason = form.get("reason", "")[: MAX_REASON_CHARS * 2]
    try:
        if decision not in {KycDecision.VERIFY, KycDecision.REJECT}:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "decision is verify or reject")
        await _customers(request).decide_kyc(principal, ident, KycDecision(decision), reason, request=_audit(request))
    except DomainError as exc:
        code = "kyc_not_pending" if exc.code == CustomerErrorCode.INVALID_KYC_TRANSITION else exc.code
        return await _refused(request, principal, csrf, ident, exc, code)
    return _done(ident)


async def _account_of(request: Request, principal: Principal, customer_id: uuid.UUID, value: str | None) -> Any:
    """The customer's account named by the form (a balance), or ``not_found``."""
    account_id = _uuid(value)
    if account_id is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no such account")
    balance = await _banking(request).get_account(principal, account_id)
    if balance.account.customer_id != customer_id:
        raise DomainError(ErrorCode.NOT_FOUND, "no such account")
    return balance


@router.post("/customers/{customer_id}/freeze", response_class=HTMLResponse)
async def freeze(request: Request, customer_id: str) -> Response:
    checked = await _action(request, customer_id)
    if isinstance(checked, Response):
        return checked
    principal, csrf, ident, form = checked
    try:
        if not principal.can(Permission.ACCOUNTS_FREEZE):
            raise DomainError(ErrorCode.FORBIDDEN, "not allowed")
        balance = await _account_of(request, principal, ident, form.get("account"))
        await _banking(request).set_frozen(
            principal,
            balance.account.id,
            form.get("frozen") == "1",
            form.get("reason", "")[: MAX_REASON_CHARS * 2],
            client=client_info(request),
        )
    except DomainError as exc:
        code = "reason_required" if exc.details.get("field") == "reason" else exc.code
        return await _refused(request, principal, csrf, ident, exc, code)
    return _done(ident)


@router.post("/customers/{customer_id}/cash", response_class=HTMLResponse)
async def teller_cash(request: Request, customer_id: str) -> Response:
    checked = await _action(request, customer_id)
    if isinstance(checked, Response):
        return checked
    principal, csrf, ident, form = checked
    kinds = {"deposit": PaymentKind.CASH_DEPOSIT, "withdrawal": PaymentKind.CASH_WITHDRAWAL}
    key = form.get("key", "")[:100]
    try:
        if not principal.can(Permission.TELLER_CASH):
            raise DomainError(ErrorCode.FORBIDDEN, "not allowed")
        kind = kinds.get(form.get("kind", ""))
        if kind is None or _uuid(key) is None:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "form_expired")
        balance = await _account_of(request, principal, ident, form.get("account"))
        amount = Money.parse(form.get("amount", "").strip()[:40], balance.account.currency)
        if amount.amount_minor <= 0:
            raise DomainError(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount must be positive")
        if await _limited(request, money_movement_limit) is not None:
            raise DomainError(ErrorCode.RATE_LIMITED, "rate limited")
        await _banking(request).teller_cash(
            principal,
            key,
            CashRequest(
                kind,
                balance.account.id,
                balance.account.branch_code,
                amount.amount_minor,
                amount.currency,
                form.get("reference", "").strip()[:140],
            ),
            client=client_info(request),
        )
    except DomainError as exc:
        code = "form_expired" if exc.message == "form_expired" else exc.code
        return await _refused(request, principal, csrf, ident, exc, code)
    return _done(ident)


@router.post("/customers/{customer_id}/tier", response_class=HTMLResponse)
async def set_tier(request: Request, customer_id: str) -> Response:
    checked = await _action(request, customer_id)
    if isinstance(checked, Response):
        return checked
    principal, csrf, ident, form = checked
    try:
        await _customers(request).set_tier(
            principal,
            ident,
            form.get("tier", "")[:40],
            form.get("reason", "")[: MAX_REASON_CHARS * 2],
            request=_audit(request),
        )
    except DomainError as exc:
        return await _refused(request, principal, csrf, ident, exc)
    return _done(ident)


@router.post("/customers/{customer_id}/reveal", response_class=HTMLResponse)
async def reveal_id_number(request: Request, customer_id: str) -> Response:
    """The full ID number, on this response only (no redirect: it is never in a URL or a later page)."""
    checked = await _action(request, customer_id)
    if isinstance(checked, Response):
        return checked
    principal, csrf, ident, form = checked
    try:
        number = await _customers(request).reveal_id_number(
            principal, ident, form.get("reason", "")[: MAX_REASON_CHARS * 2], request=_audit(request)
        )
    except DomainError as exc:
        return await _refused(request, principal, csrf, ident, exc)
    return await _customer_page(request, principal, csrf, ident, revealed=number)


# -- setting up MFA ------------------------------------------------------------------------------


async def _unenrolled(request: Request) -> tuple[Principal, str] | Response:
    """A signed-in staff member without MFA yet; one who has it goes to the console."""
    found = await _staff_session(request)
    if isinstance(found, Response):
        return found
    if (await _identity(request).mfa_status(found[0])).enrolled:
        return _redirect(PREFIX + "/")
    return found


@router.get("/mfa/setup", response_class=HTMLResponse)
async def mfa_setup_page(request: Request) -> Response:
    found = await _unenrolled(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    return _render(request, "mfa_setup.html", csrf=csrf, principal=principal, step="start")


@router.post("/mfa/setup", response_class=HTMLResponse)
async def mfa_setup_start(request: Request) -> Response:
    """A new authenticator secret: its QR code (inline SVG) and text form, and the code field."""
    found = await _unenrolled(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    form = await _form(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _error(request, found, "form_expired", 403)
    enrolment = await _identity(request).start_mfa_enrolment(principal, client_info(request))
    return _render(
        request,
        "mfa_setup.html",
        csrf=csrf,
        principal=principal,
        step="scan",
        qr=Markup(enrolment.qr_svg),  # noqa: S704 - segno's SVG of our own otpauth URI
        secret=enrolment.secret,
    )


@router.post("/mfa/confirm", response_class=HTMLResponse)
async def mfa_setup_confirm(request: Request) -> Response:
    """Turn MFA on with a first code, and show the recovery codes this once."""
    found = await _unenrolled(request)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    form = await _form(request)

    def again(code: str, status_code: int) -> HTMLResponse:
        return _render(
            request,
            "mfa_setup.html",
            status_code=status_code,
            csrf=csrf,
            principal=principal,
            step="code",
            error=_text(request, code),
        )

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return again("form_expired", 403)
    code = form.get("code", "").strip()[:MAX_CODE]
    if not code:
        return again("field_required", 422)
    if await _limited(request, _mfa_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        codes = await _identity(request).confirm_mfa_enrolment(principal, code, client_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _render(request, "mfa_setup.html", csrf=csrf, principal=principal, step="done", recovery_codes=codes)
