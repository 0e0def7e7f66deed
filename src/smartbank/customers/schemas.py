"""Request and response models of the customers HTTP API.

Inputs bound every field's size here; the rules of what a valid phone number, name, ID number or
address is stay in ``customers.model``, so that a well-formed but wrong value is refused with the
domain's own code (``invalid_phone``, ``invalid_id_number``, ...), not a generic ``validation_error``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from smartbank.customers.model import (
    CODE_DIGITS,
    DEFAULT_PAGE,
    MAX_ADDRESS_LINE_CHARS,
    MAX_ADDRESS_LINES,
    MAX_EMAIL_CHARS,
    MAX_NAME_CHARS,
    MAX_PAGE,
    MAX_PHONE_INPUT_CHARS,
    MAX_POSTAL_CODE_CHARS,
    MAX_REASON_CHARS,
    MAX_REGION_CHARS,
    MAX_SEARCH_CHARS,
    MAX_TERMS_VERSION_CHARS,
    Address,
    ContactKind,
    CustomerPage,
    CustomerProfile,
    IdType,
    KycDecision,
    KycStatus,
    KycSubmission,
    Tier,
)
from smartbank.customers.service import VerificationSent
from smartbank.kernel.money import Money

#: Input strings may carry runs of spaces that the rules collapse; allow some room for them.
_SLACK = 2

Contact = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_EMAIL_CHARS,
        description="A mobile number (national numbers are read as Chinese; stored in E.164) or an e-mail address.",
    ),
]
VerificationCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16,
        description=f"The {CODE_DIGITS}-digit code sent to the phone or e-mail address.",
    ),
]
#: Free text that is stored or searched: no control characters (PostgreSQL refuses NUL in text;
#: the others have no place in a name or a reason). Tabs and line breaks are folded into spaces.
NO_CONTROL_CHARS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

Reason = Annotated[
    str,
    Field(
        max_length=MAX_REASON_CHARS * _SLACK,
        pattern=NO_CONTROL_CHARS,
        description=f"Why (1..{MAX_REASON_CHARS} characters after spaces are collapsed); kept in the audit log.",
    ),
]
Cursor = Annotated[str, Field(min_length=1, max_length=64, description="`next_cursor` of the previous page.")]

_CUSTOMER_ID = "0193a1f0-7c2e-7000-8000-000000000001"
_VERIFICATION_ID = "0193a1f0-7c2e-7000-8000-0000000000bb"
_ADDRESS_EXAMPLE: dict[str, Any] = {
    "country": "CN",
    "region": "北京市",
    "city": "北京市",
    "lines": ["东城区东长安街 1 号"],
    "postal_code": "100006",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- registration and contact changes ------------------------------------------------------------


class ContactIn(Strict):
    kind: ContactKind = Field(description="`phone` (a code by text message) or `email`.")
    contact: Contact

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "phone", "contact": "13912345678"},
                {"kind": "email", "contact": "li.wei@example.com"},
            ]
        },
    )


class VerificationOut(BaseModel):
    verification_id: uuid.UUID
    kind: ContactKind
    contact_masked: str = Field(description="Where the code went, masked: `+86139****5678`, `l***@example.com`.")
    expires_at: datetime = Field(description="The code works until then (10 minutes).")
    resend_after: datetime = Field(description="A new code may be asked for from then on.")

    @classmethod
    def of(cls, sent: VerificationSent) -> VerificationOut:
        return cls(
            verification_id=sent.verification_id,
            kind=sent.kind,
            contact_masked=sent.address_masked,
            expires_at=sent.expires_at,
            resend_after=sent.resend_after,
        )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "verification_id": _VERIFICATION_ID,
                    "kind": "phone",
                    "contact_masked": "+86139****5678",
                    "expires_at": "2026-11-27T09:10:00Z",
                    "resend_after": "2026-11-27T09:01:00Z",
                }
            ]
        }
    )


class RegistrationCompleteIn(Strict):
    code: VerificationCode
    password: Annotated[str, Field(min_length=1, max_length=1024, description="12..128 characters.")]
    accepted_terms: StrictBool = Field(description="Must be true: the customer accepts the terms named below.")
    terms_version: Annotated[
        str, Field(min_length=1, max_length=MAX_TERMS_VERSION_CHARS, description="Which terms were accepted.")
    ]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "492039",
                    "password": "violet-harbour-lantern-42",
                    "accepted_terms": True,
                    "terms_version": "2026-11",
                }
            ]
        },
    )


class PasswordResetCompleteIn(Strict):
    code: VerificationCode
    new_password: Annotated[str, Field(min_length=1, max_length=1024, description="12..128 characters.")]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "492039", "new_password": "amber-orchard-compass-17"}]},
    )


class PasswordResetOut(BaseModel):
    status: Literal["password_changed"] = "password_changed"
    next_step: Literal["/v1/auth/login"] = Field(
        "/v1/auth/login", description="Every session of the login has ended: log in with the new password."
    )


class VerificationCodeIn(Strict):
    code: VerificationCode

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "492039"}]})


# -- profiles ------------------------------------------------------------------------------------


class AddressIn(Strict):
    country: Annotated[str, Field(min_length=1, max_length=8, description="ISO 3166-1 alpha-2 code.")]
    region: Annotated[str, Field(min_length=1, max_length=MAX_REGION_CHARS * _SLACK)]
    city: Annotated[str, Field(min_length=1, max_length=MAX_REGION_CHARS * _SLACK)]
    lines: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_ADDRESS_LINE_CHARS * _SLACK)]],
        Field(min_length=1, max_length=MAX_ADDRESS_LINES),
    ]
    postal_code: Annotated[str, Field(max_length=MAX_POSTAL_CODE_CHARS * _SLACK)] | None = None

    def to_address(self) -> Address:
        return Address(self.country, self.region, self.city, tuple(self.lines), self.postal_code)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_ADDRESS_EXAMPLE]})


class AddressOut(BaseModel):
    country: str
    region: str
    city: str
    lines: list[str]
    postal_code: str | None

    @classmethod
    def of(cls, address: Address) -> AddressOut:
        return cls(
            country=address.country,
            region=address.region,
            city=address.city,
            lines=list(address.lines),
            postal_code=address.postal_code,
        )


class KycIn(Strict):
    legal_name: Annotated[
        str, Field(min_length=1, max_length=MAX_NAME_CHARS * _SLACK, description="Chinese or Latin script.")
    ]
    date_of_birth: date = Field(description="18 or older today (Asia/Shanghai).")
    id_type: IdType
    id_number: Annotated[
        str, Field(min_length=1, max_length=40, description="A PRC resident ID is checked with GB 11643.")
    ]
    address: AddressIn

    def to_submission(self) -> KycSubmission:
        return KycSubmission(
            legal_name=self.legal_name,
            date_of_birth=self.date_of_birth,
            id_type=self.id_type,
            id_number=self.id_number,
            address=self.address.to_address(),
        )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "legal_name": "张伟",
                    "date_of_birth": "1990-05-17",
                    "id_type": "prc_resident_id",
                    "id_number": "11010119900517001X",
                    "address": _ADDRESS_EXAMPLE,
                }
            ]
        },
    )


class CustomerOut(BaseModel):
    """A customer's profile. The ID number is always masked here."""

    id: uuid.UUID
    phone: str | None = Field(description="E.164.")
    email: str | None
    legal_name: str | None
    date_of_birth: date | None
    id_type: IdType | None
    id_number_masked: str | None = Field(description="All but the last four characters hidden.")
    address: AddressOut | None
    kyc_status: KycStatus
    kyc_submitted_at: datetime | None
    kyc_reason: str | None = Field(description="The reviewer's reason for the last decision.")
    tier: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: CustomerProfile) -> CustomerOut:
        return cls(
            id=p.id,
            phone=p.phone,
            email=p.email,
            legal_name=p.legal_name,
            date_of_birth=p.date_of_birth,
            id_type=p.id_type,
            id_number_masked=p.id_number_masked,
            address=None if p.address is None else AddressOut.of(p.address),
            kyc_status=p.kyc_status,
            kyc_submitted_at=p.kyc_submitted_at,
            kyc_reason=p.kyc_reason,
            tier=p.tier,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _CUSTOMER_ID,
                    "phone": "+8613912345678",
                    "email": None,
                    "legal_name": "张伟",
                    "date_of_birth": "1990-05-17",
                    "id_type": "prc_resident_id",
                    "id_number_masked": "**************001X",
                    "address": _ADDRESS_EXAMPLE,
                    "kyc_status": "pending",
                    "kyc_submitted_at": "2026-11-27T09:20:00Z",
                    "kyc_reason": None,
                    "tier": "basic",
                    "created_at": "2026-11-27T09:05:00Z",
                    "updated_at": "2026-11-27T09:20:00Z",
                }
            ]
        }
    )


class RegistrationOut(BaseModel):
    customer: CustomerOut
    login: str = Field(description="Log in with this and the password just chosen.")
    next_step: Literal["/v1/auth/login"] = Field(
        "/v1/auth/login", description="Registration does not sign the customer in: POST the login here next."
    )


class CustomerPageOut(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page; null on the last page.")

    @classmethod
    def of(cls, page: CustomerPage) -> CustomerPageOut:
        return cls(items=[CustomerOut.of(p) for p in page.items], next_cursor=page.next_cursor)


# -- staff ---------------------------------------------------------------------------------------


class CustomerSearchIn(Strict):
    """Exactly one of `name`, `phone` or `id_number`. In the body, so that no phone or ID number is
    written to an access log with the URL."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_SEARCH_CHARS, pattern=NO_CONTROL_CHARS)] | None = Field(
        None, description="A prefix of the legal name, of its pinyin (`zhangw`) or of its initials (`zw`)."
    )
    phone: Annotated[str, Field(min_length=1, max_length=MAX_PHONE_INPUT_CHARS)] | None = None
    id_number: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        None, description="The whole number, of any document type."
    )
    cursor: Cursor | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "zhangw", "limit": 20}, {"phone": "13912345678"}, {"id_number": "11010119900517001X"}]
        },
    )


class KycDecisionIn(Strict):
    decision: KycDecision
    reason: Reason

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"decision": "verify", "reason": "ID card checked against the photo"},
                {"decision": "reject", "reason": "the ID card photo is unreadable"},
            ]
        },
    )


class RevealIn(Strict):
    reason: Reason

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "comparing with the scanned ID card"}]}
    )


class IdNumberOut(BaseModel):
    customer_id: uuid.UUID
    id_number: str = Field(description="The full number. Every reveal is audited with its reason.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customer_id": _CUSTOMER_ID, "id_number": "11010119900517001X"}]}
    )


class TierIn(Strict):
    tier: Annotated[str, Field(min_length=1, max_length=32, description="A tier code from GET /v1/tiers.")]
    reason: Reason

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"tier": "premium", "reason": "private banking client"}]}
    )


# -- tiers ---------------------------------------------------------------------------------------


class TierOut(BaseModel):
    code: str
    currency: str
    per_payment_limit_minor: int = Field(description="Largest single payment, in minor units of `currency`.")
    per_payment_limit: str = Field(description="The same as a decimal string.")
    daily_limit_minor: int = Field(description="Payments per day (Asia/Shanghai), in minor units.")
    daily_limit: str

    @classmethod
    def of(cls, tier: Tier) -> TierOut:
        currency = tier.currency.strip()  # char(3) in the table
        return cls(
            code=tier.code,
            currency=currency,
            per_payment_limit_minor=tier.per_payment_limit_minor,
            per_payment_limit=Money(tier.per_payment_limit_minor, currency).format(),
            daily_limit_minor=tier.daily_limit_minor,
            daily_limit=Money(tier.daily_limit_minor, currency).format(),
        )


class TierListOut(BaseModel):
    items: list[TierOut]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "code": "basic",
                            "currency": "CNY",
                            "per_payment_limit_minor": 500000,
                            "per_payment_limit": "5000.00",
                            "daily_limit_minor": 2000000,
                            "daily_limit": "20000.00",
                        }
                    ]
                }
            ]
        }
    )
