"""Registration: a code to the phone or e-mail, then the customer and their login in one transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from smartbank.customers.model import ContactKind, KycStatus
from smartbank.customers.service import CustomerService
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.platform.db import Database

from .helpers import PASSWORD, TERMS, last_code, random_email, random_phone, rows, scalar


async def _written_for(db: Database, address: str) -> dict[str, object]:
    """Everything registration may write for one address."""
    return {
        "customers": await scalar(
            db, "SELECT count(*) FROM customers.customers WHERE phone = :a OR email = :a", a=address
        ),
        "logins": await scalar(db, "SELECT count(*) FROM public.fake_logins WHERE login = :a", a=address),
        "consumed": await scalar(
            db, "SELECT count(*) FROM customers.verifications WHERE address = :a AND consumed_at IS NOT NULL", a=address
        ),
        "registered_events": await scalar(
            db,
            "SELECT count(*) FROM platform.outbox o "
            "JOIN customers.customers c ON o.payload->>'customer_id' = c.id::text "
            "WHERE o.topic = 'customers.registered' AND (c.phone = :a OR c.email = :a)",
            a=address,
        ),
    }


NOTHING = {"customers": 0, "logins": 0, "consumed": 0, "registered_events": 0}


async def test_registration_by_phone_creates_the_customer_and_login_in_one_go(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    national = random_phone()
    phone = "+86" + national
    started = await customers.start_registration(ContactKind.PHONE, national)
    assert started.address_masked == phone[:6] + "****" + phone[-4:]
    assert started.expires_at == clock.now() + timedelta(minutes=10)
    assert started.resend_after == clock.now() + timedelta(seconds=60)

    # The code went out through the notifier (outbox) and is stored only as a keyed hash.
    code = await last_code(db, phone)
    assert len(code) == 6 and code.isdigit()
    stored = await scalar(
        db, "SELECT code_hash FROM customers.verifications WHERE id = :id", id=started.verification_id
    )
    assert code.encode() not in bytes(stored)

    clock.advance(timedelta(minutes=3))
    profile = await customers.complete_registration(
        started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
    )
    assert (profile.phone, profile.email, profile.kyc_status, profile.tier) == (
        phone,
        None,
        KycStatus.NOT_SUBMITTED,
        "basic",
    )
    assert profile.created_at == clock.now()
    assert await rows(db, "SELECT principal_id, kind FROM public.fake_logins WHERE login = :a", a=phone) == [
        (profile.id, "customer")
    ]
    assert profile.id.version == 7
    assert await rows(
        db, "SELECT terms_version, terms_accepted_at FROM customers.customers WHERE id = :id", id=profile.id
    ) == [(TERMS, clock.now())]
    assert await rows(
        db, "SELECT consumed_at, customer_id FROM customers.verifications WHERE id = :id", id=started.verification_id
    ) == [(clock.now(), profile.id)]
    assert await rows(
        db,
        "SELECT payload FROM platform.outbox WHERE topic = 'customers.registered' AND payload->>'customer_id' = :c",
        c=str(profile.id),
    ) == [({"customer_id": str(profile.id), "registered_at": clock.now().isoformat()},)]
    audit = await rows(
        db,
        "SELECT action, actor_kind, details, occurred_at FROM platform.audit_log"
        " WHERE subject_id IN (:c, :v) ORDER BY seq",
        c=str(profile.id),
        v=str(started.verification_id),
    )
    assert [a[:2] for a in audit] == [
        ("customers.verification_started", "anonymous"),
        ("customers.registered", "customer"),
    ]
    # Dated by the service's clock, like everything else the use case writes.
    assert [a[3] for a in audit] == [clock.now() - timedelta(minutes=3), clock.now()]
    assert audit[1][2] == {"kind": "phone", "address": started.address_masked, "terms_version": TERMS}
    assert code not in repr(audit) and PASSWORD not in repr(audit)


async def test_registration_by_email_stores_the_normalised_address(customers: CustomerService, db: Database) -> None:
    address = random_email()
    started = await customers.start_registration(ContactKind.EMAIL, address)
    code = await last_code(db, address.lower())
    profile = await customers.complete_registration(
        started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
    )
    assert (profile.phone, profile.email) == (None, address.lower())


async def test_wrong_code_counts_an_attempt_and_writes_nothing_else(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, wrong, password=PASSWORD, accepted_terms=True, terms_version=TERMS
        )
    assert (exc.value.code, exc.value.http_status, exc.value.details) == (
        "verification_code_invalid",
        422,
        {"attempts_left": 4},
    )
    assert (
        await scalar(db, "SELECT attempts FROM customers.verifications WHERE id = :id", id=started.verification_id) == 1
    )
    assert await _written_for(db, phone) == NOTHING
    # The right code still works afterwards.
    profile = await customers.complete_registration(
        started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
    )
    assert profile.phone == phone


async def test_expired_code_is_refused(customers: CustomerService, db: Database, clock: FrozenClock) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    clock.advance(timedelta(minutes=10))
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
        )
    assert (exc.value.code, exc.value.http_status) == ("verification_expired", 410)
    assert await _written_for(db, phone) == NOTHING


async def test_five_wrong_codes_lock_the_verification_even_for_the_right_code(
    customers: CustomerService, db: Database
) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    left = []
    for _ in range(5):
        with pytest.raises(DomainError) as exc:
            await customers.complete_registration(
                started.verification_id, wrong, password=PASSWORD, accepted_terms=True, terms_version=TERMS
            )
        left.append(exc.value.details["attempts_left"])
    assert left == [4, 3, 2, 1, 0]
    with pytest.raises(DomainError) as locked:
        await customers.complete_registration(
            started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
        )
    assert (locked.value.code, locked.value.http_status) == ("verification_attempts_exhausted", 429)
    assert (
        await scalar(db, "SELECT attempts FROM customers.verifications WHERE id = :id", id=started.verification_id) == 5
    )
    assert await _written_for(db, phone) == NOTHING
    with pytest.raises(DomainError) as resend:
        await customers.resend_code(started.verification_id)
    assert resend.value.code == "verification_attempts_exhausted"


async def test_a_code_works_once(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    first = await customers.complete_registration(
        started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
    )
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, code, password=PASSWORD + "x", accepted_terms=True, terms_version=TERMS
        )
    assert (exc.value.code, exc.value.http_status) == ("verification_already_used", 409)
    assert await rows(db, "SELECT id FROM customers.customers WHERE phone = :p", p=phone) == [(first.id,)]


async def test_login_already_taken_in_identity_writes_nothing(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    async with db.transaction() as conn:  # someone holds this login already (say, a staff member)
        await conn.execute(
            text("INSERT INTO public.fake_logins (login, principal_id, kind) VALUES (:l, gen_random_uuid(), 'staff')"),
            {"l": phone},
        )
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    audit_before = await scalar(db, "SELECT count(*) FROM platform.audit_log")
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
        )
    assert exc.value.code == "login_taken"
    assert await _written_for(db, phone) == {**NOTHING, "logins": 1}
    assert (
        await scalar(db, "SELECT attempts FROM customers.verifications WHERE id = :id", id=started.verification_id) == 0
    )
    assert await scalar(db, "SELECT count(*) FROM platform.audit_log") == audit_before


async def test_phone_of_an_existing_customer_cannot_register_again(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    for attempt in range(2):
        started = await customers.start_registration(ContactKind.PHONE, phone)
        code = await last_code(db, phone)
        if attempt == 0:
            first = await customers.complete_registration(
                started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
            )
            continue
        with pytest.raises(DomainError) as exc:
            await customers.complete_registration(
                started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
            )
        assert (exc.value.code, exc.value.http_status) == ("login_taken", 409)
    assert await rows(db, "SELECT id FROM customers.customers WHERE phone = :p", p=phone) == [(first.id,)]
    assert await scalar(db, "SELECT count(*) FROM public.fake_logins WHERE login = :p", p=phone) == 1


async def test_weak_password_writes_nothing(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, code, password="short", accepted_terms=True, terms_version=TERMS
        )
    assert exc.value.code == "weak_password"
    assert await _written_for(db, phone) == NOTHING


async def test_terms_must_be_accepted(customers: CustomerService, db: Database) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            started.verification_id, code, password=PASSWORD, accepted_terms=False, terms_version=TERMS
        )
    assert (exc.value.code, exc.value.http_status) == ("terms_not_accepted", 422)
    assert await _written_for(db, phone) == NOTHING
    assert (
        await scalar(db, "SELECT attempts FROM customers.verifications WHERE id = :id", id=started.verification_id) == 0
    )


async def test_resend_waits_a_minute_and_replaces_the_code(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    first_code = await last_code(db, phone)
    clock.advance(timedelta(seconds=30))
    with pytest.raises(DomainError) as exc:
        await customers.resend_code(started.verification_id)
    assert (exc.value.code, exc.value.details) == ("verification_rate_limited", {"retry_after_s": 30})
    clock.advance(timedelta(seconds=30))
    resent = await customers.resend_code(started.verification_id)
    assert resent.expires_at == clock.now() + timedelta(minutes=10)
    second_code = await last_code(db, phone)
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM platform.outbox "
            "WHERE topic = 'notifications.requested' AND payload->>'recipient' = :p",
            p=phone,
        )
        == 2
    )
    if second_code != first_code:  # one chance in a million that they are the same
        with pytest.raises(DomainError) as old:
            await customers.complete_registration(
                started.verification_id, first_code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
            )
        assert old.value.code == "verification_code_invalid"
    profile = await customers.complete_registration(
        started.verification_id, second_code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
    )
    assert profile.phone == phone


async def test_resends_stop_after_five_codes(customers: CustomerService, clock: FrozenClock) -> None:
    started = await customers.start_registration(ContactKind.PHONE, random_phone())
    for _ in range(4):
        clock.advance(timedelta(minutes=1))
        await customers.resend_code(started.verification_id)
    clock.advance(timedelta(minutes=1))
    with pytest.raises(DomainError) as exc:
        await customers.resend_code(started.verification_id)
    assert exc.value.code == "verification_rate_limited"


async def test_starts_for_one_address_are_bounded_per_hour(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    phone = random_phone()
    for _ in range(5):
        await customers.start_registration(ContactKind.PHONE, phone)
        clock.advance(timedelta(minutes=1))
    with pytest.raises(DomainError) as exc:
        await customers.start_registration(ContactKind.PHONE, phone)
    assert (exc.value.code, exc.value.http_status, exc.value.details) == (
        "verification_rate_limited",
        429,
        {"retry_after_s": 55 * 60},
    )
    assert await scalar(db, "SELECT count(*) FROM customers.verifications WHERE address = :a", a="+86" + phone) == 5
    clock.advance(timedelta(minutes=55))
    await customers.start_registration(ContactKind.PHONE, phone)


async def test_bad_contact_details_are_refused_before_anything_is_sent(
    customers: CustomerService, db: Database
) -> None:
    before = await scalar(db, "SELECT count(*) FROM customers.verifications")
    for kind, address, code in [
        (ContactKind.PHONE, "010 8888 8888", "invalid_phone"),
        (ContactKind.PHONE, "12", "invalid_phone"),
        (ContactKind.EMAIL, "not-an-email", "invalid_email"),
    ]:
        with pytest.raises(DomainError) as exc:
            await customers.start_registration(kind, address)
        assert exc.value.code == code
    assert await scalar(db, "SELECT count(*) FROM customers.verifications") == before


async def test_unknown_verification_is_not_found(customers: CustomerService) -> None:
    import uuid

    with pytest.raises(DomainError) as exc:
        await customers.complete_registration(
            uuid.uuid4(), "123456", password=PASSWORD, accepted_terms=True, terms_version=TERMS
        )
    assert (exc.value.code, exc.value.http_status) == ("verification_not_found", 404)


async def test_unknown_contact_kind_is_a_validation_error(customers: CustomerService) -> None:
    with pytest.raises(DomainError) as exc:
        await customers.start_registration("fax", "13912345678")  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.details) == ("validation_error", {"field": "kind"})


def test_production_refuses_to_run_without_a_pii_key() -> None:
    from pydantic import ValidationError

    from smartbank.customers.service import DEVELOPMENT_PII_KEY, pii_key_from
    from smartbank.platform.settings import Settings

    with pytest.raises(RuntimeError, match="SMARTBANK_PII_KEY"):
        pii_key_from(Settings(env="production"))
    assert pii_key_from(Settings(env="development")) == DEVELOPMENT_PII_KEY
    assert pii_key_from(Settings(env="production", pii_key="k" * 32)) == b"k" * 32  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(env="production", pii_key="too short")  # type: ignore[arg-type]


async def test_concurrent_completions_create_one_customer(customers: CustomerService, db: Database) -> None:
    import asyncio

    phone = "+86" + random_phone()
    started = await customers.start_registration(ContactKind.PHONE, phone)
    code = await last_code(db, phone)
    results = await asyncio.gather(
        *(
            customers.complete_registration(
                started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version=TERMS
            )
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    assert sorted(r.code if isinstance(r, DomainError) else "ok" for r in results) == [
        "ok",
        "verification_already_used",
        "verification_already_used",
    ]
    assert await _written_for(db, phone) == {"customers": 1, "logins": 1, "consumed": 1, "registered_events": 1}


async def test_the_hourly_job_purges_verifications_a_day_after_they_expire(
    own_customers: CustomerService, own_db: Database, clock: FrozenClock
) -> None:
    from smartbank.customers import jobs as customer_jobs
    from smartbank.platform import jobs

    old = await own_customers.start_registration(ContactKind.PHONE, random_phone())
    clock.advance(timedelta(hours=2))
    recent = await own_customers.start_registration(ContactKind.PHONE, random_phone())
    # The first expired 24 h 10 min after it started; at 24 h 11 min it is due, the second is not.
    clock.advance(timedelta(hours=22, minutes=11))
    jobs.services["customers"] = own_customers
    try:
        assert await customer_jobs.purge_verifications(0) == 1
        assert await customer_jobs.purge_verifications(0) == 0
    finally:
        del jobs.services["customers"]
    assert await rows(own_db, "SELECT id FROM customers.verifications") == [(recent.verification_id,)]
    assert old.verification_id != recent.verification_id


async def test_audit_rows_carry_where_the_request_came_from(customers: CustomerService, db: Database) -> None:
    from smartbank.customers.model import RequestInfo

    phone = "+86" + random_phone()
    started = await customers.start_registration(
        ContactKind.PHONE, phone, request=RequestInfo("203.0.113.9", "Mozilla/5.0", "req-1")
    )
    code = await last_code(db, phone)
    profile = await customers.complete_registration(
        started.verification_id,
        code,
        password=PASSWORD,
        accepted_terms=True,
        terms_version=TERMS,
        request=RequestInfo("not an address", "x" * 400, "req-2"),
    )
    assert await rows(
        db,
        "SELECT action, host(ip), length(device), request_id FROM platform.audit_log "
        "WHERE subject_id IN (:v, :c) ORDER BY seq",
        v=str(started.verification_id),
        c=str(profile.id),
    ) == [
        ("customers.verification_started", "203.0.113.9", 11, "req-1"),
        ("customers.registered", None, 300, "req-2"),
    ]
