"""HTTP routes of identity: login, MFA, tokens, sessions and step-up. Thin: parse, call, map."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Response

from smartbank.identity.credentials import ACCESS_TOKEN_TTL
from smartbank.identity.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentPrincipal,
    RateLimited,
    client_info,
    identity_service,
    rate_limit,
)
from smartbank.identity.model import ClientInfo, normalise_login
from smartbank.identity.schemas import (
    CodeIn,
    LoginIn,
    LoginOut,
    MfaEnrolmentOut,
    MfaStatusOut,
    MfaVerifyIn,
    PasswordChangeIn,
    RecoveryCodesOut,
    RefreshIn,
    SessionListOut,
    SessionOut,
    StepUpOut,
    TokensOut,
)
from smartbank.identity.service import IdentityService, LoginResult, SessionMode

router = APIRouter(tags=["identity"])

Identity = Annotated[IdentityService, Depends(identity_service)]
Client = Annotated[ClientInfo, Depends(client_info)]

#: Requests per minute. Per IP they allow a shared office NAT; per login they slow guessing.
LOGIN_PER_IP: Final = 20
LOGIN_PER_ACCOUNT: Final = 10
MFA_PER_IP: Final = 20
MFA_PER_PRINCIPAL: Final = 10
REFRESH_PER_IP: Final = 60
WINDOW_S: Final = 60

_login_limit = rate_limit("auth.login", per_ip=LOGIN_PER_IP, per_principal=LOGIN_PER_IP, window_s=WINDOW_S)
_mfa_limit = rate_limit("auth.mfa", per_ip=MFA_PER_IP, per_principal=MFA_PER_PRINCIPAL, window_s=WINDOW_S)
_password_limit = rate_limit("auth.password", per_ip=LOGIN_PER_IP, per_principal=5, window_s=WINDOW_S)
_refresh_limit = rate_limit("auth.refresh", per_ip=REFRESH_PER_IP, per_principal=REFRESH_PER_IP, window_s=WINDOW_S)

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong credentials, code or token (`invalid_credentials`, `invalid_mfa_code`, ...)"},
    403: {"description": "CSRF token missing or wrong (`csrf_failed`), or `step_up_required`"},
    422: {"description": "Invalid request"},
    423: {"description": "`account_locked` after repeated failures; details.retry_after_s"},
    429: {"description": "`rate_limited`; see the Retry-After header"},
}


def _set_session_cookies(response: Response, result: LoginResult) -> None:
    assert result.session_token is not None and result.csrf_token is not None
    max_age = result.session_expires_in
    response.set_cookie(
        SESSION_COOKIE, result.session_token, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE, result.csrf_token, max_age=max_age, path="/", secure=True, httponly=False, samesite="lax"
    )


def _login_out(result: LoginResult, response: Response) -> LoginOut:
    out = LoginOut(
        status=result.status,
        principal_id=result.principal_id,
        kind=result.kind.value,
        session_id=result.session_id,
        mfa_challenge=result.mfa_challenge,
        mfa_verified_at=result.mfa_verified_at,
    )
    if result.status == "authenticated" and result.mode is SessionMode.BROWSER:
        _set_session_cookies(response, result)
        out.csrf_token = result.csrf_token
    elif result.status == "authenticated":
        out.access_token = result.access_token
        out.refresh_token = result.refresh_token
        out.token_type = "Bearer"  # noqa: S105 - the scheme name
        out.expires_in = int(ACCESS_TOKEN_TTL.total_seconds())
    response.headers["Cache-Control"] = "no-store"
    return out


@router.post("/v1/auth/login", response_model=LoginOut, responses=_AUTH_ERRORS, dependencies=[Depends(_login_limit)])
async def login(body: LoginIn, identity: Identity, client: Client, response: Response) -> LoginOut:
    """Log in with a password. With MFA on, answers `mfa_required` and a challenge for /v1/auth/mfa/verify.

    Browsers get an `HttpOnly`, `Secure`, `SameSite=Lax` session cookie and a CSRF token; token
    clients get a 10-minute access token and a single-use refresh token. Staff log in here too.
    """
    retry_after_s = await identity.limiter.hit(
        "auth.login.account", [(f"login:{normalise_login(body.login)}", LOGIN_PER_ACCOUNT)], WINDOW_S
    )
    if retry_after_s is not None:
        raise RateLimited(retry_after_s, "auth.login.account")
    return _login_out(await identity.login(body.login, body.password, client, body.client), response)


@router.post("/v1/auth/mfa/verify", response_model=LoginOut, responses=_AUTH_ERRORS, dependencies=[Depends(_mfa_limit)])
async def verify_mfa(body: MfaVerifyIn, identity: Identity, client: Client, response: Response) -> LoginOut:
    """Finish a login with a TOTP code (or a recovery code). A code is accepted once only."""
    return _login_out(await identity.verify_mfa_challenge(body.challenge, body.code, client), response)


@router.post(
    "/v1/auth/token/refresh",
    response_model=TokensOut,
    responses=_AUTH_ERRORS,
    dependencies=[Depends(_refresh_limit)],
)
async def refresh_token(body: RefreshIn, identity: Identity, client: Client, response: Response) -> TokensOut:
    """Swap a refresh token for a new access and refresh token. Reusing an old one revokes the family."""
    tokens = await identity.refresh(body.refresh_token, client)
    response.headers["Cache-Control"] = "no-store"
    return TokensOut(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=int(ACCESS_TOKEN_TTL.total_seconds()),
        session_id=tokens.session_id,
    )


@router.post("/v1/auth/logout", status_code=204, responses=_AUTH_ERRORS)
async def logout(principal: CurrentPrincipal, identity: Identity, client: Client) -> Response:
    """End this session (browser) or token family (API client)."""
    await identity.logout(principal, client)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, httponly=False, samesite="lax")
    return response


@router.post("/v1/auth/step-up", response_model=StepUpOut, responses=_AUTH_ERRORS, dependencies=[Depends(_mfa_limit)])
async def step_up(body: CodeIn, principal: CurrentPrincipal, identity: Identity, client: Client) -> StepUpOut:
    """Pass an MFA challenge now, for actions that answer `step_up_required` (valid 5 minutes)."""
    result = await identity.step_up(principal, body.code, client)
    return StepUpOut(
        mfa_verified_at=result.mfa_verified_at,
        access_token=result.access_token,
        expires_in=int(ACCESS_TOKEN_TTL.total_seconds()) if result.access_token else None,
    )


@router.get("/v1/me/sessions", response_model=SessionListOut, responses=_AUTH_ERRORS)
async def list_sessions(principal: CurrentPrincipal, identity: Identity) -> SessionListOut:
    """Your active sessions and devices, newest first (at most 50)."""
    sessions = await identity.list_sessions(principal)
    return SessionListOut(
        items=[
            SessionOut(
                id=s.id,
                kind=s.kind,
                current=s.id == principal.session_id,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                mfa_verified_at=s.mfa_verified_at,
                ip=s.ip,
                device=s.device,
            )
            for s in sessions
        ]
    )


@router.delete(
    "/v1/me/sessions/{session_id}",
    status_code=204,
    responses={**_AUTH_ERRORS, 404: {"description": "`session_not_found`"}},
)
async def end_session(
    session_id: uuid.UUID, principal: CurrentPrincipal, identity: Identity, client: Client
) -> Response:
    """End one of your sessions (signs that device out; its tokens stop working at once)."""
    await identity.end_session(principal, session_id, client)
    return Response(status_code=204)


@router.get("/v1/me/mfa", response_model=MfaStatusOut, responses=_AUTH_ERRORS)
async def mfa_status(principal: CurrentPrincipal, identity: Identity) -> MfaStatusOut:
    status = await identity.mfa_status(principal)
    return MfaStatusOut(
        enrolled=status.enrolled,
        enrolment_pending=status.enrolment_pending,
        recovery_codes_left=status.recovery_codes_left,
    )


@router.post("/v1/me/mfa", response_model=MfaEnrolmentOut, status_code=201, responses=_AUTH_ERRORS)
async def start_mfa(
    principal: CurrentPrincipal, identity: Identity, client: Client, response: Response
) -> MfaEnrolmentOut:
    """Start TOTP enrolment: scan the QR code (or add the URI), then confirm with a first code."""
    enrolment = await identity.start_mfa_enrolment(principal, client)
    response.headers["Cache-Control"] = "no-store"
    return MfaEnrolmentOut(otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg, secret=enrolment.secret)


@router.post(
    "/v1/me/mfa/confirm",
    response_model=RecoveryCodesOut,
    responses=_AUTH_ERRORS,
    dependencies=[Depends(_mfa_limit)],
)
async def confirm_mfa(
    body: CodeIn, principal: CurrentPrincipal, identity: Identity, client: Client, response: Response
) -> RecoveryCodesOut:
    """Turn MFA on with a first code; returns ten recovery codes, shown this once."""
    codes = await identity.confirm_mfa_enrolment(principal, body.code, client)
    response.headers["Cache-Control"] = "no-store"
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/v1/me/mfa/recovery-codes", response_model=RecoveryCodesOut, responses=_AUTH_ERRORS)
async def regenerate_recovery_codes(
    principal: CurrentPrincipal, identity: Identity, client: Client, response: Response
) -> RecoveryCodesOut:
    """Replace your recovery codes. Needs a step-up within the last 5 minutes."""
    codes = await identity.regenerate_recovery_codes(principal, client)
    response.headers["Cache-Control"] = "no-store"
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/v1/me/mfa/disable", status_code=204, responses=_AUTH_ERRORS)
async def disable_mfa(principal: CurrentPrincipal, identity: Identity, client: Client) -> Response:
    """Turn MFA off. Needs a step-up within the last 5 minutes."""
    await identity.disable_mfa(principal, client)
    return Response(status_code=204)


@router.post("/v1/me/password", status_code=204, responses=_AUTH_ERRORS, dependencies=[Depends(_password_limit)])
async def change_password(
    body: PasswordChangeIn, principal: CurrentPrincipal, identity: Identity, client: Client
) -> Response:
    """Change your password (staff: replace the one-time password). Every other session is ended."""
    await identity.change_password(principal, body.current_password, body.new_password, client)
    return Response(status_code=204)
