"""HTTP routes of customers: registration, the customer's own profile, and the staff API.

Thin: parse, build the use case's input, call :class:`CustomerService`, map the result. The service
checks every caller again (ownership, permissions); the route dependencies answer 401/403 early and
apply the staff MFA policy. Every state-changing route passes where the request came from for the
audit rows.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from smartbank.customers.model import DEFAULT_PAGE, MAX_PAGE, RequestInfo
from smartbank.customers.schemas import (
    AddressIn,
    ContactIn,
    Cursor,
    CustomerOut,
    CustomerPageOut,
    CustomerSearchIn,
    IdNumberOut,
    KycDecisionIn,
    KycIn,
    PasswordResetCompleteIn,
    PasswordResetOut,
    RegistrationCompleteIn,
    RegistrationOut,
    RevealIn,
    TierIn,
    TierListOut,
    TierOut,
    VerificationCodeIn,
    VerificationOut,
)
from smartbank.customers.service import CustomerService
from smartbank.identity.deps import client_info, rate_limit, registration_limit, require_customer, require_permission
from smartbank.identity.model import ClientInfo, Permission, Principal


def no_store(response: Response) -> None:
    """Profiles, ID numbers and verification ids are personal: no cache keeps a copy."""
    response.headers["Cache-Control"] = "no-store"


router = APIRouter(tags=["customers"], dependencies=[Depends(no_store)])


def customer_service(request: Request) -> CustomerService:
    service: CustomerService = request.app.state.customers
    return service


def request_info(client: Annotated[ClientInfo, Depends(client_info)]) -> RequestInfo:
    """Where the request came from, in the form the customers use cases audit."""
    return RequestInfo(ip=client.ip, device=client.device, request_id=client.request_id)


Customers = Annotated[CustomerService, Depends(customer_service)]
Audit = Annotated[RequestInfo, Depends(request_info)]
Customer = Annotated[Principal, Depends(require_customer)]
Reader = Annotated[Principal, Depends(require_permission(Permission.CUSTOMERS_READ))]
Reviewer = Annotated[Principal, Depends(require_permission(Permission.KYC_DECIDE))]
TierSetter = Annotated[Principal, Depends(require_permission(Permission.TIERS_SET))]

#: Completing a registration sends nothing and each verification takes five codes at most, so it
#: has a budget of its own: a mistyped code does not use up the budget for sending codes.
registration_complete_limit = rate_limit("customers.register.complete", per_ip=30, per_principal=30, window_s=3600)
#: A forgotten password: each start or resend may send a message (10 an hour per IP; the service
#: adds 5 codes an hour per address); completing sends nothing and has a budget of its own.
password_reset_limit = rate_limit("customers.password_reset", per_ip=10, per_principal=10, window_s=3600)
password_reset_complete_limit = rate_limit(
    "customers.password_reset.complete", per_ip=30, per_principal=30, window_s=3600
)
#: Starting a contact change sends a message: a few an hour for each customer.
_contact_change_limit = rate_limit("customers.contact_change", per_ip=30, per_principal=5, window_s=3600)

_UNAUTHENTICATED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "`unauthenticated`: log in first"},
    403: {"description": "`forbidden`, or `csrf_failed` for a cookie session without its CSRF token"},
}
_STAFF: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "`unauthenticated`: log in first"},
    403: {"description": "`forbidden` without the permission; `mfa_required` under the staff MFA policy"},
}
_INVALID: Final[dict[int | str, dict[str, Any]]] = {422: {"description": "`validation_error` or a domain code"}}
_CUSTOMER_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: {"description": "`customer_not_found`"}}
_VERIFICATION: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "`verification_not_found`"},
    409: {"description": "`verification_already_used`, or `login_taken`: the address belongs to a customer"},
    410: {"description": "`verification_expired`: ask for a new code"},
    422: {"description": "`verification_code_invalid` (details.attempts_left), `terms_not_accepted`, `weak_password`"},
    429: {"description": "`verification_attempts_exhausted`, or `rate_limited` with Retry-After"},
}


# -- registration (not signed in) ----------------------------------------------------------------


@router.post(
    "/v1/registrations",
    response_model=VerificationOut,
    status_code=201,
    dependencies=[Depends(registration_limit)],
    responses={
        422: {"description": "`invalid_phone`, `invalid_email` or `validation_error`"},
        429: {"description": "`rate_limited` (per address, Retry-After) or `verification_rate_limited`"},
    },
)
async def start_registration(body: ContactIn, customers: Customers, audit: Audit) -> VerificationOut:
    """Step 1: send a 6-digit code to a mobile number or e-mail address (valid 10 minutes)."""
    return VerificationOut.of(await customers.start_registration(body.kind, body.contact, request=audit))


@router.post(
    "/v1/registrations/{verification_id}/resend",
    response_model=VerificationOut,
    dependencies=[Depends(registration_limit)],
    responses={
        404: {"description": "`verification_not_found`"},
        409: {"description": "`verification_already_used`"},
        422: {"description": "`validation_error`"},
        429: {"description": "`verification_rate_limited` (details.retry_after_s) or `rate_limited`"},
    },
)
async def resend_registration_code(verification_id: uuid.UUID, customers: Customers, audit: Audit) -> VerificationOut:
    """A new code for the same registration (the previous one stops working): once a minute, five in all."""
    return VerificationOut.of(await customers.resend_code(verification_id, request=audit))


@router.post(
    "/v1/registrations/{verification_id}/complete",
    response_model=RegistrationOut,
    status_code=201,
    dependencies=[Depends(registration_complete_limit)],
    responses=_VERIFICATION,
)
async def complete_registration(
    verification_id: uuid.UUID, body: RegistrationCompleteIn, customers: Customers, audit: Audit
) -> RegistrationOut:
    """Step 2: the code, a password and the terms accepted create the customer and their login.

    This does not sign in: the next step is `POST /v1/auth/login` with `login` and the password.
    """
    profile = await customers.complete_registration(
        verification_id,
        body.code,
        password=body.password,
        accepted_terms=body.accepted_terms,
        terms_version=body.terms_version,
        request=audit,
    )
    login = profile.phone or profile.email
    assert login is not None  # registration stores the address it verified
    return RegistrationOut(customer=CustomerOut.of(profile), login=login)


# -- a forgotten password (not signed in) -------------------------------------------------------


@router.post(
    "/v1/password-resets",
    response_model=VerificationOut,
    status_code=202,
    dependencies=[Depends(password_reset_limit)],
    responses={
        422: {"description": "`invalid_phone`, `invalid_email` or `validation_error`"},
        429: {"description": "`rate_limited` (per IP, Retry-After) or `verification_rate_limited` (per address)"},
    },
)
async def start_password_reset(body: ContactIn, customers: Customers, audit: Audit) -> VerificationOut:
    """Step 1 of a forgotten password: a 6-digit code goes to the phone or e-mail on file.

    The answer is the same (202, the same fields) whether or not a customer has that address, so
    it cannot be used to learn who banks here; only a customer's address receives a code.
    """
    return VerificationOut.of(await customers.start_password_reset(body.kind, body.contact, request=audit))


@router.post(
    "/v1/password-resets/{verification_id}/resend",
    response_model=VerificationOut,
    dependencies=[Depends(password_reset_limit)],
    responses={
        404: {"description": "`verification_not_found`"},
        409: {"description": "`verification_already_used`"},
        422: {"description": "`validation_error`"},
        429: {"description": "`verification_rate_limited` (details.retry_after_s) or `rate_limited`"},
    },
)
async def resend_password_reset_code(verification_id: uuid.UUID, customers: Customers, audit: Audit) -> VerificationOut:
    """A new code for the same reset (the previous one stops working): once a minute, five in all."""
    return VerificationOut.of(await customers.resend_password_reset_code(verification_id, request=audit))


@router.post(
    "/v1/password-resets/{verification_id}/complete",
    response_model=PasswordResetOut,
    dependencies=[Depends(password_reset_complete_limit)],
    responses={
        404: {"description": "`verification_not_found`"},
        409: {"description": "`verification_already_used`"},
        410: {"description": "`verification_expired`: ask for a new code"},
        422: {"description": "`verification_code_invalid` (details.attempts_left), `weak_password`"},
        429: {"description": "`verification_attempts_exhausted`, or `rate_limited` with Retry-After"},
    },
)
async def complete_password_reset(
    verification_id: uuid.UUID, body: PasswordResetCompleteIn, customers: Customers, audit: Audit
) -> PasswordResetOut:
    """Step 2: the code and a new password. Every session and token of the login ends, the lockout
    is cleared; log in again with the new password."""
    await customers.complete_password_reset(verification_id, body.code, new_password=body.new_password, request=audit)
    return PasswordResetOut()


# -- the customer's own profile ------------------------------------------------------------------


@router.get("/v1/me", response_model=CustomerOut, responses={**_UNAUTHENTICATED, **_CUSTOMER_NOT_FOUND})
async def get_me(principal: Customer, customers: Customers) -> CustomerOut:
    """Your profile: contacts, legal name, KYC status, tier; the ID number masked."""
    return CustomerOut.of(await customers.get_me(principal))


@router.put(
    "/v1/me/kyc",
    response_model=CustomerOut,
    responses={
        **_UNAUTHENTICATED,
        **_CUSTOMER_NOT_FOUND,
        409: {"description": "`invalid_kyc_transition` (already verified) or `id_number_in_use`"},
        422: {"description": "`invalid_name`, `invalid_birth_date`, `customer_underage`, `invalid_id_number`, ..."},
    },
)
async def submit_kyc(body: KycIn, principal: Customer, customers: Customers, audit: Audit) -> CustomerOut:
    """Submit your legal identity for review, or correct it while pending, or resubmit after a rejection."""
    return CustomerOut.of(await customers.submit_kyc(principal, principal.id, body.to_submission(), request=audit))


@router.put(
    "/v1/me/address",
    response_model=CustomerOut,
    responses={**_UNAUTHENTICATED, **_CUSTOMER_NOT_FOUND, 422: {"description": "`invalid_address`"}},
)
async def update_address(body: AddressIn, principal: Customer, customers: Customers, audit: Audit) -> CustomerOut:
    """Replace your postal address."""
    return CustomerOut.of(await customers.update_address(principal, principal.id, body.to_address(), request=audit))


@router.post(
    "/v1/me/contact-changes",
    response_model=VerificationOut,
    status_code=201,
    dependencies=[Depends(_contact_change_limit)],
    responses={
        **_UNAUTHENTICATED,
        **_CUSTOMER_NOT_FOUND,
        422: {"description": "`invalid_phone`, `invalid_email` or `validation_error`"},
        429: {"description": "`verification_rate_limited` or `rate_limited`"},
    },
)
async def start_contact_change(
    body: ContactIn, principal: Customer, customers: Customers, audit: Audit
) -> VerificationOut:
    """Prove a new phone number or e-mail address: a code is sent there."""
    return VerificationOut.of(await customers.start_contact_change(principal, body.kind, body.contact, request=audit))


@router.post(
    "/v1/me/contact-changes/{verification_id}/confirm",
    response_model=CustomerOut,
    responses={**_UNAUTHENTICATED, **_VERIFICATION},
)
async def confirm_contact_change(
    verification_id: uuid.UUID, body: VerificationCodeIn, principal: Customer, customers: Customers, audit: Audit
) -> CustomerOut:
    """The code from the new address makes it your phone or e-mail (your login name does not change)."""
    return CustomerOut.of(await customers.confirm_contact_change(principal, verification_id, body.code, request=audit))


@router.get("/v1/tiers", response_model=TierListOut)
async def list_tiers(customers: Customers) -> TierListOut:
    """The customer tiers and the payment limits each sets (public)."""
    return TierListOut(items=[TierOut.of(t) for t in await customers.tiers()])


# -- staff ---------------------------------------------------------------------------------------


@router.post(
    "/v1/staff/customer-search",
    response_model=CustomerPageOut,
    responses={**_STAFF, 422: {"description": "`invalid_search`, `invalid_cursor`, `invalid_phone`"}},
)
async def search_customers(body: CustomerSearchIn, principal: Reader, customers: Customers) -> CustomerPageOut:
    """Find customers by one of: name (prefix; pinyin and initials for Chinese names), phone, ID number.

    Needs `customers:read`. Ordered by customer id; page with `cursor`.
    """
    page = await customers.search(
        principal,
        name=body.name,
        phone=body.phone,
        id_number=body.id_number,
        cursor=body.cursor,
        limit=body.limit,
    )
    return CustomerPageOut.of(page)


@router.get(
    "/v1/staff/customers/{customer_id}",
    response_model=CustomerOut,
    responses={**_STAFF, **_CUSTOMER_NOT_FOUND, **_INVALID},
)
async def get_customer(customer_id: uuid.UUID, principal: Reader, customers: Customers) -> CustomerOut:
    """One customer's profile (ID number masked). Needs `customers:read`."""
    return CustomerOut.of(await customers.get_customer(principal, customer_id))


@router.get(
    "/v1/staff/kyc-queue",
    response_model=CustomerPageOut,
    responses={**_STAFF, 422: {"description": "`invalid_cursor` or `validation_error`"}},
)
async def kyc_queue(
    principal: Reviewer,
    customers: Customers,
    cursor: Annotated[Cursor | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> CustomerPageOut:
    """Profiles waiting for a KYC decision, oldest submission first. Needs `kyc:decide`."""
    return CustomerPageOut.of(await customers.kyc_queue(principal, cursor=cursor, limit=limit))


@router.post(
    "/v1/staff/customers/{customer_id}/kyc-decision",
    response_model=CustomerOut,
    responses={
        **_STAFF,
        **_CUSTOMER_NOT_FOUND,
        409: {"description": "`kyc_profile_missing` or `invalid_kyc_transition` (not pending)"},
        422: {"description": "`reason_required` or `validation_error`"},
    },
)
async def decide_kyc(
    customer_id: uuid.UUID, body: KycDecisionIn, principal: Reviewer, customers: Customers, audit: Audit
) -> CustomerOut:
    """Verify or reject a pending KYC profile, with a reason. Needs `kyc:decide`.

    Verifying publishes `customers.kyc_verified` (banking then opens the customer's first account).
    """
    return CustomerOut.of(await customers.decide_kyc(principal, customer_id, body.decision, body.reason, request=audit))


@router.post(
    "/v1/staff/customers/{customer_id}/id-number/reveal",
    response_model=IdNumberOut,
    responses={
        **_STAFF,
        **_CUSTOMER_NOT_FOUND,
        409: {"description": "`kyc_profile_missing`"},
        422: {"description": "`reason_required` or `validation_error`"},
    },
)
async def reveal_id_number(
    customer_id: uuid.UUID, body: RevealIn, principal: Reviewer, customers: Customers, audit: Audit
) -> IdNumberOut:
    """The full ID number, to compare with the document. Needs `kyc:decide`; audited with the reason."""
    number = await customers.reveal_id_number(principal, customer_id, body.reason, request=audit)
    return IdNumberOut(customer_id=customer_id, id_number=number)


@router.put(
    "/v1/staff/customers/{customer_id}/tier",
    response_model=CustomerOut,
    responses={**_STAFF, **_CUSTOMER_NOT_FOUND, 422: {"description": "`unknown_tier`, `reason_required`"}},
)
async def set_tier(
    customer_id: uuid.UUID, body: TierIn, principal: TierSetter, customers: Customers, audit: Audit
) -> CustomerOut:
    """Move a customer to another tier (and so to its payment limits). Needs `tiers:set`."""
    return CustomerOut.of(await customers.set_tier(principal, customer_id, body.tier, body.reason, request=audit))
