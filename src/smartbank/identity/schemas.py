"""Request and response models of the identity HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from smartbank.identity.service import SessionMode

Code = Annotated[str, Field(min_length=6, max_length=32, description="A 6-digit TOTP code or a recovery code.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    login: Annotated[str, Field(min_length=1, max_length=254, description="E-mail or E.164 phone number.")]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    client: SessionMode = Field(
        SessionMode.BROWSER,
        description="`browser`: a session cookie and a CSRF token; `token`: access and refresh tokens.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"login": "li.wei@example.com", "password": "correct horse battery staple", "client": "browser"},
                {"login": "+8613800138000", "password": "correct horse battery staple", "client": "token"},
            ]
        },
    )


class LoginOut(BaseModel):
    status: Literal["authenticated", "mfa_required"]
    principal_id: uuid.UUID
    kind: str
    session_id: uuid.UUID
    csrf_token: str | None = Field(None, description="Browser sessions: send it as X-CSRF-Token on unsafe methods.")
    access_token: str | None = Field(None, description="Token clients: a JWT valid for 10 minutes.")
    refresh_token: str | None = Field(
        None, description="Token clients: single use; rotate it at /v1/auth/token/refresh."
    )
    token_type: Literal["Bearer"] | None = None
    expires_in: int | None = Field(None, description="Seconds the access token is valid.")
    mfa_challenge: str | None = Field(None, description="Pass it with a code to /v1/auth/mfa/verify (5 minutes).")
    mfa_verified_at: datetime | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "authenticated",
                    "principal_id": "0193a1f0-7c2e-7000-8000-000000000001",
                    "kind": "customer",
                    "session_id": "0193a1f0-7c2e-7000-8000-0000000000aa",
                    "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
                    "refresh_token": "sbr_Q2hhbmdlIG1lIGV2ZXJ5IHRpbWU",
                    "token_type": "Bearer",
                    "expires_in": 600,
                },
                {
                    "status": "mfa_required",
                    "principal_id": "0193a1f0-7c2e-7000-8000-000000000001",
                    "kind": "customer",
                    "session_id": "0193a1f0-7c2e-7000-8000-0000000000aa",
                    "mfa_challenge": "mfa_b25lIHRpbWUgY2hhbGxlbmdl",
                },
            ]
        }
    )


class MfaVerifyIn(Strict):
    challenge: Annotated[str, Field(min_length=1, max_length=200)]
    code: Code

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"challenge": "mfa_b25lIHRpbWUgY2hhbGxlbmdl", "code": "492039"}]},
    )


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"refresh_token": "sbr_Q2hhbmdlIG1lIGV2ZXJ5IHRpbWU"}]}
    )


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int
    session_id: uuid.UUID

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
                    "refresh_token": "sbr_TmV4dCBvbmUgcGxlYXNl",
                    "token_type": "Bearer",
                    "expires_in": 600,
                    "session_id": "0193a1f0-7c2e-7000-8000-0000000000aa",
                }
            ]
        }
    )


class SessionOut(BaseModel):
    id: uuid.UUID
    kind: SessionMode
    current: bool
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    mfa_verified_at: datetime | None
    ip: str | None
    device: str | None


class SessionListOut(BaseModel):
    items: list[SessionOut]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "0193a1f0-7c2e-7000-8000-0000000000aa",
                            "kind": "browser",
                            "current": True,
                            "created_at": "2026-11-27T09:00:00Z",
                            "last_used_at": "2026-11-27T09:00:00Z",
                            "expires_at": "2026-11-27T21:00:00Z",
                            "mfa_verified_at": "2026-11-27T09:00:05Z",
                            "ip": "203.0.113.7",
                            "device": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)",
                        }
                    ]
                }
            ]
        }
    )


class MfaStatusOut(BaseModel):
    enrolled: bool
    enrolment_pending: bool
    recovery_codes_left: int

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"enrolled": True, "enrolment_pending": False, "recovery_codes_left": 9}]}
    )


class MfaEnrolmentOut(BaseModel):
    otpauth_uri: str = Field(description="For authenticator apps that take a link.")
    qr_svg: str = Field(description="The same URI as an SVG QR code.")
    secret: str = Field(description="Base32 secret, for typing in by hand.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "otpauth_uri": "otpauth://totp/smartbank:li.wei%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=smartbank",
                    "qr_svg": '<svg xmlns="http://www.w3.org/2000/svg" width="196" height="196">…</svg>',
                    "secret": "JBSWY3DPEHPK3PXP",
                }
            ]
        }
    )


class CodeIn(Strict):
    code: Code

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "492039"}]})


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Shown this once; each works once in place of a TOTP code.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"recovery_codes": ["k7mq-2xpa-9dfr", "b9xw-yxk2-mebe"]}]}
    )


class StepUpOut(BaseModel):
    mfa_verified_at: datetime
    access_token: str | None = Field(None, description="Token clients: a fresh access token.")
    expires_in: int | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mfa_verified_at": "2026-11-27T09:30:00Z",
                    "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
                    "expires_in": 600,
                }
            ]
        }
    )


class PasswordChangeIn(Strict):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=1, max_length=1024)]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"current_password": "the one-time password", "new_password": "violet-harbour-lantern-42"}]
        },
    )
