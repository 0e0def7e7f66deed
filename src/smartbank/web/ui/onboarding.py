"""Pages for getting in: sign up with a verification code, the welcome page, the KYC form, and a
forgotten password. Thin, like ``routes.py``: read the form, call the ``customers`` and ``identity``
services, turn their answers and error codes into pages.

Forms shown before sign-in carry the ``sb_form`` double-submit token; signed-in forms carry the
session's CSRF token. The password chosen on the sign-up form never goes back into a page: it waits
for the code in an HttpOnly cookie (``sb_signup``, path ``/app/signup``, 10 minutes), sealed with
AES-GCM under the server's key and bound to the verification id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import date
from typing import Final

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from smartbank.customers.api import (
    password_reset_complete_limit,
    password_reset_limit,
    registration_complete_limit,
)
from smartbank.customers.errors import CustomerErrorCode
from smartbank.customers.model import (
    VERIFICATION_TTL,
    Address,
    ContactKind,
    CustomerProfile,
    IdType,
    KycStatus,
    KycSubmission,
    RequestInfo,
    normalise_contact,
)
from smartbank.customers.service import VerificationSent
from smartbank.identity.deps import client_info, registration_limit
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import password_problems
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.web.ui.i18n import N_, Formatter
from smartbank.web.ui.routes import (
    FORM_COOKIE,
    MAX_LOGIN,
    MAX_PASSWORD,
    MESSAGES,
    PREFIX,
    Customer,
    _csrf_ok,
    _customers,
    _form,
    _formatter,
    _identity,
    _limited,
    _redirect,
    _render,
    _session,
    _set_session,
    _uuid,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: The terms a customer accepts on the sign-up form.
TERMS_VERSION: Final = "2026-11"
SIGNUP_COOKIE: Final = "sb_signup"
SIGNUP_PATH: Final = PREFIX + "/signup"
MAX_FIELD: Final = 128
MAX_VERIFICATION_CODE: Final = 12

#: Messages of these pages and of the security centre, by error code (the app's shared messages serve the other codes).
AUTH_MESSAGES: Final[dict[str, str]] = {
    CustomerErrorCode.INVALID_PHONE: N_("Enter a mobile number that can receive text messages, such as 139 1234 5678."),
    CustomerErrorCode.INVALID_EMAIL: N_("Enter an e-mail address such as name@example.com."),
    CustomerErrorCode.VERIFICATION_NOT_FOUND: N_("This code request has ended. Ask for a new code."),
    CustomerErrorCode.VERIFICATION_EXPIRED: N_("This code has expired. Ask for a new one."),
    CustomerErrorCode.VERIFICATION_CODE_INVALID: N_("That code is not right. Check the message and try again."),
    CustomerErrorCode.VERIFICATION_ATTEMPTS_EXHAUSTED: N_("Too many wrong codes. Start again to get a new code."),
    CustomerErrorCode.VERIFICATION_ALREADY_USED: N_("This code was already used. Start again if you need to."),
    CustomerErrorCode.VERIFICATION_RATE_LIMITED: N_(
        "We have sent several codes already. Wait a while, then try again."
    ),
    CustomerErrorCode.TERMS_NOT_ACCEPTED: N_("Accept the terms to open an account."),
    CustomerErrorCode.LOGIN_TAKEN: N_("This phone number or e-mail already has an account. Log in instead."),
    CustomerErrorCode.INVALID_NAME: N_("Enter your full legal name as on your ID, in Chinese or Latin letters."),
    CustomerErrorCode.INVALID_BIRTH_DATE: N_("Enter your date of birth."),
    CustomerErrorCode.CUSTOMER_UNDERAGE: N_("You must be 18 or older to open an account."),
    CustomerErrorCode.INVALID_ID_NUMBER: N_("That ID number is not valid. Check it and try again."),
    CustomerErrorCode.ID_BIRTH_DATE_MISMATCH: N_("The ID number does not match your date of birth."),
    CustomerErrorCode.ID_NUMBER_IN_USE: N_("This ID is already used by another customer. Call us for help."),
    CustomerErrorCode.INVALID_ADDRESS: N_("Fill in your address: region, city and street."),
    CustomerErrorCode.INVALID_KYC_TRANSITION: N_("Your identity is already verified: call us to change these details."),
    IdentityErrorCode.WEAK_PASSWORD: N_(
        "Choose a password of 12 to 128 characters that is not your phone number or e-mail and not a common one."
    ),
    IdentityErrorCode.INVALID_CREDENTIALS: N_("The current password is wrong."),
    IdentityErrorCode.SESSION_NOT_FOUND: N_("That session has already ended."),
    IdentityErrorCode.MFA_ALREADY_ENROLLED: N_("Two-step verification is already on."),
    IdentityErrorCode.MFA_ENROLMENT_NOT_STARTED: N_("Start the set-up again to get a new QR code."),
    ErrorCode.VALIDATION_ERROR: N_("Check the form and try again."),
    "signup_expired": N_("This sign-up has expired. Please start again."),
    "passwords_differ": N_("The two passwords are not the same."),
}

#: Identity documents offered on the KYC form, in this order.
ID_TYPES: Final = (
    (IdType.PRC_RESIDENT_ID, N_("PRC resident ID card")),
    (IdType.PASSPORT, N_("Passport")),
    (IdType.HK_MACAU_PERMIT, N_("Mainland travel permit for Hong Kong and Macau residents")),
    (IdType.TAIWAN_PERMIT, N_("Mainland travel permit for Taiwan residents")),
    (IdType.FOREIGN_PERMANENT_RESIDENT_ID, N_("Foreign permanent resident ID card")),
    (IdType.OTHER, N_("Other ID")),
)
KYC_STATES: Final = {
    KycStatus.NOT_SUBMITTED: N_("Not submitted yet"),
    KycStatus.PENDING: N_("Being checked"),
    KycStatus.VERIFIED: N_("Verified"),
    KycStatus.REJECTED: N_("Not accepted: please check and send again"),
}


def say(fmt: Formatter, code: str) -> str:
    """The message a customer reads for ``code``, in the page's language."""
    return fmt.gettext(AUTH_MESSAGES.get(code) or MESSAGES.get(code) or N_("Something went wrong. Please try again."))


def request_info(request: Request) -> RequestInfo:
    client = client_info(request)
    return RequestInfo(ip=client.ip, device=client.device, request_id=client.request_id)


def _contact_kind(value: str) -> ContactKind:
    return ContactKind.EMAIL if value == ContactKind.EMAIL.value else ContactKind.PHONE


# -- sign up -------------------------------------------------------------------------------------


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request) -> Response:
    if await _session(request) is not None:
        return _redirect(PREFIX + "/")
    return _render(request, "signup.html", values={"kind": "phone", "contact": ""}, terms=TERMS_VERSION)


@router.post("/signup", response_class=HTMLResponse)
async def signup_submit(request: Request) -> Response:
    """Check the form (the password rules before any code is sent), then send the code."""
    form = await _form(request)
    fmt = _formatter(request)
    kind = _contact_kind(form.get("kind", ""))
    values = {"kind": kind.value, "contact": form.get("contact", "").strip()[:MAX_LOGIN]}
    password = form.get("password", "")

    def again(code: str, status_code: int = 422) -> HTMLResponse:
        return _render(
            request,
            "signup.html",
            status_code=status_code,
            values=values,
            terms=TERMS_VERSION,
            error=say(fmt, code),
        )

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    if not values["contact"] or not password:
        return again("field_required")
    if form.get("accepted_terms") != "yes":
        return again(CustomerErrorCode.TERMS_NOT_ACCEPTED)
    if password != form.get("password_again", ""):
        return again("passwords_differ")
    try:
        login = normalise_contact(kind, values["contact"])
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    if len(password) > MAX_PASSWORD or password_problems(password, login):
        return again(IdentityErrorCode.WEAK_PASSWORD)
    if await _limited(request, registration_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        sent = await _customers(request).start_registration(kind, values["contact"], request=request_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    response = _code_page(request, "signup_code.html", sent)
    sealed = _identity(request).keys.seal(password, sent.verification_id)
    response.set_cookie(
        SIGNUP_COOKIE,
        f"{sent.verification_id}.{base64.urlsafe_b64encode(sealed).decode()}",
        max_age=int(VERIFICATION_TTL.total_seconds()),
        path=SIGNUP_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


def _code_page(
    request: Request,
    template: str,
    sent: VerificationSent | None,
    *,
    verification_id: str | None = None,
    masked: str = "",
    error: str | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> HTMLResponse:
    return _render(
        request,
        template,
        status_code=status_code,
        verification_id=str(sent.verification_id) if sent else verification_id,
        masked=sent.address_masked if sent else masked,
        error=error,
        notice=notice,
    )


def _code_again(request: Request, template: str, form: dict[str, str]) -> Callable[..., HTMLResponse]:
    """The code page again, with a message: for a wrong code, an expired form, a limit."""
    fmt = _formatter(request)
    ident = _uuid(form.get("verification_id"))
    masked = form.get("masked", "")[:MAX_LOGIN]

    def again(error: str, status_code: int = 422) -> HTMLResponse:
        return _code_page(
            request,
            template,
            None,
            verification_id=str(ident) if ident else "",
            masked=masked,
            error=say(fmt, error),
            status_code=status_code,
        )

    return again


def _sealed_password(request: Request, verification_id: uuid.UUID) -> str | None:
    """The password of the sign-up form, if the cookie is this verification's and intact."""
    cookie = request.cookies.get(SIGNUP_COOKIE, "")
    ident, _, sealed = cookie.partition(".")
    if ident != str(verification_id) or len(cookie) > 1000:
        return None
    try:
        return _identity(request).keys.unseal(base64.urlsafe_b64decode(sealed), verification_id)
    except (InvalidTag, ValueError, binascii.Error):
        return None


@router.post("/signup/verify", response_class=HTMLResponse)
async def signup_verify(request: Request) -> Response:
    """The code creates the customer and their login; then they are signed in and welcomed."""
    form = await _form(request)
    fmt = _formatter(request)
    ident = _uuid(form.get("verification_id"))
    code = form.get("code", "").strip()[:MAX_VERIFICATION_CODE]

    again = _code_again(request, "signup_code.html", form)

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    password = _sealed_password(request, ident) if ident else None
    if ident is None or password is None:
        return _render(
            request,
            "signup.html",
            status_code=410,
            values={"kind": "phone", "contact": ""},
            terms=TERMS_VERSION,
            error=say(fmt, "signup_expired"),
        )
    if not code:
        return again("field_required", 422)
    if await _limited(request, registration_complete_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        profile = await _customers(request).complete_registration(
            ident,
            code,
            password=password,
            accepted_terms=True,
            terms_version=TERMS_VERSION,
            request=request_info(request),
        )
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    login = profile.phone or profile.email
    assert login is not None  # registration stores the address it verified
    try:
        result = await _identity(request).login(login, password, client_info(request))
    except DomainError:
        response = _redirect(PREFIX + "/login")
    else:
        response = _redirect(PREFIX + "/welcome")
        _set_session(response, result)
    response.delete_cookie(SIGNUP_COOKIE, path=SIGNUP_PATH, secure=True, httponly=True, samesite="strict")
    return response


@router.post("/signup/resend", response_class=HTMLResponse)
async def signup_resend(request: Request) -> Response:
    return await _resend(request, "signup_code.html", registration_limit, reset=False)


async def _resend(request: Request, template: str, limit: object, *, reset: bool) -> Response:
    """A new code for a sign-up or a password reset (once a minute, five in all)."""
    form = await _form(request)
    fmt = _formatter(request)
    ident = _uuid(form.get("verification_id"))

    again = _code_again(request, template, form)

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    if ident is None:
        return again(CustomerErrorCode.VERIFICATION_NOT_FOUND, 404)
    if await _limited(request, limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    customers = _customers(request)
    try:
        if reset:
            sent = await customers.resend_password_reset_code(ident, request=request_info(request))
        else:
            sent = await customers.resend_code(ident, request=request_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _code_page(request, template, sent, notice=fmt.gettext(N_("We have sent a new code.")))


@router.get("/welcome", response_class=HTMLResponse)
async def welcome(request: Request, me: Customer) -> Response:
    """After sign-up: what to do next (turn on two-step verification, verify identity)."""
    principal, csrf = me
    profile = await _customers(request).get_me(principal)
    mfa = await _identity(request).mfa_status(principal)
    return _render(
        request,
        "welcome.html",
        csrf=csrf,
        principal=principal,
        profile=profile,
        mfa=mfa,
        kyc_state=say_kyc(_formatter(request), profile.kyc_status),
    )


def say_kyc(fmt: Formatter, status: KycStatus) -> str:
    return fmt.gettext(KYC_STATES[status])


# -- KYC -----------------------------------------------------------------------------------------


def _kyc_values(profile: CustomerProfile | None, form: dict[str, str] | None = None) -> dict[str, str]:
    if form is not None:
        names = ("legal_name", "date_of_birth", "id_type", "id_number", "country", "region", "city", "line1", "line2")
        values = {name: form.get(name, "").strip()[:MAX_FIELD] for name in names}
        values["postal_code"] = form.get("postal_code", "").strip()[:16]
        return values
    address = profile.address if profile else None
    lines = address.lines if address else ()
    return {
        "legal_name": (profile.legal_name if profile else None) or "",
        "date_of_birth": profile.date_of_birth.isoformat() if profile and profile.date_of_birth else "",
        "id_type": (profile.id_type.value if profile and profile.id_type else IdType.PRC_RESIDENT_ID.value),
        "id_number": "",
        "country": address.country if address else "CN",
        "region": address.region if address else "",
        "city": address.city if address else "",
        "line1": lines[0] if lines else "",
        "line2": lines[1] if len(lines) > 1 else "",
        "postal_code": (address.postal_code if address else None) or "",
    }


@router.get("/profile/kyc", response_class=HTMLResponse)
async def kyc_page(request: Request, me: Customer) -> Response:
    principal, csrf = me
    profile = await _customers(request).get_me(principal)
    return _kyc_render(request, csrf, principal, profile, _kyc_values(profile))


def _kyc_render(
    request: Request,
    csrf: str,
    principal: object,
    profile: CustomerProfile,
    values: dict[str, str],
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    fmt = _formatter(request)
    return _render(
        request,
        "kyc.html",
        status_code=status_code,
        csrf=csrf,
        principal=principal,  # type: ignore[arg-type]
        profile=profile,
        values=values,
        id_types=[(kind.value, fmt.gettext(label)) for kind, label in ID_TYPES],
        kyc_state=say_kyc(fmt, profile.kyc_status),
        error=error,
    )


@router.post("/profile/kyc", response_class=HTMLResponse)
async def kyc_submit(request: Request, me: Customer) -> Response:
    principal, csrf = me
    form = await _form(request)
    fmt = _formatter(request)
    customers = _customers(request)
    values = _kyc_values(None, form)
    profile = await customers.get_me(principal)

    def again(code: str, status_code: int = 422) -> HTMLResponse:
        return _kyc_render(request, csrf, principal, profile, values, error=say(fmt, code), status_code=status_code)

    if not _csrf_ok(form.get("csrf_token"), csrf):
        return again("form_expired", 403)
    required = ("legal_name", "date_of_birth", "id_number", "region", "city", "line1", "country")
    if any(not values[name] for name in required):
        return again("field_required")
    try:
        birth = date.fromisoformat(values["date_of_birth"])
    except ValueError:
        return again(CustomerErrorCode.INVALID_BIRTH_DATE)
    try:
        id_type = IdType(values["id_type"])
    except ValueError:
        return again(ErrorCode.VALIDATION_ERROR)
    submission = KycSubmission(
        legal_name=values["legal_name"],
        date_of_birth=birth,
        id_type=id_type,
        id_number=values["id_number"],
        address=Address(
            country=values["country"],
            region=values["region"],
            city=values["city"],
            lines=tuple(line for line in (values["line1"], values["line2"]) if line),
            postal_code=values["postal_code"] or None,
        ),
    )
    try:
        await customers.submit_kyc(principal, principal.id, submission, request=request_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _redirect(PREFIX + "/")


# -- a forgotten password ------------------------------------------------------------------------


@router.get("/password/forgot", response_class=HTMLResponse)
async def forgot_page(request: Request) -> Response:
    return _render(request, "forgot.html", values={"kind": "phone", "contact": ""})


@router.post("/password/forgot", response_class=HTMLResponse)
async def forgot_submit(request: Request) -> Response:
    """Send a code to the phone or e-mail on file. The page that follows is the same whether or not
    a customer has that address (the service records a verification either way)."""
    form = await _form(request)
    fmt = _formatter(request)
    kind = _contact_kind(form.get("kind", ""))
    values = {"kind": kind.value, "contact": form.get("contact", "").strip()[:MAX_LOGIN]}

    def again(code: str, status_code: int = 422) -> HTMLResponse:
        return _render(request, "forgot.html", status_code=status_code, values=values, error=say(fmt, code))

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    if not values["contact"]:
        return again("field_required")
    if await _limited(request, password_reset_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        sent = await _customers(request).start_password_reset(kind, values["contact"], request=request_info(request))
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _code_page(request, "reset.html", sent)


@router.post("/password/reset", response_class=HTMLResponse)
async def reset_submit(request: Request) -> Response:
    form = await _form(request)
    ident = _uuid(form.get("verification_id"))
    code = form.get("code", "").strip()[:MAX_VERIFICATION_CODE]
    password = form.get("password", "")

    again = _code_again(request, "reset.html", form)

    if not _csrf_ok(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        return again("form_expired", 403)
    if ident is None:
        return again(CustomerErrorCode.VERIFICATION_NOT_FOUND, 404)
    if not code or not password:
        return again("field_required")
    if password != form.get("password_again", ""):
        return again("passwords_differ")
    if len(password) > MAX_PASSWORD:
        return again(IdentityErrorCode.WEAK_PASSWORD)
    if await _limited(request, password_reset_complete_limit) is not None:
        return again(ErrorCode.RATE_LIMITED, 429)
    try:
        await _customers(request).complete_password_reset(
            ident, code, new_password=password, request=request_info(request)
        )
    except DomainError as exc:
        return again(exc.code, exc.http_status)
    return _redirect(PREFIX + "/password/done")


@router.post("/password/resend", response_class=HTMLResponse)
async def reset_resend(request: Request) -> Response:
    return await _resend(request, "reset.html", password_reset_limit, reset=True)


@router.get("/password/done", response_class=HTMLResponse)
async def reset_done(request: Request) -> Response:
    return _render(request, "reset_done.html")
