"""A forgotten password: a code to the phone or e-mail on file, then identity sets the new password.

Against the real identity service (sessions, refresh tokens, lockout and audit rows are its own).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from smartbank.customers.errors import CustomerErrorCode
from smartbank.customers.model import ContactKind, RequestInfo
from smartbank.customers.service import DEVELOPMENT_PII_KEY, CustomerService
from smartbank.identity.errors import IdentityErrorCode
from smartbank.identity.model import ClientInfo
from smartbank.identity.service import IdentityService, SessionMode
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.platform.db import Database
from smartbank.platform.notify import OutboxNotifier
from smartbank.platform.settings import Settings
from tests.customers.helpers import last_code, random_email, random_phone, rows, scalar
from tests.identity.helpers import service

PASSWORD = "violet-harbour-lantern-42"
NEW_PASSWORD = "amber-orchard-compass-17"
CLIENT = ClientInfo(ip="203.0.113.7", device="pytest")
REQUEST = RequestInfo(ip="203.0.113.7", device="pytest", request_id="req-reset")


@pytest.fixture
def identity(db: Database, clock: FrozenClock, settings: Settings) -> IdentityService:
    return service(db, clock, settings)


@pytest.fixture
def customers(db: Database, clock: FrozenClock, identity: IdentityService) -> CustomerService:
    return CustomerService(db, clock, logins=identity, notifier=OutboxNotifier("test"), pii_key=DEVELOPMENT_PII_KEY)


async def registered(customers: CustomerService, db: Database, phone: str | None = None) -> tuple[uuid.UUID, str]:
    """A customer registered by phone through the real identity service: (id, E.164 phone)."""
    started = await customers.start_registration(ContactKind.PHONE, phone or random_phone())
    address = await scalar(db, "SELECT address FROM customers.verifications WHERE id = :id", id=started.verification_id)
    profile = await customers.complete_registration(
        started.verification_id,
        await last_code(db, address),
        password=PASSWORD,
        accepted_terms=True,
        terms_version="2026-11",
    )
    return profile.id, address


async def outbox_count(db: Database, recipient: str) -> int:
    return int(
        await scalar(
            db,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'notifications.requested'"
            " AND payload->>'recipient' = :r",
            r=recipient,
        )
    )


async def test_reset_sets_the_password_ends_every_session_clears_the_lockout_and_is_audited(
    customers: CustomerService, identity: IdentityService, db: Database
) -> None:
    customer_id, phone = await registered(customers, db)
    browser = await identity.login(phone, PASSWORD, CLIENT)
    app = await identity.login(phone, PASSWORD, CLIENT, SessionMode.TOKEN)
    assert app.refresh_token is not None and browser.session_token is not None
    for _ in range(5):  # the fifth failure locks the login
        with pytest.raises(DomainError):
            await identity.login(phone, "not-the-password-at-all", CLIENT)
    with pytest.raises(DomainError) as locked:
        await identity.login(phone, PASSWORD, CLIENT)
    assert locked.value.code == IdentityErrorCode.ACCOUNT_LOCKED

    started = await customers.start_password_reset(ContactKind.PHONE, phone, request=REQUEST)
    assert started.address_masked == phone[:6] + "****" + phone[-4:]
    code = await last_code(db, phone)
    await customers.complete_password_reset(started.verification_id, code, new_password=NEW_PASSWORD, request=REQUEST)

    # Every session and token family has ended; the refresh token no longer works.
    assert await rows(
        db, "SELECT DISTINCT status, end_reason FROM identity.sessions WHERE principal_id = :p", p=customer_id
    ) == [("ended", "password_reset")]
    assert await identity.authenticate_session(browser.session_token) is None
    with pytest.raises(DomainError) as refused:
        await identity.refresh(app.refresh_token, CLIENT)
    assert refused.value.code == IdentityErrorCode.REFRESH_TOKEN_INVALID
    # The lockout is cleared and only the new password works.
    assert await rows(
        db, "SELECT failed_logins, locked_until FROM identity.principals WHERE id = :p", p=customer_id
    ) == [(0, None)]
    with pytest.raises(DomainError) as old:
        await identity.login(phone, PASSWORD, CLIENT)
    assert old.value.code == IdentityErrorCode.INVALID_CREDENTIALS
    assert (await identity.login(phone, NEW_PASSWORD, CLIENT)).status == "authenticated"
    # Audited with where it came from, never with the code or the password.
    audited = await rows(
        db,
        "SELECT action, actor_kind, host(ip), details FROM platform.audit_log"
        " WHERE subject_id = :s AND action = 'identity.password_reset'",
        s=str(customer_id),
    )
    assert audited == [("identity.password_reset", "anonymous", "203.0.113.7", {"sessions_ended": 2})]
    trail = await rows(
        db,
        "SELECT details::text FROM platform.audit_log WHERE subject_id IN (:s, :v)",
        s=str(customer_id),
        v=str(started.verification_id),
    )
    assert not any(code in r[0] or NEW_PASSWORD in r[0] for r in trail)
    assert await scalar(
        db, "SELECT consumed_at IS NOT NULL FROM customers.verifications WHERE id = :id", id=started.verification_id
    )
    # The customer finds a notice of the reset in their inbox.
    assert await rows(
        db,
        "SELECT kind, params->>'ip' FROM platform.notifications"
        " WHERE recipient_id = :p AND kind = 'security.password_reset'",
        p=customer_id,
    ) == [("security.password_reset", "203.0.113.7")]


async def test_a_used_code_is_refused(customers: CustomerService, db: Database) -> None:
    _, phone = await registered(customers, db)
    started = await customers.start_password_reset(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    await customers.complete_password_reset(started.verification_id, code, new_password=NEW_PASSWORD)
    with pytest.raises(DomainError) as again:
        await customers.complete_password_reset(started.verification_id, code, new_password="another-long-phrase-99")
    assert again.value.code == CustomerErrorCode.VERIFICATION_ALREADY_USED


async def test_an_expired_code_is_refused_and_the_password_is_unchanged(
    customers: CustomerService, identity: IdentityService, db: Database, clock: FrozenClock
) -> None:
    customer_id, phone = await registered(customers, db)
    before = await scalar(db, "SELECT password_hash FROM identity.principals WHERE id = :p", p=customer_id)
    started = await customers.start_password_reset(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    clock.advance(timedelta(minutes=10))
    with pytest.raises(DomainError) as expired:
        await customers.complete_password_reset(started.verification_id, code, new_password=NEW_PASSWORD)
    assert expired.value.code == CustomerErrorCode.VERIFICATION_EXPIRED
    assert await scalar(db, "SELECT password_hash FROM identity.principals WHERE id = :p", p=customer_id) == before


async def test_wrong_codes_count_and_five_lock_the_reset(customers: CustomerService, db: Database) -> None:
    _, phone = await registered(customers, db)
    started = await customers.start_password_reset(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    wrong = "000000" if code != "000000" else "111111"
    for left in range(4, -1, -1):
        with pytest.raises(DomainError) as refused:
            await customers.complete_password_reset(started.verification_id, wrong, new_password=NEW_PASSWORD)
        assert (refused.value.code, refused.value.details["attempts_left"]) == (
            CustomerErrorCode.VERIFICATION_CODE_INVALID,
            left,
        )
    with pytest.raises(DomainError) as exhausted:
        await customers.complete_password_reset(started.verification_id, code, new_password=NEW_PASSWORD)
    assert exhausted.value.code == CustomerErrorCode.VERIFICATION_ATTEMPTS_EXHAUSTED


async def test_a_weak_password_keeps_the_code_usable_and_writes_nothing(
    customers: CustomerService, identity: IdentityService, db: Database
) -> None:
    _, phone = await registered(customers, db)
    session = await identity.login(phone, PASSWORD, CLIENT)
    started = await customers.start_password_reset(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    with pytest.raises(DomainError) as weak:
        await customers.complete_password_reset(started.verification_id, code, new_password="short")
    assert weak.value.code == IdentityErrorCode.WEAK_PASSWORD
    assert session.session_token is not None and await identity.authenticate_session(session.session_token)
    assert await rows(
        db, "SELECT attempts, consumed_at FROM customers.verifications WHERE id = :id", id=started.verification_id
    ) == [(0, None)]
    await customers.complete_password_reset(started.verification_id, code, new_password=NEW_PASSWORD)
    assert await identity.authenticate_session(session.session_token) is None


async def test_an_unknown_address_gets_the_same_answer_and_no_code(customers: CustomerService, db: Database) -> None:
    """Enumeration safety: a verification is recorded, nothing is sent, and no code can complete it."""
    _, known = await registered(customers, db)
    unknown = "+86" + random_phone()
    sent_known = await customers.start_password_reset(ContactKind.PHONE, known)
    sent_unknown = await customers.start_password_reset(ContactKind.PHONE, unknown)
    assert sent_unknown.kind == sent_known.kind == ContactKind.PHONE
    assert sent_unknown.address_masked == unknown[:6] + "****" + unknown[-4:]
    assert sent_unknown.expires_at == sent_known.expires_at
    assert await outbox_count(db, unknown) == 0
    assert await outbox_count(db, known) == 2  # registration and reset
    for attempt in ("000000", "123456"):
        with pytest.raises(DomainError) as refused:
            await customers.complete_password_reset(sent_unknown.verification_id, attempt, new_password=NEW_PASSWORD)
        assert refused.value.code == CustomerErrorCode.VERIFICATION_CODE_INVALID
    # Resending behaves the same too, and still sends nothing.
    with pytest.raises(DomainError) as early:
        await customers.resend_password_reset_code(sent_unknown.verification_id)
    assert early.value.code == CustomerErrorCode.VERIFICATION_RATE_LIMITED
    assert await outbox_count(db, unknown) == 0


async def test_starts_are_bounded_per_address_whether_or_not_it_is_registered(
    customers: CustomerService, db: Database
) -> None:
    _, known = await registered(customers, db, random_phone())
    unknown = random_email()
    for address, kind, sent_before in ((known, ContactKind.PHONE, 1), (unknown, ContactKind.EMAIL, 0)):
        for _ in range(5 - sent_before):
            await customers.start_password_reset(kind, address)
        with pytest.raises(DomainError) as limited:
            await customers.start_password_reset(kind, address)
        assert limited.value.code == CustomerErrorCode.VERIFICATION_RATE_LIMITED


async def test_a_registration_code_does_not_reset_a_password(customers: CustomerService, db: Database) -> None:
    started = await customers.start_registration(ContactKind.EMAIL, random_email())
    with pytest.raises(DomainError) as refused:
        await customers.complete_password_reset(started.verification_id, "123456", new_password=NEW_PASSWORD)
    assert refused.value.code == CustomerErrorCode.VERIFICATION_NOT_FOUND


async def test_reset_needs_an_active_customer_login(identity: IdentityService, db: Database) -> None:
    async with db.connect() as conn:
        with pytest.raises(DomainError) as missing:
            await identity.reset_password(conn, principal_id=uuid.uuid4(), password=NEW_PASSWORD, client=CLIENT)
    assert missing.value.code == "not_found"


async def test_the_verification_rows_keep_no_code(customers: CustomerService, db: Database) -> None:
    _, phone = await registered(customers, db)
    started = await customers.start_password_reset(ContactKind.PHONE, phone)
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT purpose, customer_id IS NOT NULL, length(code_hash) FROM customers.verifications"
                    " WHERE id = :id"
                ),
                {"id": started.verification_id},
            )
        ).one()
    assert tuple(row) == ("password_reset", True, 32)
