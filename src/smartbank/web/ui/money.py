"""Customer pages about money already moved: a transaction's detail, statement downloads, and the
in-app notification inbox. Built like ``routes.py`` (same sign-in check, layout, CSRF and catalogs).

Ownership is the services' rule: another customer's account or transaction reads as not found.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from smartbank.banking.statements import statement_file
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.inbox import Notification
from smartbank.web.ui.i18n import N_, Formatter
from smartbank.web.ui.routes import (
    PREFIX,
    Customer,
    _account_error,
    _banking,
    _csrf_ok,
    _form,
    _formatter,
    _inbox,
    _message,
    _own_account,
    _redirect,
    _render,
    _settings,
    _uuid,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

NOTICES_PAGE: Final = 20
STATUS_WORDS: Final = {
    "completed": N_("Payment sent"),
    "failed": N_("Payment failed"),
    "submitted": N_("Payment in progress"),
}


# -- a transaction ---------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/transactions/{transaction_id}", response_class=HTMLResponse)
async def transaction_detail(request: Request, account_id: str, transaction_id: str, me: Customer) -> Response:
    principal, csrf = me
    balance = await _own_account(request, principal, csrf, account_id)
    if isinstance(balance, Response):
        return balance
    transfer = _uuid(transaction_id)
    try:
        if transfer is None:
            raise DomainError(ErrorCode.NOT_FOUND, "no such transaction")
        detail = await _banking(request).get_transaction(principal, balance.account.id, transfer)
    except DomainError as exc:
        return _account_error(request, principal, csrf, exc)
    payment = detail.payment
    return _render(
        request,
        "transaction.html",
        csrf=csrf,
        principal=principal,
        balance=balance,
        entry=detail.entry,
        payment=payment,
        status=_formatter(request).gettext(STATUS_WORDS[payment.status.value]) if payment is not None else None,
        failure=_message(_formatter(request), payment.failure_code) if payment and payment.failure_code else None,
        balance_after=detail.balance_after_minor,
    )


# -- statements ------------------------------------------------------------------------------------


def _period(values: dict[str, str]) -> tuple[date, date]:
    """The chosen month, or the chosen days; a ``DomainError`` names what is wrong."""
    if values["period"] == "month":
        try:
            year, month = (int(part) for part in values["month"].split("-"))
            first = date(year, month, 1)
        except ValueError as exc:
            raise DomainError("bad_month", "not a month") from exc
        return first, first.replace(day=calendar.monthrange(year, month)[1])
    try:
        first, last = date.fromisoformat(values["from"]), date.fromisoformat(values["to"])
    except ValueError as exc:
        raise DomainError("bad_date", "not a date") from exc
    return first, last


def _statement_values(request: Request) -> dict[str, str]:
    params = request.query_params
    today = datetime.now(ZoneInfo(_settings(request).banking_timezone)).date()
    last_month = (today.replace(day=1) - date.resolution).replace(day=1)
    values = {
        "period": params.get("period", "month")[:10],
        "month": (params.get("month") or last_month.strftime("%Y-%m"))[:10],
        "from": (params.get("from") or today.replace(day=1).isoformat())[:10],
        "to": (params.get("to") or today.isoformat())[:10],
        "format": params.get("format", "csv")[:10],
    }
    values["period"] = values["period"] if values["period"] in {"month", "range"} else "month"
    values["format"] = values["format"] if values["format"] in {"csv", "pdf"} else "csv"
    return values


@router.get("/accounts/{account_id}/statements", response_class=HTMLResponse)
async def statements_page(request: Request, account_id: str, me: Customer) -> Response:
    """Choose a month or a range of days and CSV or PDF; the form asks ``…/statements/download``."""
    principal, csrf = me
    balance = await _own_account(request, principal, csrf, account_id)
    if isinstance(balance, Response):
        return balance
    return _render(
        request, "statements.html", csrf=csrf, principal=principal, balance=balance, values=_statement_values(request)
    )


@router.get("/accounts/{account_id}/statements/download", response_class=HTMLResponse)
async def download_statement(request: Request, account_id: str, me: Customer) -> Response:
    """The statement file from the banking statement code, or the form again with what is wrong."""
    principal, csrf = me
    balance = await _own_account(request, principal, csrf, account_id)
    if isinstance(balance, Response):
        return balance
    values = _statement_values(request)
    try:
        first, last = _period(values)
        statement = await _banking(request).statement(principal, balance.account.id, first, last)
    except DomainError as exc:
        if exc.code in {ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN}:
            return _account_error(request, principal, csrf, exc)
        return _render(
            request,
            "statements.html",
            status_code=422,
            csrf=csrf,
            principal=principal,
            balance=balance,
            values=values,
            error=_message(_formatter(request), exc.code),
        )
    body, media_type, disposition = statement_file(statement, values["format"])
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


# -- notifications ---------------------------------------------------------------------------------

#: Notice kind → its sentence; a second one for when the first one's detail is missing.
SENTENCES: Final[dict[str, tuple[str, str]]] = {
    "banking.payment_sent": (N_("You sent %(amount)s to %(name)s."), N_("You sent %(amount)s.")),
    "banking.payment_failed": (
        N_("Your payment of %(amount)s to %(name)s failed. No money left your account."),
        N_("Your payment of %(amount)s failed. No money left your account."),
    ),
    "banking.money_received": (
        N_("You received %(amount)s from account %(number)s."),
        N_("You received a cash deposit of %(amount)s at %(branch)s."),
    ),
    "banking.account_opened": (
        N_("Your %(product)s account %(number)s is open."),
        N_("Your new account is open."),
    ),
    "customers.kyc_verified": (N_("Your identity is verified: your accounts are ready to use."),) * 2,
    "customers.kyc_rejected": (N_("We could not verify your identity. See why and send your details again."),) * 2,
    "security.sign_in": (
        N_("New sign-in to your account from %(ip)s."),
        N_("New sign-in to your account."),
    ),
    "security.locked": (
        N_("Too many wrong passwords: your login is locked for a while. If this was not you, call us."),
    )
    * 2,
    "security.password_changed": (N_("Your password was changed. If this was not you, call us."),) * 2,
    "security.password_reset": (
        N_("Your password was reset with a code and every session was signed out. If this was not you, call us."),
    )
    * 2,
    "security.mfa_enabled": (N_("Two-step verification was turned on."),) * 2,
    "security.mfa_disabled": (N_("Two-step verification was turned off. If this was not you, call us."),) * 2,
    "security.session_ended": (N_("One of your sessions was signed out."),) * 2,
    "security.recovery_codes_regenerated": (N_("You made new recovery codes; the old ones no longer work."),) * 2,
}
UNKNOWN_NOTICE: Final = N_("There is news about your account.")
#: Product names in notices (lower case: they sit inside a sentence).
PRODUCT_NAMES: Final[dict[str, str]] = {"current": N_("current"), "savings": N_("savings")}


def describe(fmt: Formatter, notice: Notification) -> tuple[str, str | None]:
    """A notice as a sentence in the reader's language, and the page it links to (or None)."""
    p = notice.params
    amount = ""
    if isinstance(p.get("amount_minor"), int) and isinstance(p.get("currency"), str):
        amount = fmt.money(int(p["amount_minor"] or 0), str(p["currency"]))
    pair = SENTENCES.get(notice.kind)
    if pair is None:
        return fmt.gettext(UNKNOWN_NOTICE), None
    full, short = pair
    link: str | None = None
    if notice.kind in {"banking.payment_sent", "banking.payment_failed"}:
        link = f"{PREFIX}/payments/{p.get('payment_id')}" if p.get("payment_id") else None
        name = p.get("payee_name")
        text = fmt.gettext(full, amount=amount, name=name) if name else fmt.gettext(short, amount=amount)
    elif notice.kind == "banking.money_received":
        if p.get("account_id") and p.get("transaction_id"):
            link = f"{PREFIX}/accounts/{p['account_id']}/transactions/{p['transaction_id']}"
        if p.get("counterparty_number"):
            text = fmt.gettext(full, amount=amount, number=p["counterparty_number"])
        else:
            text = fmt.gettext(short, amount=amount, branch=p.get("branch_name") or "")
    elif notice.kind == "banking.account_opened":
        if p.get("account_id"):
            link = f"{PREFIX}/accounts/{p['account_id']}"
        product = PRODUCT_NAMES.get(str(p.get("product")))
        if product and p.get("number"):
            text = fmt.gettext(full, product=fmt.gettext(product), number=p["number"])
        else:
            text = fmt.gettext(short)
    elif notice.kind == "customers.kyc_rejected":
        link = f"{PREFIX}/profile/kyc"
        text = fmt.gettext(full)
    elif notice.kind == "security.sign_in":
        text = fmt.gettext(full, ip=p["ip"]) if p.get("ip") else fmt.gettext(short)
    else:
        text = fmt.gettext(full)
    return text, link


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    cursor = (request.query_params.get("cursor") or "")[:64] or None
    try:
        page = await _inbox(request).page(principal.id, cursor=cursor, limit=NOTICES_PAGE)
    except DomainError:
        return _redirect(f"{PREFIX}/notifications")
    fmt = _formatter(request)
    notices: list[dict[str, Any]] = []
    for item in page.items:
        sentence, link = describe(fmt, item)
        notices.append({"item": item, "text": sentence, "link": link})
    return _render(
        request,
        "notifications.html",
        csrf=csrf,
        principal=principal,
        notices=notices,
        older=f"?{urlencode({'cursor': page.next_cursor})}" if page.next_cursor else None,
        newest=f"{PREFIX}/notifications" if cursor else None,
    )


@router.post("/notifications/read", response_class=HTMLResponse)
async def mark_all_read(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return _render(request, "error.html", status_code=403, csrf=csrf, principal=principal, code="form_expired")
    up_to = _uuid(form.get("up_to"))
    try:
        await _inbox(request).mark_read(principal.id, up_to)
    except DomainError as exc:
        return _render(request, "error.html", status_code=404, csrf=csrf, principal=principal, code=exc.code)
    return _redirect(f"{PREFIX}/notifications")
