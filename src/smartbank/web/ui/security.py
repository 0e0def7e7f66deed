"""The security centre: sessions and devices, two-step verification (MFA), the password, and recent
security events read from the audit log, each told as a sentence in the page's language.

Thin, like ``routes.py``: every rule (ownership of a session, step-up before changing MFA, password
rules) is the identity service's; a refusal comes back as a message on the same page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from smartbank.identity.deps import client_info
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import Principal
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform import audit
from smartbank.platform.audit import AuditRecord, Outcome
from smartbank.platform.db import Database
from smartbank.web.ui.i18n import N_, Formatter
from smartbank.web.ui.onboarding import say
from smartbank.web.ui.routes import (
    MAX_CODE,
    MAX_PASSWORD,
    PREFIX,
    Customer,
    SignedIn,
    _csrf_ok,
    _form,
    _formatter,
    _identity,
    _limited,
    _login_limit,
    _mfa_limit,
    _redirect,
    _render,
    _to_login,
    _uuid,
)

router = APIRouter(prefix=PREFIX + "/security", include_in_schema=False)

EVENTS_PAGE: Final = 10
MAX_DEVICE_LABEL: Final = 60
_SECRET: Final = re.compile(r"^[A-Z2-7]{16,64}$")

#: (action, outcome) → the sentence a customer reads; (action, None) serves every outcome.
EVENT_SENTENCES: Final[dict[tuple[str, Outcome | None], str]] = {
    ("identity.login", Outcome.SUCCESS): N_("Signed in"),
    ("identity.login", Outcome.FAILURE): N_("Wrong password"),
    ("identity.login", Outcome.DENIED): N_("Sign-in refused while locked"),
    ("identity.lockout", None): N_("Locked after too many wrong passwords"),
    ("identity.mfa_verify", Outcome.SUCCESS): N_("Two-step code accepted"),
    ("identity.mfa_verify", Outcome.FAILURE): N_("Wrong two-step code"),
    ("identity.logout", None): N_("Signed out"),
    ("identity.session_ended", None): N_("A session was ended"),
    ("identity.password_changed", Outcome.SUCCESS): N_("Password changed"),
    ("identity.password_changed", Outcome.FAILURE): N_("Wrong current password when changing the password"),
    ("identity.password_reset", None): N_("Password reset with a code"),
    ("identity.mfa_enrolment_started", None): N_("Two-step verification set-up started"),
    ("identity.mfa_enrolled", Outcome.SUCCESS): N_("Two-step verification turned on"),
    ("identity.mfa_enrolled", Outcome.FAILURE): N_("Wrong code while turning on two-step verification"),
    ("identity.mfa_disabled", None): N_("Two-step verification turned off"),
    ("identity.recovery_codes_regenerated", None): N_("New recovery codes made"),
    ("identity.step_up", Outcome.SUCCESS): N_("Code confirmed for a sensitive action"),
    ("identity.step_up", Outcome.FAILURE): N_("Wrong code for a sensitive action"),
    ("identity.refresh_token_reused", None): N_("A reused app sign-in was refused and ended"),
    ("identity.principal_created", None): N_("Login created"),
    ("customers.registered", None): N_("Signed up"),
    ("customers.kyc_submitted", None): N_("Identity details sent for checking"),
    ("customers.kyc_verified", None): N_("Identity verified"),
    ("customers.kyc_rejected", None): N_("Identity details not accepted"),
    ("customers.address_changed", None): N_("Address changed"),
    ("customers.contact_changed", None): N_("Phone number or e-mail changed"),
    ("banking.payee_added", None): N_("Payee added"),
    ("banking.payee_deleted", None): N_("Payee removed"),
}
OTHER_EVENT: Final = N_("Other account activity")


@dataclass(frozen=True, slots=True)
class EventLine:
    sentence: str
    occurred_at: datetime
    ip: str | None
    device: str | None
    failed: bool


def event_sentence(fmt: Formatter, record: AuditRecord) -> str:
    sentence = EVENT_SENTENCES.get((record.action, record.outcome)) or EVENT_SENTENCES.get((record.action, None))
    return fmt.gettext(sentence or OTHER_EVENT)


_BROWSERS: Final = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def device_label(user_agent: str | None) -> str | None:
    """``Chrome on Linux`` from a user agent; the agent itself, shortened, when it names neither."""
    if not user_agent:
        return None
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} · {system}"
    return user_agent[:MAX_DEVICE_LABEL]


def _db(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


async def _events(request: Request, principal: Principal, before: int | None) -> tuple[list[EventLine], int | None]:
    """One page of the customer's security events, newest first, and the ``before`` of the next page."""
    fmt = _formatter(request)
    ident = str(principal.id)
    records = await audit.recent(
        _db(request),
        actor_id=principal.id,
        subjects=[("principal", ident), ("customer", ident)],
        before_seq=before,
        limit=EVENTS_PAGE + 1,
    )
    lines = [
        EventLine(
            sentence=event_sentence(fmt, r),
            occurred_at=r.occurred_at,
            ip=r.ip,
            device=device_label(r.device),
            failed=r.outcome is not Outcome.SUCCESS,
        )
        for r in records[:EVENTS_PAGE]
    ]
    older = records[EVENTS_PAGE - 1].seq if len(records) > EVENTS_PAGE else None
    return lines, older


async def _centre(
    request: Request,
    principal: Principal,
    csrf: str,
    *,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    identity = _identity(request)
    raw = request.query_params.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 19 else None
    events, older = await _events(request, principal, before)
    sessions = await identity.list_sessions(principal)
    return _render(
        request,
        "security.html",
        status_code=status_code,
        csrf=csrf,
        principal=principal,
        sessions=sessions,
        current=principal.session_id,
        device_label=device_label,
        mfa=await identity.mfa_status(principal),
        events=events,
        older=f"?before={older}" if older is not None else None,
        newest="?" if before is not None else None,
        error=error,
        notice=notice,
    )


@router.get("", response_class=HTMLResponse)
async def security_centre(request: Request, me: Customer) -> Response:
    principal, csrf = me
    notice = (
        N_("Your password is changed. Your other sessions have ended.") if "changed" in request.query_params else None
    )
    return await _centre(request, principal, csrf, notice=_formatter(request).gettext(notice) if notice else None)


@router.post("/sessions/{session_id}/end", response_class=HTMLResponse)
async def end_session(request: Request, session_id: str, me: Customer) -> Response:
    """End one of the customer's own sessions (anyone else's reads as already ended: 404)."""
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return await _centre(request, principal, csrf, error=say(fmt, "form_expired"), status_code=403)
    ident = _uuid(session_id)
    try:
        if ident is None:
            raise DomainError(IdentityErrorCode.SESSION_NOT_FOUND, "no such session")
        await _identity(request).end_session(principal, ident, client_info(request))
    except DomainError as exc:
        return await _centre(request, principal, csrf, error=say(fmt, exc.code), status_code=exc.http_status)
    if ident == principal.session_id:
        return _to_login(request)
    return _redirect(PREFIX + "/security")


@router.post("/password", response_class=HTMLResponse)
async def change_password(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    current, new = form.get("current_password", ""), form.get("new_password", "")

    async def again(code: str, status_code: int = 422) -> HTMLResponse:
        return await _centre(request, principal, csrf, error=say(fmt, code), status_code=status_code)

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return await again("form_expired", 403)
    if not current or not new:
        return await again("field_required")
    if new != form.get("new_password_again", ""):
        return await again("passwords_differ")
    if len(new) > MAX_PASSWORD or len(current) > MAX_PASSWORD:
        return await again(IdentityErrorCode.WEAK_PASSWORD)
    if await _limited(request, _login_limit) is not None:
        return await again(ErrorCode.RATE_LIMITED, 429)
    try:
        await _identity(request).change_password(principal, current, new, client_info(request))
    except DomainError as exc:
        return await again(exc.code, exc.http_status)
    return _redirect(PREFIX + "/security?changed=1")


# -- two-step verification -----------------------------------------------------------------------


@router.get("/mfa", response_class=HTMLResponse)
async def mfa_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    return await _mfa_render(request, principal, csrf)


async def _mfa_render(
    request: Request, principal: Principal, csrf: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    status = await _identity(request).mfa_status(principal)
    return _render(
        request, "mfa_manage.html", status_code=status_code, csrf=csrf, principal=principal, mfa=status, error=error
    )


@router.post("/mfa/start", response_class=HTMLResponse)
async def mfa_start(request: Request, me: Customer) -> Response:
    """A new secret: its QR code (segno SVG, inline) and the secret to type, then a code to confirm."""
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    if not _csrf_ok(form.get("csrf_token"), csrf):
        return await _mfa_render(request, principal, csrf, error=say(fmt, "form_expired"), status_code=403)
    try:
        enrolment = await _identity(request).start_mfa_enrolment(principal, client_info(request))
    except DomainError as exc:
        return await _mfa_render(request, principal, csrf, error=say(fmt, exc.code), status_code=exc.http_status)
    return _render(
        request,
        "mfa_enrol.html",
        csrf=csrf,
        principal=principal,
        qr=Markup(enrolment.qr_svg),  # noqa: S704 - segno's SVG of our own otpauth URI, no user input
        secret=enrolment.secret,
        grouped=" ".join(enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4)),
    )


@router.post("/mfa/confirm", response_class=HTMLResponse)
async def mfa_confirm(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    secret = form.get("secret", "")
    secret = secret if _SECRET.match(secret) else ""

    def again(code: str, status_code: int) -> HTMLResponse:
        return _render(
            request,
            "mfa_enrol.html",
            status_code=status_code,
            csrf=csrf,
            principal=principal,
            qr=None,
            secret=secret,
            grouped=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            error=say(fmt, code),
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
        if exc.code == IdentityErrorCode.MFA_ALREADY_ENROLLED:
            return _redirect(PREFIX + "/security/mfa")
        return again(exc.code, exc.http_status)
    return _render(request, "mfa_codes.html", csrf=csrf, principal=principal, codes=codes, first=True)


async def _with_code(request: Request, me: SignedIn) -> tuple[Principal, str] | Response:
    """The signed-in customer after a fresh code (step-up), or the MFA page with the refusal."""
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)

    async def again(code: str, status_code: int) -> Response:
        return await _mfa_render(request, principal, csrf, error=say(fmt, code), status_code=status_code)

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return await again("form_expired", 403)
    code = form.get("code", "").strip()[:MAX_CODE]
    if not code:
        return await again("field_required", 422)
    if await _limited(request, _mfa_limit) is not None:
        return await again(ErrorCode.RATE_LIMITED, 429)
    try:
        verified = await _identity(request).step_up(principal, code, client_info(request))
    except DomainError as exc:
        return await again(exc.code, exc.http_status)
    return replace(principal, mfa_verified_at=verified.mfa_verified_at), csrf


@router.post("/mfa/recovery-codes", response_class=HTMLResponse)
async def mfa_new_recovery_codes(request: Request, me: Customer) -> Response:
    """A current code, then ten new recovery codes (the old ones stop working), shown once."""
    found = await _with_code(request, me)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    try:
        codes = await _identity(request).regenerate_recovery_codes(principal, client_info(request))
    except DomainError as exc:
        fmt = _formatter(request)
        return await _mfa_render(request, principal, csrf, error=say(fmt, exc.code), status_code=exc.http_status)
    return _render(request, "mfa_codes.html", csrf=csrf, principal=principal, codes=codes, first=False)


@router.post("/mfa/disable", response_class=HTMLResponse)
async def mfa_disable(request: Request, me: Customer) -> Response:
    """A current code, then two-step verification is off."""
    found = await _with_code(request, me)
    if isinstance(found, Response):
        return found
    principal, csrf = found
    try:
        await _identity(request).disable_mfa(principal, client_info(request))
    except DomainError as exc:
        fmt = _formatter(request)
        return await _mfa_render(request, principal, csrf, error=say(fmt, exc.code), status_code=exc.http_status)
    return _redirect(PREFIX + "/security/mfa")
