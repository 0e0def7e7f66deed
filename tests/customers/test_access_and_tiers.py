"""Who may read what, tiers and payment limits, staff search, self-service changes."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from smartbank.customers.model import Address, IdType, KycDecision, KycStatus, KycSubmission, PaymentProfile
from smartbank.customers.service import CustomerService
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.platform.db import Database

from .helpers import (
    ADDRESS,
    customer,
    make_ric,
    register,
    rows,
    scalar,
    staff,
    submission,
)

AGENT = staff(StaffRole.CRM_AGENT)
TELLER = staff(StaffRole.TELLER)


async def test_payment_profile_returns_the_tiers_limits(customers: CustomerService, db: Database) -> None:
    profile = await register(customers, db)
    assert await customers.payment_profile(profile.id) == PaymentProfile(
        customer_id=profile.id,
        kyc_status=KycStatus.NOT_SUBMITTED,
        tier="basic",
        per_payment_limit_minor=500_000,
        daily_limit_minor=2_000_000,
        currency="CNY",
    )
    await customers.submit_kyc(customer(profile.id), profile.id, submission())
    await customers.decide_kyc(AGENT, profile.id, KycDecision.VERIFY, "ok")
    await customers.set_tier(AGENT, profile.id, "premium", "private banking client")
    assert await customers.payment_profile(profile.id) == PaymentProfile(
        profile.id, KycStatus.VERIFIED, "premium", 50_000_000, 200_000_000, "CNY"
    )
    assert [(t.code, t.per_payment_limit_minor, t.daily_limit_minor) for t in await customers.tiers()] == [
        ("basic", 500_000, 2_000_000),
        ("standard", 5_000_000, 20_000_000),
        ("premium", 50_000_000, 200_000_000),
    ]


async def test_payment_profile_of_an_unknown_customer_is_customer_not_found(customers: CustomerService) -> None:
    with pytest.raises(DomainError) as exc:
        await customers.payment_profile(uuid.uuid4())
    assert (exc.value.code, exc.value.http_status) == ("customer_not_found", 404)


async def test_tier_changes_need_tiers_set_and_are_audited(customers: CustomerService, db: Database) -> None:
    profile = await register(customers, db)
    for principal, code in [(TELLER, "forbidden"), (customer(profile.id), "forbidden")]:
        with pytest.raises(DomainError) as exc:
            await customers.set_tier(principal, profile.id, "premium", "please")
        assert exc.value.code == code
    with pytest.raises(DomainError) as unknown:
        await customers.set_tier(AGENT, profile.id, "platinum", "no such tier")
    assert (unknown.value.code, unknown.value.http_status) == ("unknown_tier", 422)
    assert (await customers.payment_profile(profile.id)).tier == "basic"
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM platform.audit_log WHERE subject_id = :c AND action = 'customers.tier_changed'",
            c=str(profile.id),
        )
        == 0
    )

    await customers.set_tier(AGENT, profile.id, "standard", "salary account")
    await customers.set_tier(AGENT, profile.id, "standard", "same again: no change")
    assert await rows(
        db,
        "SELECT actor_id, details FROM platform.audit_log WHERE subject_id = :c AND action = 'customers.tier_changed'",
        c=str(profile.id),
    ) == [(AGENT.id, {"from": "basic", "to": "standard", "reason": "salary account"})]
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM platform.outbox "
            "WHERE topic = 'customers.tier_changed' AND payload->>'customer_id' = :c",
            c=str(profile.id),
        )
        == 1
    )


async def test_a_customer_cannot_read_anothers_profile(customers: CustomerService, db: Database) -> None:
    alice = await register(customers, db)
    bob = await register(customers, db)
    with pytest.raises(DomainError) as other:
        await customers.get_customer(customer(alice.id), bob.id)
    with pytest.raises(DomainError) as missing:
        await customers.get_customer(customer(alice.id), uuid.uuid4())
    # Someone else's customer and no customer at all look the same: nothing is learnt.
    assert (
        (other.value.code, other.value.http_status)
        == (missing.value.code, missing.value.http_status)
        == (
            "not_found",
            404,
        )
    )
    assert (await customers.get_me(customer(alice.id))).id == alice.id
    assert await customers.get_customer(customer(alice.id), alice.id) == await customers.get_me(customer(alice.id))


async def test_staff_read_profiles_with_customers_read_only(customers: CustomerService, db: Database) -> None:
    profile = await register(customers, db)
    await customers.submit_kyc(customer(profile.id), profile.id, submission())
    seen = await customers.get_customer(TELLER, profile.id)
    assert seen.id == profile.id and seen.id_number_masked is not None and seen.id_number_masked.startswith("*" * 14)
    for principal in (staff(), Principal(uuid.uuid4(), PrincipalKind.MERCHANT)):
        with pytest.raises(DomainError) as exc:
            await customers.get_customer(principal, profile.id)
        assert exc.value.code == "forbidden"
    with pytest.raises(DomainError) as me:
        await customers.get_me(TELLER)
    assert me.value.code == "forbidden"
    with pytest.raises(DomainError) as missing:
        await customers.get_customer(TELLER, uuid.uuid4())
    assert missing.value.code == "customer_not_found"


async def test_customers_update_their_own_address_only(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    profile = await register(customers, db)
    new = Address("CN", "广东省", "深圳市", ("南山区 科技园 8 号",), "518057")
    updated = await customers.update_address(customer(profile.id), profile.id, new)
    assert (updated.address, updated.updated_at) == (new, clock.now())
    assert await rows(
        db,
        "SELECT actor_id, details FROM platform.audit_log "
        "WHERE subject_id = :c AND action = 'customers.address_changed'",
        c=str(profile.id),
    ) == [(profile.id, {"country": "CN", "region": "广东省", "city": "深圳市"})]
    for principal, code in [(customer(uuid.uuid4()), "not_found"), (AGENT, "forbidden")]:
        with pytest.raises(DomainError) as exc:
            await customers.update_address(principal, profile.id, ADDRESS)
        assert exc.value.code == code
    assert (await customers.get_me(customer(profile.id))).address == new


async def test_a_customer_changes_their_email_after_proving_it(customers: CustomerService, db: Database) -> None:
    from smartbank.customers.model import ContactKind

    from .helpers import last_code

    profile = await register(customers, db)
    me = customer(profile.id)
    address = f"new.{uuid.uuid4().hex[:8]}@example.com"
    started = await customers.start_contact_change(me, ContactKind.EMAIL, address)
    code = await last_code(db, address)
    with pytest.raises(DomainError) as other:
        await customers.confirm_contact_change(customer(uuid.uuid4()), started.verification_id, code)
    assert other.value.code == "verification_not_found"
    changed = await customers.confirm_contact_change(me, started.verification_id, code)
    assert (changed.phone, changed.email) == (profile.phone, address)
    with pytest.raises(DomainError) as reuse:
        await customers.confirm_contact_change(me, started.verification_id, code)
    assert reuse.value.code == "verification_already_used"


# -- staff search, on a database of its own so that the expected pages are exact -----------------


async def test_staff_search_by_name_pinyin_phone_and_id_number_in_pages(
    own_customers: CustomerService, own_db: Database
) -> None:
    service, search_db = own_customers, own_db
    people = [
        ("张伟", date(1990, 1, 1)),
        ("张薇", date(1991, 2, 2)),
        ("章伟", date(1992, 3, 3)),
        ("John Smith", date(1980, 4, 4)),
    ]
    ids = []
    numbers = []
    for name, birth in people:
        p = await register(service, search_db)
        number = make_ric(birth)
        await service.submit_kyc(
            customer(p.id), p.id, KycSubmission(name, birth, IdType.PRC_RESIDENT_ID, number, ADDRESS)
        )
        ids.append(p.id)
        numbers.append(number)

    async def found(**kwargs: object) -> list[uuid.UUID]:
        return [c.id for c in (await service.search(TELLER, **kwargs)).items]  # type: ignore[arg-type]

    assert await found(name="张") == [ids[0], ids[1]]
    assert await found(name="zhang") == [ids[0], ids[1], ids[2]]
    assert await found(name="Zhang Wei") == [ids[0], ids[1], ids[2]]  # 张伟, 张薇 and 章伟 all read zhang wei
    assert await found(name="john sm") == [ids[3]]
    assert await found(name="zw") == [ids[0], ids[1], ids[2]]  # initials
    assert await found(name="nobody") == []
    phone = (await service.get_customer(TELLER, ids[2])).phone
    assert phone is not None
    assert await found(phone=phone[3:]) == [ids[2]]
    assert await found(id_number=numbers[1].lower()) == [ids[1]]

    first = await service.search(TELLER, name="zhang", limit=2)
    assert [c.id for c in first.items] == [ids[0], ids[1]]
    assert first.next_cursor is not None
    assert all(c.id_number_masked and c.id_number_masked[:14] == "*" * 14 for c in first.items)
    second = await service.search(TELLER, name="zhang", limit=2, cursor=first.next_cursor)
    assert ([c.id for c in second.items], second.next_cursor) == ([ids[2]], None)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, "invalid_search"),
        ({"name": "a", "phone": "13912345678"}, "invalid_search"),
        ({"name": "   "}, "invalid_search"),
        ({"name": "x" * 101}, "invalid_search"),
        ({"name": "a", "limit": 0}, "validation_error"),
        ({"name": "a", "limit": 101}, "validation_error"),
        ({"name": "a", "cursor": "nonsense"}, "invalid_cursor"),
        ({"phone": "12"}, "invalid_phone"),
    ],
)
async def test_bad_searches_are_refused(customers: CustomerService, kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(DomainError) as exc:
        await customers.search(TELLER, **kwargs)  # type: ignore[arg-type]
    assert exc.value.code == code


async def test_search_needs_customers_read(customers: CustomerService) -> None:
    for principal in (customer(uuid.uuid4()), staff(), Principal(uuid.uuid4(), PrincipalKind.MERCHANT)):
        with pytest.raises(DomainError) as exc:
            await customers.search(principal, name="zhang")
        assert exc.value.code == "forbidden"


async def test_a_registration_resend_cannot_be_pointed_at_a_customers_contact_change(
    customers: CustomerService, db: Database, clock: FrozenClock
) -> None:
    from datetime import timedelta

    from smartbank.customers.model import ContactKind, VerificationPurpose

    from .helpers import last_code

    profile = await register(customers, db)
    me = customer(profile.id)
    address = f"new.{uuid.uuid4().hex[:8]}@example.com"
    started = await customers.start_contact_change(me, ContactKind.EMAIL, address)
    first = await last_code(db, address)
    clock.advance(timedelta(minutes=2))  # past the resend interval: only the purpose and owner refuse it
    for purpose, owner in (
        (VerificationPurpose.REGISTRATION, None),
        (VerificationPurpose.CONTACT_CHANGE, uuid.uuid4()),
    ):
        with pytest.raises(DomainError) as refused:
            await customers.resend_code(started.verification_id, purpose=purpose, owner=owner)
        assert refused.value.code == "verification_not_found"
    assert await last_code(db, address) == first  # nothing was sent
    resent = await customers.resend_code(
        started.verification_id, purpose=VerificationPurpose.CONTACT_CHANGE, owner=me.id
    )
    assert resent.verification_id == started.verification_id
    assert await last_code(db, address) != first
