"""Identity use cases against a real PostgreSQL: passwords, lockout, TOTP, recovery codes, tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

import argon2
import pytest
from sqlalchemy import text

from smartbank.identity.credentials import ARGON2_MEMORY_KIB, Passwords, totp_code, totp_step
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.identity.service import IdentityService, SessionMode
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.db import Database
from smartbank.platform.settings import Settings
from tests.identity.helpers import PASSWORD, create_principal, service, unique_login

CLIENT = ClientInfo(ip="203.0.113.9", device="pytest", request_id="req-identity")


@pytest.fixture
def identity(db: Database, clock: FrozenClock, settings: Settings) -> IdentityService:
    return service(db, clock, settings)


async def count(db: Database, sql: str, **params: object) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def audit_trail(db: Database, principal_id: uuid.UUID) -> list[tuple[str, str]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, outcome FROM platform.audit_log WHERE actor_id = :id OR subject_id = :sid ORDER BY seq"
            ),
            {"id": principal_id, "sid": str(principal_id)},
        )
        return [(r.action, r.outcome) for r in rows]


# -- passwords ---------------------------------------------------------------------------------------


def test_argon2id_parameters_meet_the_floor() -> None:
    stored = Passwords().hash("a long enough password")
    params = argon2.extract_parameters(stored)
    assert params.type is argon2.Type.ID
    assert params.memory_cost == ARGON2_MEMORY_KIB == 47104
    assert params.time_cost == 1 and params.parallelism == 1
    assert stored.startswith("$argon2id$v=19$m=47104,t=1,p=1$")


async def test_login_rehashes_a_password_stored_with_weaker_parameters(identity: IdentityService, db: Database) -> None:
    principal_id, login = await create_principal(identity, db)
    weak = argon2.PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1).hash(PASSWORD)
    async with db.transaction() as conn:
        await conn.execute(
            text("UPDATE identity.principals SET password_hash = :h WHERE id = :id"), {"h": weak, "id": principal_id}
        )
    await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)
    async with db.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT password_hash FROM identity.principals WHERE id = :id"), {"id": principal_id}
            )
        ).scalar_one()
    assert stored != weak
    assert argon2.extract_parameters(stored).memory_cost == 47104
    assert identity.passwords.verify(stored, PASSWORD)
    # A hash with today's parameters is left alone on the next login.
    await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)
    async with db.connect() as conn:
        again = (
            await conn.execute(
                text("SELECT password_hash FROM identity.principals WHERE id = :id"), {"id": principal_id}
            )
        ).scalar_one()
    assert again == stored


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short-pw1", IdentityErrorCode.WEAK_PASSWORD),
        ("SAME-LOGIN@example.com", IdentityErrorCode.WEAK_PASSWORD),
        ("aaaaaaaaaaaaaaaa", IdentityErrorCode.WEAK_PASSWORD),
    ],
)
async def test_create_login_refuses_weak_passwords_and_writes_nothing(
    identity: IdentityService, db: Database, password: str, code: str
) -> None:
    principals = await count(db, "SELECT count(*) FROM identity.principals")
    audits = await count(db, "SELECT count(*) FROM platform.audit_log")
    with pytest.raises(DomainError) as caught:
        async with db.transaction() as conn:
            await identity.create_login(
                conn,
                principal_id=uuid.uuid4(),
                kind=PrincipalKind.CUSTOMER,
                login="same-login@example.com",
                password=password,
            )
    assert caught.value.code == code and caught.value.http_status == 422
    assert await count(db, "SELECT count(*) FROM identity.principals") == principals
    assert await count(db, "SELECT count(*) FROM platform.audit_log") == audits


async def test_create_login_refuses_a_taken_login_with_409(identity: IdentityService, db: Database) -> None:
    _, login = await create_principal(identity, db)
    principals = await count(db, "SELECT count(*) FROM identity.principals")
    with pytest.raises(DomainError) as caught:
        await create_principal(identity, db, login=login.upper())
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.LOGIN_TAKEN, 409)
    assert await count(db, "SELECT count(*) FROM identity.principals") == principals


async def test_only_staff_have_roles(identity: IdentityService, db: Database) -> None:
    with pytest.raises(DomainError) as caught:
        await create_principal(identity, db, roles=frozenset({StaffRole.ADMIN}))
    assert caught.value.code == ErrorCode.VALIDATION_ERROR
    staff_id, _ = await create_principal(
        identity, db, kind=PrincipalKind.STAFF, roles=frozenset({StaffRole.TELLER, StaffRole.CRM_AGENT})
    )
    assert (
        await count(
            db, "SELECT count(*) FROM identity.principals WHERE id = :id AND roles = '{crm_agent,teller}'", id=staff_id
        )
        == 1
    )


# -- lockout -----------------------------------------------------------------------------------------


async def test_lockout_after_five_failures_with_doubling_backoff_and_audit_rows(
    identity: IdentityService, db: Database, clock: FrozenClock
) -> None:
    principal_id, login = await create_principal(identity, db)
    for _ in range(4):
        with pytest.raises(DomainError) as caught:
            await identity.login(login, "wrong password here", CLIENT)
        assert caught.value.code == IdentityErrorCode.INVALID_CREDENTIALS
    with pytest.raises(DomainError) as caught:  # the fifth failure locks for one minute
        await identity.login(login, "wrong password here", CLIENT)
    assert caught.value.code == IdentityErrorCode.INVALID_CREDENTIALS

    # Locked: even the right password is refused, without being checked or counted.
    with pytest.raises(DomainError) as caught:
        await identity.login(login, PASSWORD, CLIENT)
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.ACCOUNT_LOCKED, 423)
    assert caught.value.details == {"retry_after_s": 60}

    clock.advance(timedelta(seconds=61))
    with pytest.raises(DomainError):  # the sixth failure locks for two minutes
        await identity.login(login, "wrong again", CLIENT)
    clock.advance(timedelta(seconds=119))
    with pytest.raises(DomainError) as caught:
        await identity.login(login, PASSWORD, CLIENT)
    assert caught.value.details == {"retry_after_s": 1}
    clock.advance(timedelta(seconds=1))
    result = await identity.login(login, PASSWORD, CLIENT)
    assert result.status == "authenticated"
    assert await count(db, "SELECT failed_logins FROM identity.principals WHERE id = :id", id=principal_id) == 0

    trail = await audit_trail(db, principal_id)
    assert trail == [
        ("identity.principal_created", "success"),
        *[("identity.login", "failure")] * 5,
        ("identity.lockout", "denied"),
        ("identity.login", "denied"),
        ("identity.login", "failure"),
        ("identity.lockout", "denied"),
        ("identity.login", "denied"),
        ("identity.login", "success"),
    ]
    async with db.connect() as conn:
        lockouts = (
            await conn.execute(
                text(
                    "SELECT details, host(ip), device, request_id FROM platform.audit_log"
                    " WHERE action = 'identity.lockout' AND actor_id = :id ORDER BY seq"
                ),
                {"id": principal_id},
            )
        ).all()
    assert [tuple(r) for r in lockouts] == [
        ({"failed_logins": 5, "locked_s": 60}, "203.0.113.9", "pytest", "req-identity"),
        ({"failed_logins": 6, "locked_s": 120}, "203.0.113.9", "pytest", "req-identity"),
    ]


async def test_unknown_login_is_refused_like_a_wrong_password(identity: IdentityService) -> None:
    with pytest.raises(DomainError) as caught:
        await identity.login(unique_login(), PASSWORD, CLIENT)
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.INVALID_CREDENTIALS, 401)


# -- MFA ---------------------------------------------------------------------------------------------


async def enrolled(
    identity: IdentityService, db: Database, clock: FrozenClock
) -> tuple[uuid.UUID, str, str, list[str]]:
    """A customer with MFA on: (id, login, TOTP secret, recovery codes). The clock moves to a fresh step."""
    principal_id, login = await create_principal(identity, db)
    first = await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)
    me = Principal(principal_id, PrincipalKind.CUSTOMER, session_id=first.session_id)
    enrolment = await identity.start_mfa_enrolment(me, CLIENT)
    codes = await identity.confirm_mfa_enrolment(me, totp_code(enrolment.secret, totp_step(clock.now())), CLIENT)
    clock.advance(timedelta(seconds=30))
    return principal_id, login, enrolment.secret, codes


async def test_a_used_totp_code_is_rejected_when_replayed_within_its_window(
    identity: IdentityService, db: Database, clock: FrozenClock
) -> None:
    principal_id, login, secret, _ = await enrolled(identity, db, clock)
    code = totp_code(secret, totp_step(clock.now()))
    challenge = await identity.login(login, PASSWORD, CLIENT)
    assert challenge.status == "mfa_required" and challenge.mfa_challenge is not None
    result = await identity.verify_mfa_challenge(challenge.mfa_challenge, code, CLIENT)
    assert result.status == "authenticated" and result.mfa_verified_at == clock.now()

    clock.advance(timedelta(seconds=10))  # the same step, still valid by time
    second = await identity.login(login, PASSWORD, CLIENT)
    assert second.mfa_challenge is not None
    with pytest.raises(DomainError) as caught:
        await identity.verify_mfa_challenge(second.mfa_challenge, code, CLIENT)
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.INVALID_MFA_CODE, 401)
    # A code of an earlier step (still inside the drift window) is a replay too.
    with pytest.raises(DomainError):
        await identity.verify_mfa_challenge(second.mfa_challenge, totp_code(secret, totp_step(clock.now()) - 1), CLIENT)
    clock.advance(timedelta(seconds=30))
    ok = await identity.verify_mfa_challenge(second.mfa_challenge, totp_code(secret, totp_step(clock.now())), CLIENT)
    assert ok.status == "authenticated"
    outcomes = [o for a, o in await audit_trail(db, principal_id) if a == "identity.mfa_verify"]
    assert outcomes == ["success", "failure", "failure", "success"]


async def test_a_recovery_code_works_once(identity: IdentityService, db: Database, clock: FrozenClock) -> None:
    principal_id, login, _, codes = await enrolled(identity, db, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert (
        await count(db, "SELECT count(*) FROM identity.recovery_codes WHERE principal_id = :id", id=principal_id) == 10
    )
    # Stored as keyed hashes only, never as the codes.
    async with db.connect() as conn:
        stored = {
            bytes(r[0])
            for r in await conn.execute(
                text("SELECT code_hash FROM identity.recovery_codes WHERE principal_id = :id"), {"id": principal_id}
            )
        }
    assert stored == {identity.keys.recovery_hash(c) for c in codes}

    first = await identity.login(login, PASSWORD, CLIENT)
    assert first.mfa_challenge is not None
    assert (
        await identity.verify_mfa_challenge(first.mfa_challenge, codes[0].upper(), CLIENT)
    ).status == "authenticated"

    second = await identity.login(login, PASSWORD, CLIENT)
    assert second.mfa_challenge is not None
    with pytest.raises(DomainError) as caught:
        await identity.verify_mfa_challenge(second.mfa_challenge, codes[0], CLIENT)
    assert caught.value.code == IdentityErrorCode.INVALID_MFA_CODE
    assert (await identity.verify_mfa_challenge(second.mfa_challenge, codes[1], CLIENT)).status == "authenticated"
    assert (
        await count(
            db,
            "SELECT count(*) FROM identity.recovery_codes WHERE principal_id = :id AND used_at IS NULL",
            id=principal_id,
        )
        == 8
    )


async def test_an_mfa_challenge_dies_after_five_wrong_codes(
    identity: IdentityService, db: Database, clock: FrozenClock
) -> None:
    _, login, secret, _ = await enrolled(identity, db, clock)
    challenge = (await identity.login(login, PASSWORD, CLIENT)).mfa_challenge
    assert challenge is not None
    for _ in range(5):
        with pytest.raises(DomainError) as caught:
            await identity.verify_mfa_challenge(challenge, "000000", CLIENT)
        assert caught.value.code == IdentityErrorCode.INVALID_MFA_CODE
    with pytest.raises(DomainError) as caught:
        await identity.verify_mfa_challenge(challenge, totp_code(secret, totp_step(clock.now())), CLIENT)
    assert caught.value.code == IdentityErrorCode.MFA_CHALLENGE_INVALID


async def test_step_up_is_required_then_satisfied(identity: IdentityService, db: Database, clock: FrozenClock) -> None:
    principal_id, login, secret, _ = await enrolled(identity, db, clock)
    challenge = (await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)).mfa_challenge
    assert challenge is not None
    session = await identity.verify_mfa_challenge(challenge, totp_code(secret, totp_step(clock.now())), CLIENT)
    assert session.access_token is not None
    clock.advance(timedelta(minutes=6))
    me = await identity.authenticate_access_token(session.access_token)
    assert me is not None and me.mfa_verified_at == clock.now() - timedelta(minutes=6)
    with pytest.raises(DomainError) as caught:
        await identity.disable_mfa(me, CLIENT)
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.STEP_UP_REQUIRED, 403)
    assert caught.value.details == {"max_age_s": 300}

    step = await identity.step_up(me, totp_code(secret, totp_step(clock.now())), CLIENT)
    assert step.mfa_verified_at == clock.now() and step.access_token is not None
    fresh = await identity.authenticate_access_token(step.access_token)
    assert fresh is not None and fresh.mfa_verified_at == clock.now()
    await identity.disable_mfa(fresh, CLIENT)
    assert (await identity.mfa_status(fresh)).enrolled is False
    assert (await identity.login(login, PASSWORD, CLIENT)).status == "authenticated"  # no MFA challenge now
    actions = [a for a, _ in await audit_trail(db, principal_id)]
    assert actions.count("identity.step_up") == 1 and actions.count("identity.mfa_disabled") == 1


# -- tokens ------------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(identity: IdentityService, db: Database) -> None:
    principal_id, login = await create_principal(identity, db)
    first = await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)
    assert first.refresh_token is not None and first.access_token is not None
    second = await identity.refresh(first.refresh_token, CLIENT)
    assert second.refresh_token != first.refresh_token and second.session_id == first.session_id
    third = await identity.refresh(second.refresh_token, CLIENT)
    assert await identity.authenticate_access_token(third.access_token) is not None

    with pytest.raises(DomainError) as caught:
        await identity.refresh(first.refresh_token, CLIENT)  # an old one, replayed
    assert (caught.value.code, caught.value.http_status) == (IdentityErrorCode.REFRESH_TOKEN_REUSED, 401)

    for access in (first.access_token, second.access_token, third.access_token):
        assert await identity.authenticate_access_token(access) is None
    with pytest.raises(DomainError) as caught:
        await identity.refresh(third.refresh_token, CLIENT)
    assert caught.value.code == IdentityErrorCode.REFRESH_TOKEN_INVALID
    assert (
        await count(
            db,
            "SELECT count(*) FROM identity.sessions WHERE id = :id AND end_reason = 'refresh_token_reused'",
            id=first.session_id,
        )
        == 1
    )
    assert ("identity.refresh_token_reused", "denied") in await audit_trail(db, principal_id)


async def test_access_tokens_expire_after_ten_minutes(
    identity: IdentityService, db: Database, clock: FrozenClock
) -> None:
    _, login = await create_principal(identity, db)
    result = await identity.login(login, PASSWORD, CLIENT, SessionMode.TOKEN)
    assert result.access_token is not None
    clock.advance(timedelta(minutes=9, seconds=59))
    assert await identity.authenticate_access_token(result.access_token) is not None
    clock.advance(timedelta(seconds=1))
    assert await identity.authenticate_access_token(result.access_token) is None
    assert await identity.authenticate_access_token(result.access_token[:-2] + "xx") is None
