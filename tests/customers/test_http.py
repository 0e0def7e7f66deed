"""The customers HTTP API end to end: registration, the customer's own profile, the staff API.

The module runs one app on a database of its own and a frozen clock that jumps to the next full
hour before each test, so that the per-address rate limits (every TestClient request comes from the
same address) of one test never reach the next, and lists (KYC queue, search) hold only what this
module made. Customers that a test only needs as data are registered through the service layer on
a short-lived engine (with the real identity service, so they can log in over HTTP).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartbank.customers.model import CustomerProfile
from smartbank.customers.service import DEVELOPMENT_PII_KEY, CustomerService
from smartbank.identity.credentials import Keys
from smartbank.identity.model import PrincipalKind, StaffRole
from smartbank.identity.service import IdentityService
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.db import Database, create_engine
from smartbank.platform.keys import load_key
from smartbank.platform.notify import OutboxNotifier
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from tests.customers.helpers import (
    PASSWORD,
    TERMS,
    customer,
    make_ric,
    random_email,
    random_phone,
    register,
    submission,
)
from tests.identity.helpers import PASSWORD as STAFF_PASSWORD
from tests.identity.helpers import create_principal_sync

T = TypeVar("T")

BIRTH = date(1990, 5, 17)
ADDRESS = {
    "country": "cn",
    "region": "北京市",
    "city": "北京市",
    "lines": ["东城区  东长安街 1 号"],
    "postal_code": "100006",
}
ADDRESS_STORED = {**ADDRESS, "country": "CN", "lines": ["东城区 东长安街 1 号"]}


@pytest.fixture(scope="module")
def db_url(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture(scope="module")
def app_clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, tzinfo=UTC))


@pytest.fixture(scope="module")
def client(settings: Settings, db_url: str, app_clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, database_url=db_url, clock=app_clock)
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def fresh_window(client: TestClient, app_clock: FrozenClock) -> None:
    app_clock.set((app_clock.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
    client.cookies.clear()


# -- helpers -------------------------------------------------------------------------------------


def with_services(
    db_url: str, settings: Settings, clock: FrozenClock, work: Callable[[CustomerService, Database], Awaitable[T]]
) -> T:
    """Run ``work`` against the services as the app builds them, on a short-lived engine."""

    async def go() -> T:
        db = Database(create_engine(db_url, settings))
        try:
            identity = IdentityService(db, clock, Keys(load_key(settings, "secret")))
            service = CustomerService(
                db, clock, logins=identity, notifier=OutboxNotifier("test"), pii_key=DEVELOPMENT_PII_KEY
            )
            return await work(service, db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def new_customer(db_url: str, settings: Settings, clock: FrozenClock, phone: str | None = None) -> CustomerProfile:
    return with_services(db_url, settings, clock, lambda service, db: register(service, db, phone))


def one(db_url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]


def all_rows(db_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


def code_for(db_url: str, verification_id: str) -> str:
    """The newest code sent for a verification, read from the outbox as a delivery consumer would."""
    address = one(db_url, "SELECT address FROM customers.verifications WHERE id = %s", verification_id)
    payload = one(
        db_url,
        "SELECT payload FROM platform.outbox WHERE topic = 'notifications.requested' "
        "AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
        address,
    )
    return str(payload["params"]["code"])


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def login(client: TestClient, login_name: str, password: str) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"login": login_name, "password": password, "client": "token"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def customer_auth(client: TestClient, profile: CustomerProfile) -> dict[str, str]:
    assert profile.phone is not None
    return login(client, profile.phone, PASSWORD)


def staff_auth(
    client: TestClient, db_url: str, settings: Settings, clock: FrozenClock, role: StaffRole
) -> dict[str, str]:
    _, staff_login = create_principal_sync(db_url, settings, clock, kind=PrincipalKind.STAFF, roles=frozenset({role}))
    return login(client, staff_login, STAFF_PASSWORD)


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def kyc_body(*, name: str = "王芳", birth: date = BIRTH, id_number: str | None = None) -> dict[str, Any]:
    return {
        "legal_name": name,
        "date_of_birth": birth.isoformat(),
        "id_type": "prc_resident_id",
        "id_number": id_number or make_ric(birth),
        "address": ADDRESS,
    }


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def count(db_url: str, sql: str, *params: Any) -> int:
    return int(one(db_url, sql, *params))


# -- registration --------------------------------------------------------------------------------


def test_registration_end_to_end_then_login_with_the_new_password(
    client: TestClient, db_url: str, app_clock: FrozenClock
) -> None:
    national = random_phone()
    e164 = "+86" + national
    started = client.post("/v1/registrations", json={"kind": "phone", "contact": national})
    assert started.status_code == 201, started.text
    now = app_clock.now()
    body = started.json()
    verification_id = body["verification_id"]
    assert body == {
        "verification_id": verification_id,
        "kind": "phone",
        "contact_masked": e164[:6] + "****" + e164[-4:],
        "expires_at": iso(now + timedelta(minutes=10)),
        "resend_after": iso(now + timedelta(seconds=60)),
    }
    first_code = code_for(db_url, verification_id)

    too_soon = client.post(f"/v1/registrations/{verification_id}/resend")
    assert error(too_soon) == (429, "verification_rate_limited")
    assert too_soon.json()["error"]["details"] == {"retry_after_s": 60}
    app_clock.advance(timedelta(seconds=61))
    resent = client.post(f"/v1/registrations/{verification_id}/resend")
    assert resent.status_code == 200
    assert resent.json()["expires_at"] == iso(app_clock.now() + timedelta(minutes=10))
    code = code_for(db_url, verification_id)
    if code != first_code:  # a fresh random code (equal once in a million): the first one stopped working
        stale = client.post(
            f"/v1/registrations/{verification_id}/complete",
            json={"code": first_code, "password": PASSWORD, "accepted_terms": True, "terms_version": TERMS},
        )
        assert error(stale) == (422, "verification_code_invalid")

    completed = client.post(
        f"/v1/registrations/{verification_id}/complete",
        json={"code": code, "password": PASSWORD, "accepted_terms": True, "terms_version": TERMS},
    )
    assert completed.status_code == 201, completed.text
    assert completed.headers["cache-control"] == "no-store"
    out = completed.json()
    customer_id = out["customer"]["id"]
    registered_at = iso(app_clock.now())
    assert out == {
        "customer": {
            "id": customer_id,
            "phone": e164,
            "email": None,
            "legal_name": None,
            "date_of_birth": None,
            "id_type": None,
            "id_number_masked": None,
            "address": None,
            "kyc_status": "not_submitted",
            "kyc_submitted_at": None,
            "kyc_reason": None,
            "tier": "basic",
            "created_at": registered_at,
            "updated_at": registered_at,
        },
        "login": e164,
        "next_step": "/v1/auth/login",
    }
    events = all_rows(
        db_url,
        "SELECT payload FROM platform.outbox WHERE topic = 'customers.registered' AND payload->>'customer_id' = %s",
        customer_id,
    )
    assert events == [({"customer_id": customer_id, "registered_at": app_clock.now().isoformat()},)]
    # The code and the password are in no audit row of the registration.
    details = all_rows(
        db_url,
        "SELECT action, details::text FROM platform.audit_log WHERE subject_id IN (%s, %s) "
        "AND action LIKE 'customers.%%' ORDER BY seq",
        verification_id,
        customer_id,
    )
    assert [a for a, _ in details] == [
        "customers.verification_started",
        "customers.verification_resent",
        *(["customers.verification_failed"] if code != first_code else []),
        "customers.registered",
    ]
    assert not any(code in d or PASSWORD in d or national in d for _, d in details)

    # The same code does not register twice.
    again = client.post(
        f"/v1/registrations/{verification_id}/complete",
        json={"code": code, "password": PASSWORD, "accepted_terms": True, "terms_version": TERMS},
    )
    assert error(again) == (409, "verification_already_used")

    # The next step: log in with the phone number and the new password, then read the profile.
    tokens = client.post("/v1/auth/login", json={"login": e164, "password": PASSWORD, "client": "token"})
    assert tokens.status_code == 200, tokens.text
    assert (tokens.json()["principal_id"], tokens.json()["kind"]) == (customer_id, "customer")
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"
    assert me.json() == out["customer"]


def test_wrong_code_is_refused_with_its_code_and_creates_nothing(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    email = random_email()
    started = client.post("/v1/registrations", json={"kind": "email", "contact": email})
    assert started.status_code == 201
    verification_id = started.json()["verification_id"]
    assert started.json()["contact_masked"] == "u***@example.com"
    code = code_for(db_url, verification_id)
    customers_before = count(db_url, "SELECT count(*) FROM customers.customers")
    principals_before = count(db_url, "SELECT count(*) FROM identity.principals")

    def complete(**changes: Any) -> Any:
        body = {"code": code, "password": PASSWORD, "accepted_terms": True, "terms_version": TERMS, **changes}
        return client.post(f"/v1/registrations/{verification_id}/complete", json=body)

    wrong = complete(code=wrong_code(code))
    assert error(wrong) == (422, "verification_code_invalid")
    assert wrong.json()["error"]["details"] == {"attempts_left": 4}
    assert error(complete(accepted_terms=False)) == (422, "terms_not_accepted")
    weak = complete(password="short")
    assert error(weak) == (422, "weak_password")
    assert error(complete(code="12ab56")) == (422, "verification_code_invalid")

    assert count(db_url, "SELECT count(*) FROM customers.customers") == customers_before
    assert count(db_url, "SELECT count(*) FROM identity.principals") == principals_before
    assert count(db_url, "SELECT count(*) FROM customers.customers WHERE email = %s", email.lower()) == 0
    # Two wrong codes counted; the verification is not used up, and no login exists for the address.
    assert all_rows(
        db_url, "SELECT attempts, consumed_at FROM customers.verifications WHERE id = %s", verification_id
    ) == [(2, None)]
    refused = client.post("/v1/auth/login", json={"login": email, "password": PASSWORD, "client": "token"})
    assert error(refused) == (401, "invalid_credentials")
    # Unknown verification: 404, and still nothing created.
    unknown = client.post(
        f"/v1/registrations/{uuid.uuid4()}/complete",
        json={"code": code, "password": PASSWORD, "accepted_terms": True, "terms_version": TERMS},
    )
    assert error(unknown) == (404, "verification_not_found")
    # The right code still works after the refusals.
    assert complete().status_code == 201
    assert count(db_url, "SELECT count(*) FROM customers.customers") == customers_before + 1


def test_registration_of_a_registered_phone_is_refused_with_login_taken(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    existing = new_customer(db_url, settings, app_clock)
    assert existing.phone is not None
    started = client.post("/v1/registrations", json={"kind": "phone", "contact": existing.phone})
    verification_id = started.json()["verification_id"]
    before = count(db_url, "SELECT count(*) FROM customers.customers")
    taken = client.post(
        f"/v1/registrations/{verification_id}/complete",
        json={
            "code": code_for(db_url, verification_id),
            "password": "another-password-entirely",
            "accepted_terms": True,
            "terms_version": TERMS,
        },
    )
    assert error(taken) == (409, "login_taken")
    assert count(db_url, "SELECT count(*) FROM customers.customers") == before
    login(client, existing.phone, PASSWORD)  # the existing customer's password is unchanged


def test_registration_rate_limit_answers_429_with_retry_after_and_sends_nothing(
    client: TestClient, db_url: str
) -> None:
    for _ in range(5):
        assert client.post("/v1/registrations", json={"kind": "email", "contact": random_email()}).status_code == 201
    blocked_email = random_email()
    limited = client.post("/v1/registrations", json={"kind": "email", "contact": blocked_email})
    assert error(limited) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "3600"
    assert limited.json()["error"]["details"] == {"scope": "customers.register", "retry_after_s": 3600}
    assert count(db_url, "SELECT count(*) FROM customers.verifications WHERE address = %s", blocked_email.lower()) == 0
    assert (
        count(
            db_url,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'notifications.requested' "
            "AND payload->>'recipient' = %s",
            blocked_email.lower(),
        )
        == 0
    )
    # Resending shares the budget: it sends a message too.
    assert error(client.post(f"/v1/registrations/{uuid.uuid4()}/resend")) == (429, "rate_limited")


def test_invalid_phone_email_and_id_number_answer_422_with_the_domain_code(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    verifications = count(db_url, "SELECT count(*) FROM customers.verifications")
    bad_phone = client.post("/v1/registrations", json={"kind": "phone", "contact": "12345"})
    assert error(bad_phone) == (422, "invalid_phone")
    assert bad_phone.json()["error"]["details"]["field"] == "phone"
    landline = client.post("/v1/registrations", json={"kind": "phone", "contact": "+861065529988"})
    assert error(landline) == (422, "invalid_phone")
    assert landline.json()["error"]["details"] == {"field": "phone", "reason": "not_mobile"}
    bad_email = client.post("/v1/registrations", json={"kind": "email", "contact": "li.wei@@example"})
    assert error(bad_email) == (422, "invalid_email")
    assert bad_email.json()["error"]["details"]["field"] == "email"
    assert error(client.post("/v1/registrations", json={"kind": "fax", "contact": "12345"})) == (
        422,
        "validation_error",
    )
    assert count(db_url, "SELECT count(*) FROM customers.verifications") == verifications

    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    number = make_ric(BIRTH)
    wrong_check = number[:-1] + ("0" if number[-1] != "0" else "1")
    checksum = client.put("/v1/me/kyc", json=kyc_body(id_number=wrong_check), headers=auth)
    assert error(checksum) == (422, "invalid_id_number")
    assert checksum.json()["error"]["details"] == {"field": "id_number", "reason": "checksum"}
    short = client.put("/v1/me/kyc", json=kyc_body(id_number="1101011990"), headers=auth)
    assert short.json()["error"]["details"] == {"field": "id_number", "reason": "length"}
    mismatch = client.put("/v1/me/kyc", json=kyc_body(id_number=make_ric(date(1991, 5, 17))), headers=auth)
    assert error(mismatch) == (422, "id_birth_date_mismatch")
    assert error(client.put("/v1/me/kyc", json=kyc_body(name="Zhang 伟"), headers=auth)) == (422, "invalid_name")
    assert error(client.put("/v1/me/kyc", json=kyc_body(birth=date(2015, 1, 1)), headers=auth)) == (
        422,
        "customer_underage",
    )
    assert client.get("/v1/me", headers=auth).json()["kyc_status"] == "not_submitted"
    assert (
        count(
            db_url,
            "SELECT count(*) FROM platform.audit_log WHERE subject_id = %s AND action = 'customers.kyc_submitted'",
            str(profile.id),
        )
        == 0
    )


# -- the customer's own profile ------------------------------------------------------------------


def test_me_is_the_caller_only_and_needs_authentication(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    first = new_customer(db_url, settings, app_clock)
    second = new_customer(db_url, settings, app_clock)
    assert error(client.get("/v1/me")) == (401, "unauthenticated")
    assert error(client.get("/v1/me", headers={"Authorization": "Bearer not-a-token"})) == (401, "unauthenticated")
    assert error(client.put("/v1/me/kyc", json=kyc_body())) == (401, "unauthenticated")
    assert client.get("/v1/me", headers=customer_auth(client, first)).json()["id"] == str(first.id)
    assert client.get("/v1/me", headers=customer_auth(client, second)).json()["id"] == str(second.id)
    teller = staff_auth(client, db_url, settings, app_clock, StaffRole.TELLER)
    assert error(client.get("/v1/me", headers=teller)) == (403, "forbidden")


def test_kyc_submit_then_staff_approval_publishes_kyc_verified_and_banking_opens_an_account(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    number = make_ric(BIRTH)
    submitted = client.put("/v1/me/kyc", json=kyc_body(id_number=number[:6] + " " + number[6:].lower()), headers=auth)
    assert submitted.status_code == 200, submitted.text
    submitted_at = iso(app_clock.now())
    me = submitted.json()
    assert {k: me[k] for k in ("legal_name", "date_of_birth", "id_type", "id_number_masked", "address")} == {
        "legal_name": "王芳",
        "date_of_birth": "1990-05-17",
        "id_type": "prc_resident_id",
        "id_number_masked": "*" * 14 + number[-4:],
        "address": ADDRESS_STORED,
    }
    assert (me["kyc_status"], me["kyc_submitted_at"], me["updated_at"]) == ("pending", submitted_at, submitted_at)
    assert number not in submitted.text

    reviewer = staff_auth(client, db_url, settings, app_clock, StaffRole.CRM_AGENT)
    queue = client.get("/v1/staff/kyc-queue", params={"limit": 100}, headers=reviewer)
    assert queue.status_code == 200
    assert str(profile.id) in [item["id"] for item in queue.json()["items"]]

    revealed = client.post(
        f"/v1/staff/customers/{profile.id}/id-number/reveal",
        json={"reason": "comparing with the ID card"},
        headers=reviewer,
    )
    assert revealed.status_code == 200
    assert revealed.json() == {"customer_id": str(profile.id), "id_number": number}
    assert revealed.headers["cache-control"] == "no-store"

    app_clock.advance(timedelta(minutes=5))
    decided = client.post(
        f"/v1/staff/customers/{profile.id}/kyc-decision",
        json={"decision": "verify", "reason": "documents   seen"},
        headers=reviewer,
    )
    assert decided.status_code == 200, decided.text
    assert (decided.json()["kyc_status"], decided.json()["kyc_reason"]) == ("verified", "documents seen")
    verified_at = app_clock.now().isoformat()
    events = all_rows(
        db_url,
        "SELECT payload FROM platform.outbox WHERE topic = 'customers.kyc_verified' AND payload->>'customer_id' = %s",
        str(profile.id),
    )
    assert events == [({"customer_id": str(profile.id), "verified_at": verified_at},)]
    audit = all_rows(
        db_url,
        "SELECT action, details FROM platform.audit_log WHERE subject_id = %s AND action LIKE 'customers.%%' "
        "ORDER BY seq",
        str(profile.id),
    )
    assert [(a, d.get("reason")) for a, d in audit] == [
        ("customers.registered", None),
        ("customers.kyc_submitted", None),
        ("customers.id_number_revealed", "comparing with the ID card"),
        ("customers.kyc_verified", "documents seen"),
    ]
    assert not any(number in str(d) for _, d in audit)

    # A decided profile cannot be decided again, nor changed by the customer.
    again = client.post(
        f"/v1/staff/customers/{profile.id}/kyc-decision", json={"decision": "reject", "reason": "x"}, headers=reviewer
    )
    assert error(again) == (409, "invalid_kyc_transition")
    assert error(client.put("/v1/me/kyc", json=kyc_body(), headers=auth)) == (409, "invalid_kyc_transition")

    # The running relay hands the event to banking, which opens the first account.
    accounts: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 10
    while not accounts and time.monotonic() < deadline:
        accounts = all_rows(
            db_url, "SELECT currency, product, status FROM banking.accounts WHERE customer_id = %s", profile.id
        )
        time.sleep(0.05)
    assert accounts == [("CNY", "current", "open")]


def test_kyc_rejection_then_resubmission_through_http(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    assert client.put("/v1/me/kyc", json=kyc_body(name="刘洋"), headers=auth).status_code == 200
    reviewer = staff_auth(client, db_url, settings, app_clock, StaffRole.CRM_AGENT)
    blank = client.post(
        f"/v1/staff/customers/{profile.id}/kyc-decision", json={"decision": "reject", "reason": "   "}, headers=reviewer
    )
    assert error(blank) == (422, "reason_required")
    rejected = client.post(
        f"/v1/staff/customers/{profile.id}/kyc-decision",
        json={"decision": "reject", "reason": "photo unreadable"},
        headers=reviewer,
    )
    assert (rejected.json()["kyc_status"], rejected.json()["kyc_reason"]) == ("rejected", "photo unreadable")
    assert client.get("/v1/me", headers=auth).json()["kyc_reason"] == "photo unreadable"
    resubmitted = client.put("/v1/me/kyc", json=kyc_body(name="刘洋"), headers=auth)
    assert (resubmitted.json()["kyc_status"], resubmitted.json()["kyc_reason"]) == ("pending", None)
    assert (
        count(
            db_url,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'customers.kyc_verified' "
            "AND payload->>'customer_id' = %s",
            str(profile.id),
        )
        == 0
    )
    unknown = client.post(
        f"/v1/staff/customers/{uuid.uuid4()}/kyc-decision",
        json={"decision": "verify", "reason": "ok"},
        headers=reviewer,
    )
    assert error(unknown) == (404, "customer_not_found")


def test_address_change_and_contact_change_through_http(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    other = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    moved = client.put("/v1/me/address", json=ADDRESS, headers=auth)
    assert moved.status_code == 200
    assert moved.json()["address"] == ADDRESS_STORED
    bad = client.put("/v1/me/address", json={**ADDRESS, "postal_code": "10000"}, headers=auth)
    assert error(bad) == (422, "invalid_address")
    assert bad.json()["error"]["details"] == {"field": "postal_code"}
    assert client.get("/v1/me", headers=auth).json()["address"] == ADDRESS_STORED

    new_email = random_email()
    started = client.post("/v1/me/contact-changes", json={"kind": "email", "contact": new_email}, headers=auth)
    assert started.status_code == 201
    verification_id = started.json()["verification_id"]
    code = code_for(db_url, verification_id)
    # Another customer cannot confirm it, even with the right code; a wrong code is counted.
    stranger = client.post(
        f"/v1/me/contact-changes/{verification_id}/confirm", json={"code": code}, headers=customer_auth(client, other)
    )
    assert error(stranger) == (404, "verification_not_found")
    wrong = client.post(
        f"/v1/me/contact-changes/{verification_id}/confirm", json={"code": wrong_code(code)}, headers=auth
    )
    assert error(wrong) == (422, "verification_code_invalid")
    assert client.get("/v1/me", headers=auth).json()["email"] is None
    confirmed = client.post(f"/v1/me/contact-changes/{verification_id}/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 200
    assert (confirmed.json()["email"], confirmed.json()["phone"]) == (new_email.lower(), profile.phone)
    # A registration code is not a contact-change code.
    registration = client.post("/v1/registrations", json={"kind": "email", "contact": random_email()}).json()
    crossed = client.post(
        f"/v1/me/contact-changes/{registration['verification_id']}/confirm",
        json={"code": code_for(db_url, registration["verification_id"])},
        headers=auth,
    )
    assert error(crossed) == (404, "verification_not_found")


def test_a_cookie_session_needs_the_csrf_token_to_change_the_profile(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    browser = client.post("/v1/auth/login", json={"login": profile.phone, "password": PASSWORD, "client": "browser"})
    assert browser.status_code == 200
    assert client.get("/v1/me").json()["id"] == str(profile.id)  # the cookie reads
    refused = client.put("/v1/me/address", json=ADDRESS)
    assert error(refused) == (403, "csrf_failed")
    assert client.get("/v1/me").json()["address"] is None
    accepted = client.put("/v1/me/address", json=ADDRESS, headers={"X-CSRF-Token": browser.json()["csrf_token"]})
    assert accepted.status_code == 200


def test_tiers_are_public_with_limits_in_minor_units(client: TestClient) -> None:
    response = client.get("/v1/tiers")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {
                "code": "basic",
                "currency": "CNY",
                "per_payment_limit_minor": 500_000,
                "per_payment_limit": "5000.00",
                "daily_limit_minor": 2_000_000,
                "daily_limit": "20000.00",
            },
            {
                "code": "standard",
                "currency": "CNY",
                "per_payment_limit_minor": 5_000_000,
                "per_payment_limit": "50000.00",
                "daily_limit_minor": 20_000_000,
                "daily_limit": "200000.00",
            },
            {
                "code": "premium",
                "currency": "CNY",
                "per_payment_limit_minor": 50_000_000,
                "per_payment_limit": "500000.00",
                "daily_limit_minor": 200_000_000,
                "daily_limit": "2000000.00",
            },
        ]
    }


# -- staff ---------------------------------------------------------------------------------------


def staff_calls(customer_id: uuid.UUID) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/v1/staff/customer-search", {"name": "wang"}),
        ("GET", f"/v1/staff/customers/{customer_id}", None),
        ("GET", "/v1/staff/kyc-queue", None),
        ("POST", f"/v1/staff/customers/{customer_id}/kyc-decision", {"decision": "verify", "reason": "looks fine"}),
        ("POST", f"/v1/staff/customers/{customer_id}/id-number/reveal", {"reason": "curious"}),
        ("PUT", f"/v1/staff/customers/{customer_id}/tier", {"tier": "premium", "reason": "asked nicely"}),
    ]


def test_a_customer_calling_staff_routes_gets_403_and_changes_nothing(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    assert client.put("/v1/me/kyc", json=kyc_body(), headers=auth).status_code == 200
    before = client.get("/v1/me", headers=auth).json()
    audit_before = count(db_url, "SELECT count(*) FROM platform.audit_log")
    for method, path, body in staff_calls(profile.id):
        response = client.request(method, path, json=body, headers=auth)
        assert error(response) == (403, "forbidden"), (method, path)
        assert error(client.request(method, path, json=body)) == (401, "unauthenticated"), (method, path)
    assert client.get("/v1/me", headers=auth).json() == before
    assert count(db_url, "SELECT count(*) FROM platform.audit_log") == audit_before


def test_a_teller_without_kyc_decide_is_refused_and_nothing_changes(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    assert client.put("/v1/me/kyc", json=kyc_body(), headers=auth).status_code == 200
    teller = staff_auth(client, db_url, settings, app_clock, StaffRole.TELLER)
    audit_before = count(db_url, "SELECT count(*) FROM platform.audit_log")

    decide = client.post(
        f"/v1/staff/customers/{profile.id}/kyc-decision", json={"decision": "verify", "reason": "ok"}, headers=teller
    )
    assert error(decide) == (403, "forbidden")
    assert decide.json()["error"]["details"] == {"permission": "kyc:decide"}
    reveal = client.post(f"/v1/staff/customers/{profile.id}/id-number/reveal", json={"reason": "x"}, headers=teller)
    assert error(reveal) == (403, "forbidden")
    assert error(client.get("/v1/staff/kyc-queue", headers=teller)) == (403, "forbidden")
    tier = client.put(f"/v1/staff/customers/{profile.id}/tier", json={"tier": "premium", "reason": "x"}, headers=teller)
    assert error(tier) == (403, "forbidden")

    # The teller may read customers (customers:read); the profile is as the customer left it.
    read = client.get(f"/v1/staff/customers/{profile.id}", headers=teller)
    assert read.status_code == 200
    assert (read.json()["kyc_status"], read.json()["tier"], read.json()["kyc_reason"]) == ("pending", "basic", None)
    assert count(db_url, "SELECT count(*) FROM platform.audit_log") == audit_before
    assert (
        count(
            db_url,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'customers.kyc_verified' "
            "AND payload->>'customer_id' = %s",
            str(profile.id),
        )
        == 0
    )
    missing = client.get(f"/v1/staff/customers/{uuid.uuid4()}", headers=teller)
    assert error(missing) == (404, "customer_not_found")


def test_staff_search_by_pinyin_phone_and_id_number_with_cursor_paging(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    numbers: dict[str, str] = {}

    async def make(service: CustomerService, db: Database) -> list[CustomerProfile]:
        made = []
        for name in ("曾小明", "曾晓明", "曾小梅"):
            profile = await register(service, db)
            numbers[name] = make_ric(BIRTH)
            await service.submit_kyc(
                customer(profile.id), profile.id, submission(BIRTH, name=name, id_number=numbers[name])
            )
            made.append(profile)
        return made

    made = with_services(db_url, settings, app_clock, make)
    ids = sorted(str(p.id) for p in made)
    teller = staff_auth(client, db_url, settings, app_clock, StaffRole.TELLER)

    def search(**body: Any) -> Any:
        return client.post("/v1/staff/customer-search", json=body, headers=teller)

    first = search(name="zengxiao", limit=2)
    assert first.status_code == 200, first.text
    assert [i["id"] for i in first.json()["items"]] == ids[:2]
    assert first.json()["next_cursor"] is not None
    second = search(name="zengxiao", limit=2, cursor=first.json()["next_cursor"])
    assert ([i["id"] for i in second.json()["items"]], second.json()["next_cursor"]) == (ids[2:], None)
    # Every reading of the surname, and initials: 曾 is also "ceng".
    assert [i["id"] for i in search(name="CXM").json()["items"]] == ids
    assert [i["id"] for i in search(name="ceng xiao mei").json()["items"]] == [str(made[2].id)]
    assert [i["id"] for i in search(name="zengxiaoming").json()["items"]] == sorted(str(p.id) for p in made[:2])
    assert [i["legal_name"] for i in search(name="曾小梅").json()["items"]] == ["曾小梅"]

    by_phone = search(phone=made[1].phone[3:])  # national form
    assert [i["id"] for i in by_phone.json()["items"]] == [str(made[1].id)]
    number = numbers["曾小梅"]
    by_id = search(id_number=f"{number[:6]} {number[6:14]} {number[14:].lower()}")
    assert [i["id"] for i in by_id.json()["items"]] == [str(made[2].id)]
    assert by_id.json()["items"][0]["id_number_masked"] == "*" * 14 + number[-4:]
    assert number not in by_id.text
    assert search(id_number=make_ric(BIRTH)).json() == {"items": [], "next_cursor": None}

    assert error(search(name="zeng", phone=made[0].phone)) == (422, "invalid_search")
    assert error(search()) == (422, "invalid_search")
    assert error(search(name="zeng", cursor="not-a-cursor")) == (422, "invalid_cursor")
    assert error(search(name="zeng", limit=101)) == (422, "validation_error")
    assert error(search(phone="12345")) == (422, "invalid_phone")


def test_kyc_queue_pages_oldest_submission_first(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    reviewer = staff_auth(client, db_url, settings, app_clock, StaffRole.CRM_AGENT)
    pending: list[str] = []
    cursor = None
    while True:  # what earlier tests of the module left pending, in queue order
        page = client.get(
            "/v1/staff/kyc-queue", params={"limit": 100, **({"cursor": cursor} if cursor else {})}, headers=reviewer
        ).json()
        pending += [i["id"] for i in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break

    async def make(service: CustomerService, db: Database) -> list[str]:
        made = []
        for _ in range(3):
            profile = await register(service, db)
            await service.submit_kyc(customer(profile.id), profile.id, submission(BIRTH, name="赵敏"))
            app_clock.advance(timedelta(seconds=1))
            made.append(str(profile.id))
        return made

    made = with_services(db_url, settings, app_clock, make)
    expected = pending + made
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/staff/kyc-queue", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=reviewer
        )
        assert page.status_code == 200
        assert len(page.json()["items"]) <= 2
        seen += [i["id"] for i in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            break
    assert seen == expected
    assert error(client.get("/v1/staff/kyc-queue", params={"cursor": "Yy"}, headers=reviewer)) == (
        422,
        "invalid_cursor",
    )
    assert error(client.get("/v1/staff/kyc-queue", params={"limit": 0}, headers=reviewer)) == (
        422,
        "validation_error",
    )


def test_staff_set_the_tier_with_a_reason(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    crm = staff_auth(client, db_url, settings, app_clock, StaffRole.CRM_AGENT)
    path = f"/v1/staff/customers/{profile.id}/tier"
    assert error(client.put(path, json={"tier": "diamond", "reason": "vip"}, headers=crm)) == (422, "unknown_tier")
    assert error(client.put(path, json={"tier": "premium", "reason": ""}, headers=crm)) == (422, "reason_required")
    assert client.get(f"/v1/staff/customers/{profile.id}", headers=crm).json()["tier"] == "basic"
    changed = client.put(path, json={"tier": "premium", "reason": "private banking client"}, headers=crm)
    assert changed.status_code == 200
    assert changed.json()["tier"] == "premium"
    events = all_rows(
        db_url,
        "SELECT payload FROM platform.outbox WHERE topic = 'customers.tier_changed' AND payload->>'customer_id' = %s",
        str(profile.id),
    )
    assert events == [({"customer_id": str(profile.id), "tier": "premium", "changed_at": app_clock.now().isoformat()},)]
    assert client.get("/v1/me", headers=customer_auth(client, profile)).json()["tier"] == "premium"


def test_every_state_change_audits_where_the_request_came_from(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    auth = customer_auth(client, profile)
    response = client.put(
        "/v1/me/address", json=ADDRESS, headers={**auth, "User-Agent": "smartbank-app/1.0", "X-Request-ID": "req-42"}
    )
    assert response.status_code == 200
    rows = all_rows(
        db_url,
        "SELECT device, request_id FROM platform.audit_log "
        "WHERE subject_id = %s AND action = 'customers.address_changed'",
        str(profile.id),
    )
    assert rows == [("smartbank-app/1.0", "req-42")]


def test_control_characters_in_free_text_are_refused_with_422_not_500(
    client: TestClient, db_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    profile = new_customer(db_url, settings, app_clock)
    assert (
        client.put("/v1/me/kyc", json=kyc_body(name="孙丽"), headers=customer_auth(client, profile)).status_code == 200
    )
    admin = staff_auth(client, db_url, settings, app_clock, StaffRole.ADMIN)
    audit_before = count(db_url, "SELECT count(*) FROM platform.audit_log")
    for method, path, body in [
        ("POST", "/v1/staff/customer-search", {"name": "sun\x00li"}),
        ("POST", f"/v1/staff/customers/{profile.id}/kyc-decision", {"decision": "verify", "reason": "ok\x00"}),
        ("POST", f"/v1/staff/customers/{profile.id}/id-number/reveal", {"reason": "\x00"}),
        ("PUT", f"/v1/staff/customers/{profile.id}/tier", {"tier": "premium", "reason": "vip\x1b[31m"}),
    ]:
        response = client.request(method, path, json=body, headers=admin)
        assert error(response) == (422, "validation_error"), (path, response.text)
    assert count(db_url, "SELECT count(*) FROM platform.audit_log") == audit_before
    read = client.get(f"/v1/staff/customers/{profile.id}", headers=admin).json()
    assert (read["kyc_status"], read["tier"]) == ("pending", "basic")
    # Where the rules read the text, they refuse it with their own code.
    auth = customer_auth(client, profile)
    assert error(client.put("/v1/me/address", json={**ADDRESS, "city": "北京\x00"}, headers=auth)) == (
        422,
        "invalid_address",
    )
    assert error(client.post("/v1/registrations", json={"kind": "email", "contact": "a\x00b@example.com"})) == (
        422,
        "invalid_email",
    )
    assert error(client.post("/v1/registrations", json={"kind": "phone", "contact": "139\x001234\x005678"})) == (
        422,
        "invalid_phone",
    )
