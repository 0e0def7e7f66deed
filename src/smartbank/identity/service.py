"""Identity use cases: logins, passwords, MFA, sessions and tokens. One use case, one transaction.

A refused login, MFA code or refresh token is audited (and counted toward lockout) in a transaction
that commits; the error is raised only after that commit.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.identity import credentials
from smartbank.identity.credentials import Enrolment, Keys, Passwords, new_token, token_hash
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import (
    STEP_UP_MAX_AGE,
    ClientInfo,
    Permission,
    Principal,
    PrincipalKind,
    StaffRole,
    lockout_for,
    login_problems,
    normalise_login,
    password_problems,
    require_step_up,
)
from smartbank.identity.ratelimit import RateLimiter
from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.ids import new_id
from smartbank.platform.audit import AuditEvent, Outcome, record
from smartbank.platform.db import Database
from smartbank.platform.inbox import notify

__all__ = ["STEP_UP_MAX_AGE", "IdentityService", "LoginResult", "SessionMode", "require_step_up"]

BROWSER_SESSION_TTL: Final = timedelta(hours=12)
TOKEN_FAMILY_TTL: Final = timedelta(days=30)
MFA_CHALLENGE_TTL: Final = timedelta(minutes=5)
MFA_CHALLENGE_ATTEMPTS: Final = 5
MAX_SESSIONS_LISTED: Final = 50
MAX_STAFF_LOOKUP: Final = 100
#: Audited actions that also put a notice in the customer's in-app inbox (platform.inbox), by
#: (action, outcome) → notice kind. The notice names the address and device, never a secret.
SECURITY_NOTICES: Final[dict[tuple[str, Outcome], str]] = {
    ("identity.login", Outcome.SUCCESS): "security.sign_in",
    ("identity.lockout", Outcome.DENIED): "security.locked",
    ("identity.password_changed", Outcome.SUCCESS): "security.password_changed",
    ("identity.mfa_enrolled", Outcome.SUCCESS): "security.mfa_enabled",
    ("identity.mfa_disabled", Outcome.SUCCESS): "security.mfa_disabled",
    ("identity.session_ended", Outcome.SUCCESS): "security.session_ended",
    ("identity.recovery_codes_regenerated", Outcome.SUCCESS): "security.recovery_codes_regenerated",
    ("identity.password_reset", Outcome.SUCCESS): "security.password_reset",
}
#: Actions done without a signed-in actor (so actor_kind is not ``customer``) whose subject is always a
#: customer's login: they notify the subject too.
CUSTOMER_SUBJECT_ACTIONS: Final = frozenset({"identity.password_reset"})


class SessionMode(StrEnum):
    #: A cookie session for a browser (CSRF token for unsafe methods).
    BROWSER = "browser"
    #: Access token (JWT, 10 minutes) and rotating refresh token for API and mobile clients.
    TOKEN = "token"  # noqa: S105 - a mode name


@dataclass(frozen=True, slots=True)
class LoginResult:
    status: Literal["authenticated", "mfa_required"]
    principal_id: uuid.UUID
    kind: PrincipalKind
    session_id: uuid.UUID
    mode: SessionMode
    session_token: str | None = None
    session_expires_in: int | None = None
    csrf_token: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    mfa_challenge: str | None = None
    mfa_verified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: uuid.UUID
    kind: SessionMode
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    mfa_verified_at: datetime | None
    ip: str | None
    device: str | None


@dataclass(frozen=True, slots=True)
class MfaStatus:
    enrolled: bool
    enrolment_pending: bool
    recovery_codes_left: int


@dataclass(frozen=True, slots=True)
class StaffMember:
    """How a staff member is named to other staff (an audit trail's actor)."""

    id: uuid.UUID
    login: str
    roles: frozenset[StaffRole]


@dataclass(frozen=True, slots=True)
class StepUp:
    mfa_verified_at: datetime
    access_token: str | None


def _principal(row: Any, session_id: uuid.UUID | None, mfa_verified_at: datetime | None) -> Principal:
    return Principal(
        id=row.principal_id,
        kind=PrincipalKind(row.principal_kind),
        roles=frozenset(StaffRole(r) for r in row.roles),
        session_id=session_id,
        mfa_verified_at=mfa_verified_at,
    )


class IdentityService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        keys: Keys,
        *,
        passwords: Passwords | None = None,
        staff_mfa_required: bool = False,
    ) -> None:
        self._db = db
        self._clock = clock
        self.keys = keys
        self.passwords = passwords or Passwords()
        self.limiter = RateLimiter(db, clock)
        self.staff_mfa_required = staff_mfa_required

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- principals ------------------------------------------------------------------------------

    async def create_login(
        self,
        conn: AsyncConnection,
        *,
        principal_id: uuid.UUID,
        kind: PrincipalKind,
        login: str,
        password: str,
        roles: frozenset[StaffRole] = frozenset(),
    ) -> None:
        """Create a principal and its password in the caller's transaction.

        Raises ``login_taken`` (409), ``weak_password`` (422) or ``invalid_login`` (422); writes
        nothing then.
        """
        login = normalise_login(login)
        if problems := login_problems(login):
            raise DomainError(IdentityErrorCode.INVALID_LOGIN, "the login is not valid", problems=problems)
        if roles and kind is not PrincipalKind.STAFF:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "only staff have roles")
        if problems := password_problems(password, login):
            raise DomainError(IdentityErrorCode.WEAK_PASSWORD, "the password is too weak", problems=problems)
        password_hash = await asyncio.to_thread(self.passwords.hash, password)
        now = self._clock.now()
        created = (
            await conn.execute(
                text(
                    """
                    INSERT INTO identity.principals (id, kind, login, roles, password_hash, password_changed_at,
                                                     created_at)
                    VALUES (:id, :kind, :login, CAST(:roles AS text[]), :hash, :now, :now)
                    ON CONFLICT (login) DO NOTHING RETURNING id
                    """
                ),
                {
                    "id": principal_id,
                    "kind": kind.value,
                    "login": login,
                    "roles": sorted(r.value for r in roles),
                    "hash": password_hash,
                    "now": now,
                },
            )
        ).first()
        if created is None:
            raise DomainError(IdentityErrorCode.LOGIN_TAKEN, "this login is already in use")
        await record(
            conn,
            AuditEvent(
                action="identity.principal_created",
                subject_type="principal",
                subject_id=str(principal_id),
                details={"kind": kind.value, "roles": sorted(r.value for r in roles)},
                occurred_at=now,
            ),
        )

    async def create_staff(
        self,
        *,
        login: str,
        roles: frozenset[StaffRole],
        password: str,
        actor: Principal | None = None,
        client: ClientInfo | None = None,
    ) -> uuid.UUID:
        """Create a staff member (the ``smartbank staff create`` command); returns their id."""
        if not roles:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "a staff member has at least one role")
        principal_id = new_id()
        async with self._db.transaction() as conn:
            await self.create_login(
                conn, principal_id=principal_id, kind=PrincipalKind.STAFF, login=login, password=password, roles=roles
            )
            await self._audit(
                conn,
                "identity.staff_created",
                client or ClientInfo(),
                actor=actor,
                subject=principal_id,
                details={"roles": sorted(r.value for r in roles)},
            )
        return principal_id

    # -- login -----------------------------------------------------------------------------------

    async def login(
        self, login: str, password: str, client: ClientInfo, mode: SessionMode = SessionMode.BROWSER
    ) -> LoginResult:
        """Check a password; open a session, or an MFA challenge when the principal has MFA."""
        now = self._clock.now()
        key = normalise_login(login)
        failure: DomainError | None = None
        result: LoginResult | None = None
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT id AS principal_id, kind AS principal_kind, roles, status, password_hash,
                               failed_logins, locked_until
                        FROM identity.principals WHERE login = :login FOR UPDATE
                        """
                    ),
                    {"login": key},
                )
            ).first()
            bad = DomainError(IdentityErrorCode.INVALID_CREDENTIALS, "the login or password is wrong")
            if row is None or row.status != "active":
                await asyncio.to_thread(self.passwords.verify_dummy, password)
                await self._audit(
                    conn,
                    "identity.login",
                    client,
                    outcome=Outcome.FAILURE,
                    actor_id=None if row is None else row.principal_id,
                    actor_kind="anonymous" if row is None else row.principal_kind,
                    details={"reason": "unknown_login" if row is None else "disabled"},
                )
                failure = bad
            elif row.locked_until is not None and row.locked_until > now:
                retry_after_s = math.ceil((row.locked_until - now).total_seconds())
                await self._audit(
                    conn,
                    "identity.login",
                    client,
                    outcome=Outcome.DENIED,
                    actor=_principal(row, None, None),
                    details={"reason": "locked", "retry_after_s": retry_after_s},
                )
                failure = DomainError(
                    IdentityErrorCode.ACCOUNT_LOCKED,
                    "too many failed logins: try again later",
                    retry_after_s=retry_after_s,
                )
            elif not await asyncio.to_thread(self.passwords.verify, row.password_hash, password):
                failed = row.failed_logins + 1
                lock = lockout_for(failed)
                await conn.execute(
                    text("UPDATE identity.principals SET failed_logins = :n, locked_until = :until WHERE id = :id"),
                    {"n": failed, "until": now + lock if lock else None, "id": row.principal_id},
                )
                actor = _principal(row, None, None)
                await self._audit(
                    conn,
                    "identity.login",
                    client,
                    outcome=Outcome.FAILURE,
                    actor=actor,
                    details={"reason": "bad_password", "failed_logins": failed},
                )
                if lock:
                    await self._audit(
                        conn,
                        "identity.lockout",
                        client,
                        outcome=Outcome.DENIED,
                        actor=actor,
                        subject=row.principal_id,
                        details={"failed_logins": failed, "locked_s": int(lock.total_seconds())},
                    )
                failure = bad
            else:
                result = await self._password_accepted(conn, row, password, client, mode, now)
        if failure is not None:
            raise failure
        assert result is not None
        return result

    async def _password_accepted(
        self, conn: AsyncConnection, row: Any, password: str, client: ClientInfo, mode: SessionMode, now: datetime
    ) -> LoginResult:
        rehashed = self.passwords.needs_rehash(row.password_hash)
        new_hash = await asyncio.to_thread(self.passwords.hash, password) if rehashed else row.password_hash
        await conn.execute(
            text(
                "UPDATE identity.principals SET failed_logins = 0, locked_until = NULL, password_hash = :hash"
                " WHERE id = :id"
            ),
            {"hash": new_hash, "id": row.principal_id},
        )
        has_mfa = (
            await conn.execute(
                text("SELECT 1 FROM identity.totp WHERE principal_id = :id AND confirmed_at IS NOT NULL"),
                {"id": row.principal_id},
            )
        ).first() is not None
        session_id = new_id()
        challenge = new_token("mfa") if has_mfa else None
        await conn.execute(
            text(
                """
                INSERT INTO identity.sessions (id, principal_id, kind, status, token_hash, created_at, last_used_at,
                                               expires_at, ip, device)
                VALUES (:id, :principal_id, :kind, 'mfa_pending', :token_hash, :now, :now, :expires_at,
                        CAST(:ip AS inet), :device)
                """
            ),
            {
                "id": session_id,
                "principal_id": row.principal_id,
                "kind": mode.value,
                "token_hash": token_hash(challenge) if challenge else None,
                "now": now,
                "expires_at": now + MFA_CHALLENGE_TTL,
                "ip": client.ip,
                "device": client.device[:300] if client.device else None,
            },
        )
        actor = _principal(row, session_id, None)
        await self._audit(
            conn,
            "identity.login",
            client,
            actor=actor,
            subject=row.principal_id,
            details={
                "session_id": str(session_id),
                "mode": mode.value,
                "mfa": "required" if has_mfa else "none",
                "rehashed": rehashed,
            },
        )
        if challenge is not None:
            return LoginResult(
                status="mfa_required",
                principal_id=row.principal_id,
                kind=PrincipalKind(row.principal_kind),
                session_id=session_id,
                mode=mode,
                mfa_challenge=challenge,
            )
        return await self._activate(conn, actor, mode, now, mfa_verified_at=None)

    async def _activate(
        self,
        conn: AsyncConnection,
        principal: Principal,
        mode: SessionMode,
        now: datetime,
        mfa_verified_at: datetime | None,
    ) -> LoginResult:
        """Turn a pending session into an active one and hand out its credentials."""
        assert principal.session_id is not None
        session_token = new_token("sbs") if mode is SessionMode.BROWSER else None
        ttl = BROWSER_SESSION_TTL if mode is SessionMode.BROWSER else TOKEN_FAMILY_TTL
        await conn.execute(
            text(
                """
                UPDATE identity.sessions SET status = 'active', token_hash = :token_hash, expires_at = :expires_at,
                       last_used_at = :now, mfa_verified_at = :mfa_at
                WHERE id = :id
                """
            ),
            {
                "token_hash": token_hash(session_token) if session_token else None,
                "expires_at": now + ttl,
                "now": now,
                "mfa_at": mfa_verified_at,
                "id": principal.session_id,
            },
        )
        if session_token is not None:
            return LoginResult(
                status="authenticated",
                principal_id=principal.id,
                kind=principal.kind,
                session_id=principal.session_id,
                mode=mode,
                session_token=session_token,
                session_expires_in=int(ttl.total_seconds()),
                csrf_token=self.keys.csrf_token(token_hash(session_token)),
                mfa_verified_at=mfa_verified_at,
            )
        refresh = await self._issue_refresh(conn, principal.session_id, now, now + ttl)
        return LoginResult(
            status="authenticated",
            principal_id=principal.id,
            kind=principal.kind,
            session_id=principal.session_id,
            mode=mode,
            access_token=self._access(principal, now),
            refresh_token=refresh,
            mfa_verified_at=mfa_verified_at,
        )

    def _access(self, principal: Principal, now: datetime) -> str:
        assert principal.session_id is not None
        return self.keys.access_token(
            principal_id=principal.id, session_id=principal.session_id, kind=principal.kind.value, now=now
        )

    async def _issue_refresh(
        self, conn: AsyncConnection, session_id: uuid.UUID, now: datetime, expires_at: datetime
    ) -> str:
        refresh = new_token("sbr")
        await conn.execute(
            text(
                "INSERT INTO identity.refresh_tokens (token_hash, session_id, issued_at, expires_at)"
                " VALUES (:hash, :session_id, :now, :expires_at)"
            ),
            {"hash": token_hash(refresh), "session_id": session_id, "now": now, "expires_at": expires_at},
        )
        return refresh

    async def verify_mfa_challenge(self, challenge: str, code: str, client: ClientInfo) -> LoginResult:
        """Second step of a login: a TOTP or recovery code against the challenge from :meth:`login`."""
        now = self._clock.now()
        failure: DomainError | None = None
        result: LoginResult | None = None
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT s.id, s.kind, s.expires_at, s.mfa_attempts, p.id AS principal_id,
                               p.kind AS principal_kind, p.roles, p.status
                        FROM identity.sessions s JOIN identity.principals p ON p.id = s.principal_id
                        WHERE s.token_hash = :hash AND s.status = 'mfa_pending'
                        FOR UPDATE OF s
                        """
                    ),
                    {"hash": token_hash(challenge)},
                )
            ).first()
            invalid = DomainError(IdentityErrorCode.MFA_CHALLENGE_INVALID, "the MFA challenge is unknown or expired")
            if row is None or row.status != "active":
                failure = invalid
            elif row.expires_at <= now or row.mfa_attempts >= MFA_CHALLENGE_ATTEMPTS:
                await self._end(conn, row.id, now, "mfa_challenge_expired")
                failure = invalid
            else:
                actor = _principal(row, row.id, None)
                method = await self._second_factor(conn, row.principal_id, code, now)
                if method is None:
                    attempts = row.mfa_attempts + 1
                    await conn.execute(
                        text("UPDATE identity.sessions SET mfa_attempts = :n WHERE id = :id"),
                        {"n": attempts, "id": row.id},
                    )
                    if attempts >= MFA_CHALLENGE_ATTEMPTS:
                        await self._end(conn, row.id, now, "mfa_attempts")
                    await self._audit(
                        conn,
                        "identity.mfa_verify",
                        client,
                        outcome=Outcome.FAILURE,
                        actor=actor,
                        details={"session_id": str(row.id), "attempts": attempts},
                    )
                    failure = DomainError(IdentityErrorCode.INVALID_MFA_CODE, "the code is wrong, used or expired")
                else:
                    await self._audit(
                        conn,
                        "identity.mfa_verify",
                        client,
                        actor=actor,
                        details={"session_id": str(row.id), "method": method},
                    )
                    result = await self._activate(conn, actor, SessionMode(row.kind), now, mfa_verified_at=now)
        if failure is not None:
            raise failure
        assert result is not None
        return result

    async def _second_factor(
        self, conn: AsyncConnection, principal_id: uuid.UUID, code: str, now: datetime
    ) -> str | None:
        """``totp`` or ``recovery_code`` if ``code`` passes (and is used up), else None."""
        row = (
            await conn.execute(
                text(
                    "SELECT secret_enc, last_step FROM identity.totp"
                    " WHERE principal_id = :id AND confirmed_at IS NOT NULL FOR UPDATE"
                ),
                {"id": principal_id},
            )
        ).first()
        if row is None:
            return None
        code = "".join(code.split())
        if credentials.looks_like_recovery_code(code):
            used = (
                await conn.execute(
                    text(
                        "UPDATE identity.recovery_codes SET used_at = :now"
                        " WHERE principal_id = :id AND code_hash = :hash AND used_at IS NULL RETURNING 1"
                    ),
                    {"now": now, "id": principal_id, "hash": self.keys.recovery_hash(code)},
                )
            ).first()
            return "recovery_code" if used is not None else None
        secret = self.keys.unseal(row.secret_enc, principal_id)
        step = credentials.match_totp(secret, code, now, row.last_step)
        if step is None:
            return None
        await conn.execute(
            text("UPDATE identity.totp SET last_step = :step WHERE principal_id = :id"),
            {"step": step, "id": principal_id},
        )
        return "totp"

    async def change_password(self, principal: Principal, current: str, new: str, client: ClientInfo) -> None:
        """Replace the password after checking the current one; ends every other session of the principal."""
        now = self._clock.now()
        failure: DomainError | None = None
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text("SELECT login, password_hash FROM identity.principals WHERE id = :id FOR UPDATE"),
                    {"id": principal.id},
                )
            ).one()
            if not await asyncio.to_thread(self.passwords.verify, row.password_hash, current):
                await self._audit(
                    conn,
                    "identity.password_changed",
                    client,
                    outcome=Outcome.FAILURE,
                    actor=principal,
                    details={"reason": "bad_password"},
                )
                failure = DomainError(IdentityErrorCode.INVALID_CREDENTIALS, "the current password is wrong")
            else:
                if problems := password_problems(new, row.login):
                    raise DomainError(IdentityErrorCode.WEAK_PASSWORD, "the password is too weak", problems=problems)
                new_hash = await asyncio.to_thread(self.passwords.hash, new)
                await conn.execute(
                    text(
                        "UPDATE identity.principals SET password_hash = :hash, password_changed_at = :now"
                        " WHERE id = :id"
                    ),
                    {"hash": new_hash, "now": now, "id": principal.id},
                )
                ended = await conn.execute(
                    text(
                        "UPDATE identity.sessions SET status = 'ended', ended_at = :now,"
                        " end_reason = 'password_changed'"
                        " WHERE principal_id = :pid AND status <> 'ended' AND id IS DISTINCT FROM :sid"
                    ),
                    {"now": now, "pid": principal.id, "sid": principal.session_id},
                )
                await self._audit(
                    conn,
                    "identity.password_changed",
                    client,
                    actor=principal,
                    details={"other_sessions_ended": int(getattr(ended, "rowcount", 0) or 0)},
                )
        if failure is not None:
            raise failure

    async def reset_password(
        self, conn: AsyncConnection, *, principal_id: uuid.UUID, password: str, client: ClientInfo
    ) -> None:
        """Set a new password for a customer who proved their phone or e-mail (a forgotten password),
        in **the caller's** transaction: ends every session and token family of the login (their
        refresh tokens stop working with them), clears the lockout, and is audited.

        Raises ``weak_password`` (422), writing nothing; ``not_found`` for anyone but an active customer.
        """
        now = self._clock.now()
        row = (
            await conn.execute(
                text("SELECT login, kind, status FROM identity.principals WHERE id = :id FOR UPDATE"),
                {"id": principal_id},
            )
        ).first()
        if row is None or row.kind != PrincipalKind.CUSTOMER.value or row.status != "active":
            raise DomainError(ErrorCode.NOT_FOUND, "no such customer login")
        if problems := password_problems(password, row.login):
            raise DomainError(IdentityErrorCode.WEAK_PASSWORD, "the password is too weak", problems=problems)
        new_hash = await asyncio.to_thread(self.passwords.hash, password)
        await conn.execute(
            text(
                "UPDATE identity.principals SET password_hash = :hash, password_changed_at = :now,"
                " failed_logins = 0, locked_until = NULL WHERE id = :id"
            ),
            {"hash": new_hash, "now": now, "id": principal_id},
        )
        ended = await conn.execute(
            text(
                "UPDATE identity.sessions SET status = 'ended', ended_at = :now, end_reason = 'password_reset'"
                " WHERE principal_id = :pid AND status <> 'ended'"
            ),
            {"now": now, "pid": principal_id},
        )
        await self._audit(
            conn,
            "identity.password_reset",
            client,
            actor_kind="anonymous",
            subject=principal_id,
            details={"sessions_ended": int(getattr(ended, "rowcount", 0) or 0)},
        )

    # -- tokens and sessions -----------------------------------------------------------------------

    async def refresh(self, refresh_token: str, client: ClientInfo) -> Tokens:
        """Rotate a refresh token. Presenting one already used ends the whole token family."""
        now = self._clock.now()
        failure: DomainError | None = None
        result: Tokens | None = None
        invalid = DomainError(IdentityErrorCode.REFRESH_TOKEN_INVALID, "the refresh token is not valid")
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT r.session_id, r.used_at, r.expires_at AS token_expires_at, s.status AS session_status,
                               s.expires_at, s.mfa_verified_at, p.id AS principal_id, p.kind AS principal_kind,
                               p.roles, p.status
                        FROM identity.refresh_tokens r
                        JOIN identity.sessions s ON s.id = r.session_id
                        JOIN identity.principals p ON p.id = s.principal_id
                        WHERE r.token_hash = :hash
                        FOR UPDATE OF r, s
                        """
                    ),
                    {"hash": token_hash(refresh_token)},
                )
            ).first()
            if row is None:
                failure = invalid
            elif row.used_at is not None:
                actor = _principal(row, row.session_id, None)
                if row.session_status != "ended":
                    await self._end(conn, row.session_id, now, "refresh_token_reused")
                await self._audit(
                    conn,
                    "identity.refresh_token_reused",
                    client,
                    outcome=Outcome.DENIED,
                    actor=actor,
                    details={"session_id": str(row.session_id), "first_used_at": row.used_at.isoformat()},
                )
                failure = DomainError(
                    IdentityErrorCode.REFRESH_TOKEN_REUSED,
                    "this refresh token was already used: every token of its session is revoked",
                )
            elif (
                row.session_status != "active"
                or row.expires_at <= now
                or row.token_expires_at <= now
                or row.status != "active"
            ):
                failure = invalid
            else:
                await conn.execute(
                    text("UPDATE identity.refresh_tokens SET used_at = :now WHERE token_hash = :hash"),
                    {"now": now, "hash": token_hash(refresh_token)},
                )
                await conn.execute(
                    text("UPDATE identity.sessions SET last_used_at = :now WHERE id = :id"),
                    {"now": now, "id": row.session_id},
                )
                principal = _principal(row, row.session_id, row.mfa_verified_at)
                result = Tokens(
                    access_token=self._access(principal, now),
                    refresh_token=await self._issue_refresh(conn, row.session_id, now, row.expires_at),
                    session_id=row.session_id,
                )
        if failure is not None:
            raise failure
        assert result is not None
        return result

    async def authenticate_access_token(self, token: str) -> Principal | None:
        """The principal of a valid access token whose session is still active."""
        now = self._clock.now()
        ids = self.keys.read_access_token(token, now)
        if ids is None:
            return None
        principal_id, session_id = ids
        row = await self._active_session("s.id = :sid AND s.kind = 'token'", {"sid": session_id}, now)
        if row is None or row.principal_id != principal_id:
            return None
        return _principal(row, row.id, row.mfa_verified_at)

    async def authenticate_session(self, session_token: str) -> tuple[Principal, str] | None:
        """The principal of a browser session cookie, and the CSRF token its unsafe requests must carry."""
        if len(session_token) > 200:
            return None
        hashed = token_hash(session_token)
        row = await self._active_session(
            "s.token_hash = :hash AND s.kind = 'browser'", {"hash": hashed}, self._clock.now()
        )
        if row is None:
            return None
        return _principal(row, row.id, row.mfa_verified_at), self.keys.csrf_token(hashed)

    async def _active_session(self, where: str, params: dict[str, Any], now: datetime) -> Row[Any] | None:
        async with self._db.connect() as conn:
            return (
                await conn.execute(
                    text(
                        f"""
                        SELECT s.id, s.mfa_verified_at, p.id AS principal_id, p.kind AS principal_kind, p.roles
                        FROM identity.sessions s JOIN identity.principals p ON p.id = s.principal_id
                        WHERE {where} AND s.status = 'active' AND s.expires_at > :now AND p.status = 'active'
                        """
                    ),
                    {**params, "now": now},
                )
            ).first()

    async def _end(self, conn: AsyncConnection, session_id: uuid.UUID, now: datetime, reason: str) -> bool:
        ended = await conn.execute(
            text(
                "UPDATE identity.sessions SET status = 'ended', ended_at = :now, end_reason = :reason"
                " WHERE id = :id AND status <> 'ended' RETURNING id"
            ),
            {"now": now, "reason": reason, "id": session_id},
        )
        return ended.first() is not None

    async def logout(self, principal: Principal, client: ClientInfo) -> None:
        """End the session (or token family) the request came with."""
        if principal.session_id is None:
            return
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if await self._end(conn, principal.session_id, now, "logout"):
                await self._audit(
                    conn, "identity.logout", client, actor=principal, details={"session_id": str(principal.session_id)}
                )

    async def list_sessions(self, principal: Principal, limit: int = MAX_SESSIONS_LISTED) -> list[SessionInfo]:
        """The principal's active sessions and token families, newest first."""
        async with self._db.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        SELECT id, kind, created_at, last_used_at, expires_at, mfa_verified_at, host(ip) AS ip, device
                        FROM identity.sessions
                        WHERE principal_id = :pid AND status = 'active' AND expires_at > :now
                        ORDER BY created_at DESC, id DESC LIMIT :limit
                        """
                    ),
                    {"pid": principal.id, "now": self._clock.now(), "limit": min(limit, MAX_SESSIONS_LISTED)},
                )
            ).all()
        return [
            SessionInfo(
                id=r.id,
                kind=SessionMode(r.kind),
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                expires_at=r.expires_at,
                mfa_verified_at=r.mfa_verified_at,
                ip=r.ip,
                device=r.device,
            )
            for r in rows
        ]

    async def staff_members(self, principal: Principal, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StaffMember]:
        """The staff among ``ids`` (at most :data:`MAX_STAFF_LOOKUP`), by id: for staff with
        ``audit:read`` reading who did what. Ids of customers or unknown ids are left out."""
        if not (principal.is_staff and principal.can(Permission.AUDIT_READ)):
            raise DomainError(ErrorCode.FORBIDDEN, "not allowed")
        wanted = list(dict.fromkeys(ids))[:MAX_STAFF_LOOKUP]
        if not wanted:
            return {}
        async with self._db.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT id, login, roles FROM identity.principals WHERE id = ANY(:ids) AND kind = 'staff'"),
                    {"ids": wanted},
                )
            ).all()
        return {r.id: StaffMember(r.id, r.login, roles_of(r.roles)) for r in rows}

    async def end_session(self, principal: Principal, session_id: uuid.UUID, client: ClientInfo) -> None:
        """End one of the principal's own sessions (``session_not_found`` for anyone else's)."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            ended = (
                await conn.execute(
                    text(
                        "UPDATE identity.sessions SET status = 'ended', ended_at = :now, end_reason = 'ended_by_user'"
                        " WHERE id = :id AND principal_id = :pid AND status = 'active' RETURNING id"
                    ),
                    {"now": now, "id": session_id, "pid": principal.id},
                )
            ).first()
            if ended is None:
                raise DomainError(IdentityErrorCode.SESSION_NOT_FOUND, "no such active session of yours")
            await self._audit(
                conn, "identity.session_ended", client, actor=principal, details={"session_id": str(session_id)}
            )

    # -- MFA ---------------------------------------------------------------------------------------

    async def mfa_status(self, principal: Principal) -> MfaStatus:
        async with self._db.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT t.confirmed_at,
                               (SELECT count(*) FROM identity.recovery_codes r
                                WHERE r.principal_id = :id AND r.used_at IS NULL) AS left
                        FROM identity.totp t WHERE t.principal_id = :id
                        """
                    ),
                    {"id": principal.id},
                )
            ).first()
        if row is None:
            return MfaStatus(enrolled=False, enrolment_pending=False, recovery_codes_left=0)
        enrolled = row.confirmed_at is not None
        return MfaStatus(enrolled=enrolled, enrolment_pending=not enrolled, recovery_codes_left=row.left)

    async def start_mfa_enrolment(self, principal: Principal, client: ClientInfo) -> Enrolment:
        """A new TOTP secret (unconfirmed until :meth:`confirm_mfa_enrolment`), its URI and QR code."""
        now = self._clock.now()
        secret = credentials.new_totp_secret()
        async with self._db.transaction() as conn:
            login = (
                await conn.execute(text("SELECT login FROM identity.principals WHERE id = :id"), {"id": principal.id})
            ).scalar_one()
            stored = (
                await conn.execute(
                    text(
                        """
                        INSERT INTO identity.totp (principal_id, secret_enc, created_at) VALUES (:id, :secret, :now)
                        ON CONFLICT (principal_id) DO UPDATE SET secret_enc = EXCLUDED.secret_enc,
                            created_at = EXCLUDED.created_at, last_step = 0
                        WHERE identity.totp.confirmed_at IS NULL
                        RETURNING 1
                        """
                    ),
                    {"id": principal.id, "secret": self.keys.seal(secret, principal.id), "now": now},
                )
            ).first()
            if stored is None:
                raise DomainError(IdentityErrorCode.MFA_ALREADY_ENROLLED, "MFA is already on: disable it first")
            await self._audit(conn, "identity.mfa_enrolment_started", client, actor=principal)
        uri = credentials.totp_uri(secret, login)
        return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=credentials.qr_svg(uri))

    async def confirm_mfa_enrolment(self, principal: Principal, code: str, client: ClientInfo) -> list[str]:
        """Turn MFA on with a first code; returns the recovery codes (shown this once only)."""
        now = self._clock.now()
        failure: DomainError | None = None
        codes: list[str] = []
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text("SELECT secret_enc, confirmed_at FROM identity.totp WHERE principal_id = :id FOR UPDATE"),
                    {"id": principal.id},
                )
            ).first()
            if row is None:
                raise DomainError(IdentityErrorCode.MFA_ENROLMENT_NOT_STARTED, "start an enrolment first")
            if row.confirmed_at is not None:
                raise DomainError(IdentityErrorCode.MFA_ALREADY_ENROLLED, "MFA is already on")
            step = credentials.match_totp(self.keys.unseal(row.secret_enc, principal.id), code.strip(), now, 0)
            if step is None:
                await self._audit(
                    conn,
                    "identity.mfa_enrolled",
                    client,
                    outcome=Outcome.FAILURE,
                    actor=principal,
                    details={"reason": "bad_code"},
                )
                failure = DomainError(IdentityErrorCode.INVALID_MFA_CODE, "the code is wrong or expired")
            else:
                await conn.execute(
                    text("UPDATE identity.totp SET confirmed_at = :now, last_step = :step WHERE principal_id = :id"),
                    {"now": now, "step": step, "id": principal.id},
                )
                codes = await self._replace_recovery_codes(conn, principal.id, now)
                if principal.session_id is not None:
                    await conn.execute(
                        text("UPDATE identity.sessions SET mfa_verified_at = :now WHERE id = :id"),
                        {"now": now, "id": principal.session_id},
                    )
                await self._audit(conn, "identity.mfa_enrolled", client, actor=principal)
        if failure is not None:
            raise failure
        return codes

    async def _replace_recovery_codes(self, conn: AsyncConnection, principal_id: uuid.UUID, now: datetime) -> list[str]:
        codes = credentials.new_recovery_codes()
        await conn.execute(text("DELETE FROM identity.recovery_codes WHERE principal_id = :id"), {"id": principal_id})
        await conn.execute(
            text("INSERT INTO identity.recovery_codes (principal_id, code_hash, created_at) VALUES (:id, :hash, :now)"),
            [{"id": principal_id, "hash": self.keys.recovery_hash(code), "now": now} for code in codes],
        )
        return codes

    async def regenerate_recovery_codes(self, principal: Principal, client: ClientInfo) -> list[str]:
        """New recovery codes replacing the old ones; needs a fresh MFA (step-up)."""
        now = self._clock.now()
        require_step_up(principal, now)
        async with self._db.transaction() as conn:
            await self._require_enrolled(conn, principal.id)
            codes = await self._replace_recovery_codes(conn, principal.id, now)
            await self._audit(conn, "identity.recovery_codes_regenerated", client, actor=principal)
        return codes

    async def disable_mfa(self, principal: Principal, client: ClientInfo) -> None:
        """Turn MFA off; needs a fresh MFA (step-up)."""
        now = self._clock.now()
        require_step_up(principal, now)
        async with self._db.transaction() as conn:
            await self._require_enrolled(conn, principal.id)
            await conn.execute(
                text("DELETE FROM identity.recovery_codes WHERE principal_id = :id"), {"id": principal.id}
            )
            await conn.execute(text("DELETE FROM identity.totp WHERE principal_id = :id"), {"id": principal.id})
            await self._audit(conn, "identity.mfa_disabled", client, actor=principal)

    async def _require_enrolled(self, conn: AsyncConnection, principal_id: uuid.UUID) -> None:
        enrolled = (
            await conn.execute(
                text("SELECT 1 FROM identity.totp WHERE principal_id = :id AND confirmed_at IS NOT NULL FOR UPDATE"),
                {"id": principal_id},
            )
        ).first()
        if enrolled is None:
            raise DomainError(IdentityErrorCode.MFA_NOT_ENROLLED, "MFA is not on for this login")

    async def step_up(self, principal: Principal, code: str, client: ClientInfo) -> StepUp:
        """Pass an MFA challenge now: refreshes the session's ``mfa_verified_at``."""
        now = self._clock.now()
        if principal.session_id is None:
            raise DomainError(ErrorCode.UNAUTHENTICATED, "step-up needs a session")
        failure: DomainError | None = None
        async with self._db.transaction() as conn:
            await self._require_enrolled(conn, principal.id)
            method = await self._second_factor(conn, principal.id, code, now)
            if method is None:
                await self._audit(conn, "identity.step_up", client, outcome=Outcome.FAILURE, actor=principal)
                failure = DomainError(IdentityErrorCode.INVALID_MFA_CODE, "the code is wrong, used or expired")
            else:
                kind = (
                    await conn.execute(
                        text("UPDATE identity.sessions SET mfa_verified_at = :now WHERE id = :id RETURNING kind"),
                        {"now": now, "id": principal.session_id},
                    )
                ).scalar_one()
                await self._audit(conn, "identity.step_up", client, actor=principal, details={"method": method})
        if failure is not None:
            raise failure
        access = self._access(principal, now) if kind == SessionMode.TOKEN.value else None
        return StepUp(mfa_verified_at=now, access_token=access)

    # -- audit ---------------------------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        action: str,
        client: ClientInfo,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        actor: Principal | None = None,
        actor_kind: str | None = None,
        actor_id: uuid.UUID | None = None,
        subject: uuid.UUID | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if actor is not None:
            actor_kind, actor_id = actor.kind.value, actor.id
        subject_id = subject or actor_id
        audit_id = await record(
            conn,
            AuditEvent(
                action=action,
                outcome=outcome,
                actor_kind=actor_kind or "system",
                actor_id=actor_id,
                subject_type="principal" if subject_id else None,
                subject_id=str(subject_id) if subject_id else None,
                ip=client.ip,
                device=client.device,
                request_id=client.request_id,
                details=details or {},
                occurred_at=self._clock.now(),
            ),
        )
        notice = SECURITY_NOTICES.get((action, outcome))
        for_customer = actor_kind == PrincipalKind.CUSTOMER.value or action in CUSTOMER_SUBJECT_ACTIONS
        if notice is not None and for_customer and subject_id is not None:
            params = {"ip": client.ip, "device": client.device[:120] if client.device else None}
            await notify(conn, subject_id, notice, params, dedupe_key=f"audit:{audit_id}", at=self._clock.now())


def roles_of(names: Sequence[str]) -> frozenset[StaffRole]:
    """Parse role names (the CLI's ``--role``); unknown names are a validation error."""
    try:
        return frozenset(StaffRole(name) for name in names)
    except ValueError as exc:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"unknown role; one of {', '.join(StaffRole)}") from exc
