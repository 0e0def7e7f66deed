"""Pages of the customer web app under ``/app``: log in (and MFA), home, account history, pay.

Thin like the JSON routers: read the form, call the same services (``app.state.identity``,
``.customers``, ``.banking``), render a page. Every rule stays in the services; this module only
turns their answers and ``DomainError`` codes into pages and messages.

Forms are plain POSTs that work without JavaScript. A signed-in form carries the session's CSRF
token (the one identity issues with the session cookie) in a hidden field; a form shown before
sign-in (log in, MFA, language) carries a random token that must match the ``sb_form`` cookie
(double submit). Pages under ``/app`` are not part of the JSON API (not in the OpenAPI document).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from smartbank.banking.errors import BankingErrorCode
from smartbank.banking.model import (
    MAX_PAYEE_NAME,
    MAX_REFERENCE,
    MAX_TEXT_QUERY,
    AccountBalance,
    DepositAccount,
    Entry,
    HistoryFilter,
    PaymentRequest,
    day_bounds,
)
from smartbank.banking.service import BankingService
from smartbank.customers.service import CustomerService
from smartbank.identity.api import LOGIN_PER_ACCOUNT, LOGIN_PER_IP, MFA_PER_IP, MFA_PER_PRINCIPAL, WINDOW_S
from smartbank.identity.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    RateLimited,
    client_info,
    money_movement_limit,
    rate_limit,
)
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import Principal, normalise_login
from smartbank.identity.service import IdentityService, LoginResult
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.money import Money
from smartbank.platform.inbox import Inbox
from smartbank.platform.settings import Settings
from smartbank.web.ui.i18n import LANGUAGE_COOKIE, LANGUAGE_NAMES, LANGUAGES, N_, Formatter, negotiate

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
PREFIX: Final = "/app"
#: The double-submit cookie of forms shown before sign-in.
FORM_COOKIE: Final = "sb_form"
MAX_FORM_BYTES: Final = 8192
HISTORY_PAGE: Final = 20
RECENT_ITEMS: Final = 5
MAX_LOGIN: Final = 254
MAX_PASSWORD: Final = 1024
MAX_CODE: Final = 32

router = APIRouter(prefix=PREFIX, include_in_schema=False)

templates: Final = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# The same budgets (scope names and numbers) as the JSON login and MFA routes: one budget per caller.
_login_limit = rate_limit("auth.login", per_ip=LOGIN_PER_IP, per_principal=LOGIN_PER_IP, window_s=WINDOW_S)
_mfa_limit = rate_limit("auth.mfa", per_ip=MFA_PER_IP, per_principal=MFA_PER_PRINCIPAL, window_s=WINDOW_S)

#: Error codes → the message a customer reads (translated in the template's language).
MESSAGES: Final[dict[str, str]] = {
    IdentityErrorCode.INVALID_CREDENTIALS: N_("The login or password is wrong."),
    IdentityErrorCode.INVALID_MFA_CODE: N_("That code is wrong, already used or expired. Try the next code."),
    IdentityErrorCode.MFA_NOT_ENROLLED: N_("Set up an authenticator app first: this payment needs a code from it."),
    IdentityErrorCode.ACCOUNT_LOCKED: N_("Too many wrong tries: this login is locked for a while. Try again later."),
    ErrorCode.RATE_LIMITED: N_("Too many requests. Wait a minute and try again."),
    ErrorCode.NOT_FOUND: N_("We could not find that."),
    ErrorCode.INVALID_AMOUNT: N_("Enter an amount such as 120.50."),
    ErrorCode.TOO_MANY_DECIMALS: N_("That amount has too many decimal places."),
    ErrorCode.AMOUNT_TOO_LARGE: N_("That amount is too large."),
    ErrorCode.AMOUNT_MUST_BE_POSITIVE: N_("Enter an amount above zero."),
    ErrorCode.CURRENCY_MISMATCH: N_("The payee's account is in another currency."),
    ErrorCode.VALIDATION_ERROR: N_("Check what you entered and try again."),
    BankingErrorCode.INVALID_DATE_RANGE: N_(
        "Choose a period that ends on or after the day it starts, and covers at most 366 days."
    ),
    BankingErrorCode.STATEMENT_TOO_LARGE: N_(
        "That period has too many transactions for one statement; choose a shorter one."
    ),
    "bad_date": N_("Enter dates as year-month-day, such as 2026-01-31."),
    "bad_month": N_("Choose a month, such as 2026-01."),
    BankingErrorCode.INSUFFICIENT_FUNDS: N_("Not enough money in this account for this payment."),
    BankingErrorCode.PER_PAYMENT_LIMIT_EXCEEDED: N_("This amount is above your limit for one payment."),
    BankingErrorCode.DAILY_LIMIT_EXCEEDED: N_("This payment would take you over your daily payment limit."),
    BankingErrorCode.ACCOUNT_FROZEN: N_(
        "This account is frozen: payments from or to it are stopped. Call us to find out why."
    ),
    BankingErrorCode.ACCOUNT_CLOSED: N_("This account is closed."),
    BankingErrorCode.KYC_NOT_VERIFIED: N_("We need to verify your identity before you can pay."),
    BankingErrorCode.RISK_DECLINED: N_("We could not make this payment. Call us if you think this is wrong."),
    BankingErrorCode.ACCOUNTS_MUST_BE_DIFFERENT: N_("Choose two different accounts."),
    BankingErrorCode.INVALID_ACCOUNT_NUMBER: N_("An account number is 16 digits; check it and try again."),
    BankingErrorCode.UNKNOWN_ACCOUNT_NUMBER: N_("There is no account with that number at this bank."),
    BankingErrorCode.PAYEE_ALREADY_EXISTS: N_("You already have a payee with that account."),
    BankingErrorCode.TOO_MANY_PAYEES: N_("You have too many payees; remove one first."),
    BankingErrorCode.PAYMENT_FAILED: N_("The payment failed. No money has left your account."),
    BankingErrorCode.IDEMPOTENCY_KEY_REUSED: N_("This form was already sent. Start the payment again."),
    "staff": N_("This app is for customers. Staff sign in to the staff console."),
    "form_expired": N_("This form has expired. Please try again."),
    "field_required": N_("Fill in every field."),
    "choose_payee": N_("Choose a payee."),
}


# -- request helpers -----------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _identity(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


def _banking(request: Request) -> BankingService:
    service: BankingService = request.app.state.banking
    return service


def _customers(request: Request) -> CustomerService:
    service: CustomerService = request.app.state.customers
    return service


def _inbox(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


def _formatter(request: Request) -> Formatter:
    tag = negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"))
    return Formatter(tag, _settings(request).banking_timezone)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form (first value of each field); oversized or undecodable bodies read as empty."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items() if values}


async def _session(request: Request) -> tuple[Principal, str] | None:
    """(principal, CSRF token) of the session cookie, when it is a live session. Bearer tokens are not read."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    return await _identity(request).authenticate_session(cookie)


def _csrf_ok(presented: str | None, expected: str | None) -> bool:
    return bool(presented and expected) and hmac.compare_digest(str(presented).encode(), str(expected).encode())


def _local_path(value: str | None) -> str:
    """A same-site path to go back to (never another host)."""
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/"


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _message(fmt: Formatter, code: str) -> str:
    return fmt.gettext(MESSAGES.get(code, N_("Something went wrong. Please try again.")))


# -- rendering -----------------------------------------------------------------------------------


def _render(
    request: Request,
    name: str,
    *,
    status_code: int = 200,
    csrf: str | None = None,
    principal: Principal | None = None,
    prefix: str = PREFIX,
    **context: Any,
) -> HTMLResponse:
    fmt = _formatter(request)
    if "code" in context:
        context["message"] = _message(fmt, str(context["code"]))
    form_token = request.cookies.get(FORM_COOKIE)
    new_form_token = None
    if csrf is None and (form_token is None or len(form_token) != 43):
        form_token = new_form_token = secrets.token_urlsafe(32)
    html = templates.get_template(name).render(
        _=fmt.gettext,
        fmt=fmt,
        lang=fmt.tag,
        languages=LANGUAGE_NAMES,
        csrf=csrf if csrf is not None else form_token,
        signed_in=principal is not None,
        unread=getattr(request.state, "unread", None),
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        prefix=prefix,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = fmt.tag
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    if new_form_token is not None:
        response.set_cookie(FORM_COOKIE, new_form_token, path=prefix, secure=True, httponly=True, samesite="strict")
    return response


async def _customer(request: Request) -> tuple[Principal, str] | Response:
    """The signed-in customer and the session's CSRF token; else the login page, or a refusal for staff."""
    found = await _session(request)
    if found is None:
        return _to_login(request)
    if not found[0].is_customer:
        return _render(request, "error.html", status_code=403, csrf=found[1], principal=found[0], code="staff")
    request.state.unread = await _inbox(request).unread_count(found[0].id)  # the header's badge
    return found


class SignedIn(NamedTuple):
    """The customer a page is for, and their session's CSRF token."""

    principal: Principal
    csrf: str


class PageRefused(Exception):
    """Raised by :func:`signed_in_customer` with the page to answer instead of the one asked for."""

    def __init__(self, response: Response) -> None:
        super().__init__("page refused")
        self.response = response


async def signed_in_customer(request: Request) -> SignedIn:
    """The dependency of every customer page: anyone else gets the login page, or a refusal for staff
    (``PageRefused``, answered by the app's handler), before the page's code runs."""
    found = await _customer(request)
    if isinstance(found, Response):
        raise PageRefused(found)
    return SignedIn(*found)


async def page_refused(request: Request, exc: Exception) -> Response:
    """The app's handler of :class:`PageRefused`."""
    assert isinstance(exc, PageRefused)
    return exc.response


#: A customer page's parameter: ``me: Customer``.
Customer = Annotated[SignedIn, Depends(signed_in_customer)]


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _to_login(request: Request) -> RedirectResponse:
    return _redirect(f"{PREFIX}/login?" + urlencode({"next": request.url.path}))


def _set_session(response: Response, result: LoginResult) -> None:
    assert result.session_token is not None and result.csrf_token is not None
    for name, value, http_only in (
        (SESSION_COOKIE, result.session_token, True),
        (CSRF_COOKIE, result.csrf_token, False),
    ):
        response.set_cookie(
            name, value, max_age=result.session_expires_in, path="/", secure=True, httponly=http_only, samesite="lax"
        )


def _clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, httponly=False, samesite="lax")


async def _limited(request: Request, limit: Any) -> int | None:
    """Seconds to wait when ``limit`` (a rate-limit dependency) refuses this request, else None."""
    try:
        await limit(request)
    except RateLimited as exc:
        wait = exc.details["retry_after_s"]
        return wait if isinstance(wait, int) else WINDOW_S
    return None


# -- signing in and out --------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def app_root() -> RedirectResponse:
    return _redirect(PREFIX + "/")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    if await _session(request) is not None:
        return _redirect(PREFIX + "/")
    return _render(request, "login.html", next=_local_path(request.query_params.get("next")))


async def password_login(
    request: Request, form: dict[str, str], login: str, again: Callable[[str, int], HTMLResponse]
) -> LoginResult | HTMLResponse:
    """The sign-in form's checks, shared by the customer app and the staff console: the form's
    CSRF cookie, the fields, the per-address and per-login rate limits, then the password. Answers
    the identity service's result, or the page ``again`` renders for the first refusal."""
    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    password = form.get("password", "")
    if not login or not password or len(password) > MAX_PASSWORD:
        return again(IdentityErrorCode.INVALID_CREDENTIALS if password else "field_required", 422)
    identity = _identity(request)
    if await _limited(request, _login_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    limited = await identity.limiter.hit(
        "auth.login.account", [(f"login:{normalise_login(login)}", LOGIN_PER_ACCOUNT)], WINDOW_S
    )
    if limited is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        result: LoginResult = await identity.login(login, password, client_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return result


async def mfa_login(
    request: Request,
    form: dict[str, str],
    next_path: str,
    render: Callable[..., HTMLResponse],
    say: Callable[[str], str],
) -> LoginResult | HTMLResponse:
    """The login's second step, shared like :func:`password_login`: the form's CSRF cookie, the code,
    the rate limit, then the challenge. A refusal is the code page again (``render`` of the app or the
    console, messages by ``say``); an expired or unknown challenge, the password page: start again."""
    challenge = form.get("challenge", "")[:2000]

    def again(code: str, status_code: int) -> HTMLResponse:
        return render(
            request, "mfa.html", status_code=status_code, error=say(code), challenge=challenge, next=next_path
        )

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    code = form.get("code", "").strip()[:MAX_CODE]
    if not code or not challenge:
        return again("field_required", 422)
    if await _limited(request, _mfa_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        result: LoginResult = await _identity(request).verify_mfa_challenge(challenge, code, client_info(request))
    except DomainError as exc:
        if exc.code == IdentityErrorCode.INVALID_MFA_CODE:
            return again(exc.code, exc.http_status)
        return render(request, "login.html", status_code=exc.http_status, error=say("form_expired"))
    return result


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    form = await _form(request)
    fmt = _formatter(request)
    next_path = _local_path(form.get("next"))
    login = form.get("login", "").strip()[:MAX_LOGIN]

    def again(code: str, status_code: int) -> HTMLResponse:
        return _render(
            request, "login.html", status_code=status_code, error=_message(fmt, code), login=login, next=next_path
        )

    result = await password_login(request, form, login, again)
    if isinstance(result, Response):
        return result
    if result.status == "mfa_required":
        return _render(request, "mfa.html", challenge=result.mfa_challenge, next=next_path)
    response = _redirect(next_path)
    _set_session(response, result)
    return response


@router.post("/login/mfa", response_class=HTMLResponse)
async def login_mfa(request: Request) -> Response:
    form = await _form(request)
    fmt = _formatter(request)
    next_path = _local_path(form.get("next"))
    result = await mfa_login(request, form, next_path, _render, lambda code: _message(fmt, code))
    if isinstance(result, Response):
        return result
    response = _redirect(next_path)
    _set_session(response, result)
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    form = await _form(request)
    found = await _session(request)
    if found is not None:
        principal, csrf = found
        if not _csrf_ok(form.get("csrf_token"), csrf):
            return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")
        await _identity(request).logout(principal, client_info(request))
    response = _redirect(PREFIX + "/login")
    _clear_session(response)
    return response


@router.post("/language", response_class=HTMLResponse)
async def choose_language(request: Request) -> Response:
    """Keep a language in a cookie (a form: works before and after sign-in)."""
    form = await _form(request)
    found = await _session(request)
    expected = found[1] if found is not None else request.cookies.get(FORM_COOKIE)
    tag = form.get("language", "")
    if not _csrf_ok(form.get("csrf_token"), expected) or tag not in LANGUAGES:
        return _redirect(_local_path(form.get("next")))
    response = _redirect(_local_path(form.get("next")))
    response.set_cookie(LANGUAGE_COOKIE, tag, max_age=365 * 86400, path="/", secure=True, samesite="lax")
    return response


# -- home and accounts ---------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, me: Customer) -> Response:
    principal, csrf = me
    banking = _banking(request)
    balances = await banking.list_account_balances(principal, principal.id)
    recent: list[tuple[Entry, DepositAccount]] = []
    for balance in balances[:3]:
        page = await banking.history(principal, balance.account.id, limit=RECENT_ITEMS)
        recent.extend((entry, balance.account) for entry in page.items)
    recent.sort(key=lambda pair: (pair[0].posted_at, pair[0].seq), reverse=True)
    profile = await _customers(request).get_me(principal)
    return _render(
        request,
        "home.html",
        csrf=csrf,
        principal=principal,
        balances=balances,
        recent=recent[:RECENT_ITEMS],
        profile=profile,
    )


#: The history filters a page keeps in its query string, in the order the form shows them.
FILTER_FIELDS: Final = ("from", "to", "min", "max", "direction", "q", "ref")


def _history_filter(values: dict[str, str], currency: str, timezone: str) -> HistoryFilter:
    """The page's filter fields as a :class:`HistoryFilter`; a ``DomainError`` names a bad one."""
    days: dict[str, date] = {}
    for name in ("from", "to"):
        if values[name]:
            try:
                days[name] = date.fromisoformat(values[name])
            except ValueError as exc:
                raise DomainError("bad_date", "not a date", field=name) from exc
    since = day_bounds(days["from"], days["from"], timezone)[0] if "from" in days else None
    until = day_bounds(days["to"], days["to"], timezone)[1] if "to" in days else None
    amounts: dict[str, int] = {}
    for name in ("min", "max"):
        if values[name]:
            amount = Money.parse(values[name], currency)
            if amount.amount_minor < 0:
                raise DomainError(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amounts are not negative", field=name)
            amounts[name] = amount.amount_minor
    where = HistoryFilter(
        since=since,
        until=until,
        min_amount_minor=amounts.get("min"),
        max_amount_minor=amounts.get("max"),
        counterparty=values["q"] or None,
        text=values["ref"] or None,
        direction="in" if values["direction"] == "in" else "out" if values["direction"] == "out" else None,
    )
    where.validate()
    return where


def _account_error(request: Request, principal: Principal, csrf: str, exc: DomainError) -> HTMLResponse:
    """Another customer's account (or none) reads as not found; other refusals keep their status."""
    status = 404 if exc.code in {ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN} else exc.http_status
    return _render(request, "error.html", status_code=status, csrf=csrf, principal=principal, code=exc.code)


async def _own_account(
    request: Request, principal: Principal, csrf: str, account_id: str
) -> AccountBalance | HTMLResponse:
    """The customer's account with its balances (the banking access rule), or the not-found page."""
    ident = _uuid(account_id)
    try:
        if ident is None:
            raise DomainError(ErrorCode.NOT_FOUND, "no such account")
        return await _banking(request).get_account(principal, ident)
    except DomainError as exc:
        return _account_error(request, principal, csrf, exc)


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
async def account_detail(request: Request, account_id: str, me: Customer) -> Response:
    """Balances and history, searchable and filtered (date range, amount range, money in or out,
    payee or account number, reference), 20 a page; the filters stay in every link."""
    principal, csrf = me
    params = request.query_params
    values = {name: (params.get(name) or "").strip()[:MAX_TEXT_QUERY] for name in FILTER_FIELDS}
    if values["direction"] not in {"in", "out"}:
        values["direction"] = ""
    cursor = (params.get("cursor") or "")[:64] or None
    newer = (params.get("newer") or "")[:64] or None
    balance = await _own_account(request, principal, csrf, account_id)
    if isinstance(balance, Response):
        return balance
    search = {name: value for name, value in values.items() if value}
    context: dict[str, Any] = {"balance": balance, "values": values, "filtered": bool(search)}
    try:
        where = _history_filter(values, balance.account.currency, _settings(request).banking_timezone)
    except DomainError as exc:
        fmt = _formatter(request)
        return _render(
            request,
            "account.html",
            status_code=422,
            csrf=csrf,
            principal=principal,
            entries=[],
            error=_message(fmt, exc.code),
            **context,
        )
    try:
        page = await _banking(request).history(
            principal, balance.account.id, where, cursor=cursor, newer=newer, limit=HISTORY_PAGE
        )
    except DomainError as exc:
        if exc.code == BankingErrorCode.INVALID_CURSOR:
            return _redirect(f"{PREFIX}/accounts/{account_id}?{urlencode(search)}")
        return _account_error(request, principal, csrf, exc)
    older = f"?{urlencode({**search, 'cursor': page.next_cursor})}" if page.next_cursor else None
    newer_link = f"?{urlencode({**search, 'newer': page.prev_cursor})}" if page.prev_cursor else None
    return _render(
        request,
        "account.html",
        csrf=csrf,
        principal=principal,
        entries=page.items,
        older=older,
        newer=newer_link,
        clear=f"{PREFIX}/accounts/{account_id}",
        **context,
    )


# -- paying --------------------------------------------------------------------------------------


async def _pay_context(request: Request, principal: Principal) -> dict[str, Any]:
    banking = _banking(request)
    return {
        "balances": await banking.list_account_balances(principal, principal.id),
        "payees": await banking.list_payees(principal, principal.id),
    }


@router.get("/pay", response_class=HTMLResponse)
async def pay_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    context = await _pay_context(request, principal)
    params = request.query_params
    values = {"from": params.get("from", ""), "payee": params.get("payee", ""), "amount": "", "reference": ""}
    added = params.get("added") == "1" and any(str(p.id) == values["payee"] for p in context["payees"])
    notice = _formatter(request).gettext(N_("Payee added. You can pay them now.")) if added else None
    return _render(request, "pay.html", csrf=csrf, principal=principal, values=values, notice=notice, **context)


def _payment_values(form: dict[str, str]) -> dict[str, str]:
    return {
        "from": form.get("from", "")[:64],
        "payee": form.get("payee", "")[:64],
        "amount": form.get("amount", "").strip()[:40],
        "reference": form.get("reference", "").strip()[:MAX_REFERENCE],
    }


@router.post("/pay/review", response_class=HTMLResponse)
async def pay_review(request: Request, me: Customer) -> Response:
    """Check the form (the service checks it again on confirm) and show what will be paid."""
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    values = _payment_values(form)
    context = await _pay_context(request, principal)

    def again(code: str, status_code: int = 422) -> HTMLResponse:
        return _render(
            request,
            "pay.html",
            status_code=status_code,
            csrf=csrf,
            principal=principal,
            values=values,
            error=_message(fmt, code),
            **context,
        )

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return again("form_expired", 403)
    account = next((b for b in context["balances"] if str(b.account.id) == values["from"]), None)
    payee = next((p for p in context["payees"] if str(p.id) == values["payee"]), None)
    if account is None or not values["amount"]:
        return again("field_required")
    if payee is None:
        return again("choose_payee")
    try:
        amount = Money.parse(values["amount"], account.account.currency)
    except DomainError as exc:
        return again(exc.code)
    if amount.amount_minor <= 0:
        return again(ErrorCode.AMOUNT_MUST_BE_POSITIVE)
    return _render(
        request,
        "review.html",
        csrf=csrf,
        principal=principal,
        values=values,
        account=account,
        payee=payee,
        amount=amount,
        key=str(uuid.uuid4()),
    )


async def _submit(
    request: Request, principal: Principal, csrf: str, form: dict[str, str], *, after_step_up: bool = False
) -> Response:
    """Submit the reviewed payment with its idempotency key; map refusals to pages."""
    fmt = _formatter(request)
    values = _payment_values(form)
    key = form.get("key", "")[:100]
    banking = _banking(request)
    from_id, payee_id = _uuid(values["from"]), _uuid(values["payee"])

    async def back_to_form(code: str, status_code: int) -> HTMLResponse:
        context = await _pay_context(request, principal)
        return _render(
            request,
            "pay.html",
            status_code=status_code,
            csrf=csrf,
            principal=principal,
            values=values,
            error=_message(fmt, code),
            **context,
        )

    if from_id is None or payee_id is None or _uuid(key) is None:
        return await back_to_form("form_expired", 422)
    wait = await _limited(request, money_movement_limit)
    if wait is not None:
        return await back_to_form(ErrorCode.RATE_LIMITED, 429)
    try:
        account = await banking.get_account(principal, from_id)
        amount = Money.parse(values["amount"], account.account.currency)
        payment = await banking.submit_payment(
            principal,
            key,
            PaymentRequest(
                from_account_id=from_id,
                amount_minor=amount.amount_minor,
                currency=amount.currency,
                to_payee_id=payee_id,
                reference=values["reference"],
            ),
            client=client_info(request),
        )
    except DomainError as exc:
        if exc.code == BankingErrorCode.STEP_UP_REQUIRED and not after_step_up:
            return await _step_up_page(request, principal, csrf, values, key, reason=exc.details.get("reason"))
        return await back_to_form(exc.code, exc.http_status)
    return _redirect(f"{PREFIX}/payments/{payment.id}")


async def _step_up_page(
    request: Request,
    principal: Principal,
    csrf: str,
    values: dict[str, str],
    key: str,
    *,
    reason: object = None,
    error: str | None = None,
    status_code: int = 403,
) -> HTMLResponse:
    """Ask for a code, showing what it will pay (the payee and amount as the review page showed them)."""
    banking = _banking(request)
    payees = await banking.list_payees(principal, principal.id)
    payee = next((p for p in payees if str(p.id) == values["payee"]), None)
    account = next(
        (
            b
            for b in await banking.list_account_balances(principal, principal.id)
            if str(b.account.id) == values["from"]
        ),
        None,
    )
    amount: Money | None = None
    if account is not None:
        try:
            amount = Money.parse(values["amount"], account.account.currency)
        except DomainError:
            amount = None
    return _render(
        request,
        "step_up.html",
        status_code=status_code,
        csrf=csrf,
        principal=principal,
        values=values,
        key=key,
        reason=reason,
        payee=payee,
        amount=amount,
        error=error,
    )


@router.post("/pay/confirm", response_class=HTMLResponse)
async def pay_confirm(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")
    return await _submit(request, principal, csrf, form)


@router.post("/pay/step-up", response_class=HTMLResponse)
async def pay_step_up(request: Request, me: Customer) -> Response:
    """Check a TOTP (or recovery) code for this session, then submit the same payment again."""
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    values = _payment_values(form)
    key = form.get("key", "")[:100]
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")

    async def again(code: str, status_code: int) -> HTMLResponse:
        return await _step_up_page(
            request, principal, csrf, values, key, error=_message(fmt, code), status_code=status_code
        )

    code = form.get("code", "").strip()[:MAX_CODE]
    if not code:
        return await again("field_required", 422)
    if await _limited(request, _mfa_limit) is not None:
        return await again(ErrorCode.RATE_LIMITED, 429)
    try:
        await _identity(request).step_up(principal, code, client_info(request))
    except DomainError as exc:
        if exc.code == IdentityErrorCode.MFA_NOT_ENROLLED:
            return _render(
                request, "error.html", status_code=exc.http_status, csrf=csrf, principal=principal, code=exc.code
            )
        return await again(exc.code, exc.http_status)
    refreshed = await _session(request)  # the session now carries the fresh MFA time
    if refreshed is None:
        return _to_login(request)
    return await _submit(request, refreshed[0], csrf, form, after_step_up=True)


@router.get("/payments/{payment_id}", response_class=HTMLResponse)
async def payment_result(request: Request, payment_id: str, me: Customer) -> Response:
    principal, csrf = me
    banking = _banking(request)
    ident = _uuid(payment_id)
    try:
        if ident is None:
            raise DomainError(ErrorCode.NOT_FOUND, "no such payment")
        payment = await banking.get_payment(principal, ident)
    except DomainError as exc:
        return _render(request, "error.html", status_code=404, csrf=csrf, principal=principal, code=exc.code)
    payees = {p.id: p for p in await banking.list_payees(principal, principal.id)}
    return _render(
        request,
        "result.html",
        csrf=csrf,
        principal=principal,
        payment=payment,
        payee=payees.get(payment.payee_id) if payment.payee_id else None,
        failure=_message(_formatter(request), payment.failure_code) if payment.failure_code else None,
    )


# -- payees --------------------------------------------------------------------------------------


@router.get("/payees/new", response_class=HTMLResponse)
async def new_payee_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    return _render(request, "payee.html", csrf=csrf, principal=principal, values={"name": "", "account_number": ""})


@router.post("/payees", response_class=HTMLResponse)
async def add_payee(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    values = {
        "name": form.get("name", "").strip()[:MAX_PAYEE_NAME],
        "account_number": form.get("account_number", "").strip()[:40],
    }

    def again(code: str, status_code: int) -> HTMLResponse:
        return _render(
            request,
            "payee.html",
            status_code=status_code,
            csrf=csrf,
            principal=principal,
            values=values,
            error=_message(fmt, code),
        )

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return again("form_expired", 403)
    if not values["name"] or not values["account_number"]:
        return again("field_required", 422)
    try:
        payee = await _banking(request).add_payee(
            principal, values["name"], values["account_number"], client=client_info(request)
        )
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _redirect(f"{PREFIX}/pay?" + urlencode({"payee": str(payee.id), "added": "1"}))
