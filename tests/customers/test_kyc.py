"""KYC: customers submit their identity; only staff with kyc:decide verify or reject it."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from smartbank.customers.model import Address, IdType, KycDecision, KycStatus, KycSubmission
from smartbank.customers.service import CustomerService
from smartbank.identity.model import StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.platform.db import Database

from .helpers import customer, make_ric, register, rows, scalar, staff, submission

AGENT = staff(StaffRole.CRM_AGENT)  # customers:read, kyc:decide, tiers:set


async def _state(db: Database, customer_id: uuid.UUID) -> dict[str, object]:
    """What a KYC decision may change."""
    return {
        "customer": await rows(
            db,
            "SELECT kyc_status, kyc_decided_at, kyc_decided_by, kyc_reason FROM customers.customers WHERE id = :id",
            id=customer_id,
        ),
        "events": await rows(
            db,
            "SELECT payload FROM platform.outbox "
            "WHERE topic = 'customers.kyc_verified' AND payload->>'customer_id' = :c",
            c=str(customer_id),
        ),
        "audit": await rows(
            db,
            "SELECT action FROM platform.audit_log "
            "WHERE subject_id = :c AND action LIKE 'customers.kyc_%' ORDER BY seq",
            c=str(customer_id),
        ),
    }


async def _pending(customers: CustomerService, db: Database, birth: date = date(1990, 5, 17)) -> uuid.UUID:
    profile = await register(customers, db)
    await customers.submit_kyc(customer(profile.id), profile.id, submission(birth))
    return profile.id


async def test_submitting_kyc_stores_the_profile_masked_and_pending(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    profile = await register(customers, db)
    number = make_ric(date(1990, 5, 17))
    submitted = await customers.submit_kyc(
        customer(profile.id), profile.id, submission(id_number=number[:6] + " " + number[6:].lower())
    )
    assert submitted.kyc_status is KycStatus.PENDING
    assert (submitted.legal_name, submitted.date_of_birth, submitted.id_type) == (
        "张伟",
        date(1990, 5, 17),
        IdType.PRC_RESIDENT_ID,
    )
    assert submitted.id_number_masked == "*" * 14 + number[-4:]
    assert submitted.address == Address("CN", "北京市", "北京市", ("东城区 东长安街 1 号",), "100006")
    assert await rows(
        db, "SELECT id_number, kyc_submitted_at FROM customers.customers WHERE id = :id", id=profile.id
    ) == [(number, clock.now())]
    assert sorted(
        r[0] for r in await rows(db, "SELECT key FROM customers.name_keys WHERE customer_id = :id", id=profile.id)
    ) == ["zhangwei", "zw", "张伟"]
    audit = await rows(
        db,
        "SELECT action, details FROM platform.audit_log WHERE subject_id = :c AND action = 'customers.kyc_submitted'",
        c=str(profile.id),
    )
    assert audit == [("customers.kyc_submitted", {"id_type": "prc_resident_id", "previous_status": "not_submitted"})]
    assert number not in repr(audit)


async def test_verifying_kyc_writes_the_event_exactly_once_with_the_approval(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    customer_id = await _pending(customers, db)
    clock.advance(timedelta(hours=2))
    decided = await customers.decide_kyc(AGENT, customer_id, KycDecision.VERIFY, "documents checked at branch")
    assert decided.kyc_status is KycStatus.VERIFIED
    assert await _state(db, customer_id) == {
        "customer": [("verified", clock.now(), AGENT.id, "documents checked at branch")],
        "events": [({"customer_id": str(customer_id), "verified_at": clock.now().isoformat()},)],
        "audit": [("customers.kyc_submitted",), ("customers.kyc_verified",)],
    }
    with pytest.raises(DomainError) as again:
        await customers.decide_kyc(AGENT, customer_id, KycDecision.VERIFY, "twice")
    assert (again.value.code, again.value.http_status) == ("invalid_kyc_transition", 409)
    assert len((await _state(db, customer_id))["events"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "caller",
    ["the customer", "another customer", "a teller", "staff with no role", "a merchant"],
)
async def test_kyc_decisions_without_the_permission_are_refused_and_change_nothing(
    customers: CustomerService, db: Database, caller: str
) -> None:
    from smartbank.identity.model import Principal, PrincipalKind

    customer_id = await _pending(customers, db)
    principal = {
        "the customer": customer(customer_id),
        "another customer": customer(uuid.uuid4()),
        "a teller": staff(StaffRole.TELLER),
        "staff with no role": staff(),
        "a merchant": Principal(uuid.uuid4(), PrincipalKind.MERCHANT),
    }[caller]
    before = await _state(db, customer_id)
    for decision in KycDecision:
        with pytest.raises(DomainError) as exc:
            await customers.decide_kyc(principal, customer_id, decision, "looks fine to me")
        assert (exc.value.code, exc.value.http_status) == ("forbidden", 403)
    assert await _state(db, customer_id) == before
    assert before["customer"] == [("pending", None, None, None)]


async def test_rejection_needs_a_reason_and_the_customer_may_resubmit(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    customer_id = await _pending(customers, db)
    with pytest.raises(DomainError) as no_reason:
        await customers.decide_kyc(AGENT, customer_id, KycDecision.REJECT, "   ")
    assert no_reason.value.code == "reason_required"
    rejected = await customers.decide_kyc(AGENT, customer_id, KycDecision.REJECT, "photo unreadable")
    assert (rejected.kyc_status, rejected.kyc_reason) == (KycStatus.REJECTED, "photo unreadable")
    assert (await _state(db, customer_id))["events"] == []

    clock.advance(timedelta(days=1))
    again = await customers.submit_kyc(customer(customer_id), customer_id, submission(date(1991, 6, 1)))
    assert (again.kyc_status, again.kyc_reason, again.date_of_birth) == (KycStatus.PENDING, None, date(1991, 6, 1))
    assert (await _state(db, customer_id))["customer"] == [("pending", None, None, None)]
    verified = await customers.decide_kyc(AGENT, customer_id, KycDecision.VERIFY, "second try fine")
    assert verified.kyc_status is KycStatus.VERIFIED
    # Each decision is a notice in the customer's inbox, newest last; the reason stays off it.
    notices = await rows(
        db, "SELECT kind, params FROM platform.notifications WHERE recipient_id = :c ORDER BY seq", c=customer_id
    )
    assert notices == [("customers.kyc_rejected", {}), ("customers.kyc_verified", {})]
    with pytest.raises(DomainError) as locked:
        await customers.submit_kyc(customer(customer_id), customer_id, submission())
    assert (locked.value.code, locked.value.http_status) == ("invalid_kyc_transition", 409)


async def test_deciding_a_profile_never_submitted_is_refused(customers: CustomerService, db: Database) -> None:
    profile = await register(customers, db)
    with pytest.raises(DomainError) as exc:
        await customers.decide_kyc(AGENT, profile.id, KycDecision.VERIFY, "ok")
    assert exc.value.code == "kyc_profile_missing"
    assert (await _state(db, profile.id))["customer"] == [("not_submitted", None, None, None)]


async def test_an_identity_document_belongs_to_one_customer(customers: CustomerService, db: Database) -> None:
    first = await register(customers, db)
    second = await register(customers, db)
    sub = submission()
    await customers.submit_kyc(customer(first.id), first.id, sub)
    with pytest.raises(DomainError) as exc:
        await customers.submit_kyc(customer(second.id), second.id, sub)
    assert (exc.value.code, exc.value.http_status) == ("id_number_in_use", 409)
    assert await rows(db, "SELECT kyc_status, id_number FROM customers.customers WHERE id = :id", id=second.id) == [
        ("not_submitted", None)
    ]
    # Once the first profile is rejected, the document is free again.
    await customers.decide_kyc(AGENT, first.id, KycDecision.REJECT, "not their document")
    assert (await customers.submit_kyc(customer(second.id), second.id, sub)).kyc_status is KycStatus.PENDING


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"date_of_birth": date(1990, 5, 18)}, "id_birth_date_mismatch"),
        ({"id_number": "110101199005170010"}, "invalid_id_number"),
        ({"legal_name": "Zhang 伟"}, "invalid_name"),
        ({"date_of_birth": date(2015, 1, 1)}, "customer_underage"),
        ({"address": Address("China", "x", "y", ("z",))}, "invalid_address"),
    ],
)
async def test_bad_kyc_submissions_write_nothing(
    customers: CustomerService, db: Database, change: dict[str, object], code: str
) -> None:
    profile = await register(customers, db)
    good = submission(date(1990, 5, 17))
    bad = KycSubmission(**{**{f: getattr(good, f) for f in good.__slots__}, **change})  # type: ignore[arg-type]
    with pytest.raises(DomainError) as exc:
        await customers.submit_kyc(customer(profile.id), profile.id, bad)
    assert exc.value.code == code
    assert await rows(
        db, "SELECT kyc_status, legal_name, id_number FROM customers.customers WHERE id = :id", id=profile.id
    ) == [("not_submitted", None, None)]
    assert await scalar(db, "SELECT count(*) FROM customers.name_keys WHERE customer_id = :id", id=profile.id) == 0


async def test_only_the_customer_submits_their_own_kyc(customers: CustomerService, db: Database) -> None:
    profile = await register(customers, db)
    for principal, code in [(customer(uuid.uuid4()), "not_found"), (AGENT, "forbidden")]:
        with pytest.raises(DomainError) as exc:
            await customers.submit_kyc(principal, profile.id, submission())
        assert exc.value.code == code
    assert (await _state(db, profile.id))["customer"] == [("not_submitted", None, None, None)]


async def test_concurrent_approvals_write_one_event(customers: CustomerService, db: Database) -> None:
    import asyncio

    customer_id = await _pending(customers, db)
    other = staff(StaffRole.ADMIN)
    results = await asyncio.gather(
        customers.decide_kyc(AGENT, customer_id, KycDecision.VERIFY, "first desk"),
        customers.decide_kyc(other, customer_id, KycDecision.VERIFY, "second desk"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, DomainError)]
    assert [e.code for e in errors] == ["invalid_kyc_transition"]
    state = await _state(db, customer_id)
    assert len(state["events"]) == 1  # type: ignore[arg-type]
    assert state["audit"] == [("customers.kyc_submitted",), ("customers.kyc_verified",)]


async def test_the_review_queue_lists_pending_profiles_oldest_first_in_pages(
    own_customers: CustomerService, own_db: Database, clock: FrozenClock
) -> None:
    ids = []
    for _ in range(4):
        profile = await register(own_customers, own_db)
        ids.append(profile.id)
    # Submitted in the order 2, 0, 3, 1; then 3 is decided and leaves the queue.
    for index in (2, 0, 3, 1):
        clock.advance(timedelta(minutes=1))
        await own_customers.submit_kyc(customer(ids[index]), ids[index], submission())
    await own_customers.decide_kyc(AGENT, ids[3], KycDecision.REJECT, "blurred")
    first = await own_customers.kyc_queue(AGENT, limit=2)
    assert [c.id for c in first.items] == [ids[2], ids[0]]
    assert first.next_cursor is not None
    second = await own_customers.kyc_queue(AGENT, limit=2, cursor=first.next_cursor)
    assert ([c.id for c in second.items], second.next_cursor) == ([ids[1]], None)
    for principal in (staff(StaffRole.TELLER), customer(ids[0])):
        with pytest.raises(DomainError) as exc:
            await own_customers.kyc_queue(principal)
        assert exc.value.code == "forbidden"


async def test_reviewers_reveal_the_full_id_number_with_an_audited_reason(
    customers: CustomerService, db: Database
) -> None:
    profile = await register(customers, db)
    number = make_ric(date(1990, 5, 17))
    await customers.submit_kyc(customer(profile.id), profile.id, submission(id_number=number))
    for principal in (staff(StaffRole.TELLER), customer(profile.id)):
        with pytest.raises(DomainError) as exc:
            await customers.reveal_id_number(principal, profile.id, "curious")
        assert exc.value.code == "forbidden"
    assert await customers.reveal_id_number(AGENT, profile.id, "comparing with the scanned card") == number
    audit = await rows(
        db,
        "SELECT actor_id, details FROM platform.audit_log "
        "WHERE subject_id = :c AND action = 'customers.id_number_revealed'",
        c=str(profile.id),
    )
    assert audit == [(AGENT.id, {"reason": "comparing with the scanned card"})]
    with pytest.raises(DomainError) as missing:
        await customers.reveal_id_number(AGENT, (await register(customers, db)).id, "nothing to see")
    assert missing.value.code == "kyc_profile_missing"
