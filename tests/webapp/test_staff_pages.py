"""The staff console over plain HTTP (no JavaScript): sign-in, search, the customer view and its actions."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from smartbank.customers.model import CustomerProfile
from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import PASSWORD, Bank, _submission, all_rows, code_now, onboard, open_bank, wait_for
from tests.customers.helpers import register
from tests.webapp.test_pages import alert_of, csrf_of


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.41") as opened:
        yield opened


def new_staff(bank: Bank, *roles: StaffRole, staff_id: uuid.UUID | None = None) -> str:
    """A staff member with these roles; returns the login."""
    login_name = f"staff-{secrets.token_hex(6)}@bank.example"
    rt = bank.runtime

    async def create() -> None:
        async with rt.db.transaction() as conn:
            await rt.identity.create_login(
                conn,
                principal_id=staff_id or new_id(),
                kind=PrincipalKind.STAFF,
                login=login_name,
                password=PASSWORD,
                roles=frozenset(roles),
            )

    bank.run(create)
    return login_name


def staff_sign_in(bank: Bank, login_name: str) -> str:
    """Log in at /staff/login through the form; returns the session's CSRF token (from the search page)."""
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/staff/login").text)
    response = bank.client.post(
        "/staff/login",
        data={"csrf_token": token, "login": login_name, "password": PASSWORD, "next": "/staff/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/staff/"
    return csrf_of(bank.client.get("/staff/").text)


def form_of(html: str, action: str, index: int = 0) -> dict[str, str]:
    """The hidden fields of the ``index``-th form posting to ``action``."""
    forms = re.findall(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert len(forms) > index, f"no form to {action}"
    return dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', forms[index]))


def pending_customer(bank: Bank, name: str = "李娜") -> CustomerProfile:
    """A customer registered by phone whose KYC profile waits for a decision."""
    rt = bank.runtime
    profile = bank.run(lambda: register(rt.customers, rt.db))
    me = Principal(profile.id, PrincipalKind.CUSTOMER)
    return bank.run(lambda: rt.customers.submit_kyc(me, profile.id, _submission(name)))


def test_staff_log_in_and_out(bank: Bank) -> None:
    bank.client.cookies.clear()
    response = bank.client.get("/staff/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=%2Fstaff%2F"
    csrf = staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    page = bank.client.get("/staff/")
    assert page.status_code == 200
    assert "<h1>Find a customer</h1>" in page.text
    response = bank.client.post("/staff/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login"
    assert bank.client.get("/staff/", follow_redirects=False).status_code == 303


def test_a_customer_is_refused_at_the_staff_login_and_keeps_no_session(bank: Bank) -> None:
    customer = onboard(bank)
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/staff/login").text)
    response = bank.client.post(
        "/staff/login", data={"csrf_token": token, "login": customer.login, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert alert_of(response.text) == "This console is for bank staff. Customers sign in to the web app."
    assert "sb_session" not in bank.client.cookies
    assert all_rows(bank.url, "SELECT status FROM identity.sessions WHERE principal_id = %s", customer.id) == [
        ("ended",)
    ]


def test_search_finds_a_customer_by_phone_and_by_name_and_shows_the_customer(bank: Bank) -> None:
    profile = pending_customer(bank, "欧阳修远")
    assert profile.phone is not None
    staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    link = f'href="/staff/customers/{profile.id}"'
    by_name = bank.client.get("/staff/", params={"by": "name", "q": "ouyangxiu"})
    assert by_name.status_code == 200
    assert link in by_name.text
    assert link in bank.client.get("/staff/", params={"by": "name", "q": "欧阳"}).text
    by_phone = bank.client.get("/staff/", params={"by": "phone", "q": profile.phone})
    assert by_phone.status_code == 200
    assert by_phone.text.count('href="/staff/customers/') == 1
    assert link in by_phone.text
    nothing = bank.client.get("/staff/", params={"by": "phone", "q": "+8613000000000"})
    assert nothing.status_code == 200
    assert "No customer matches." in nothing.text
    view = bank.client.get(f"/staff/customers/{profile.id}")
    assert view.status_code == 200
    assert "<h1>欧阳修远</h1>" in view.text
    assert profile.id_number_masked is not None and profile.id_number_masked in view.text
    assert '<dd class="kyc">Waiting for a decision</dd>' in view.text
    assert bank.client.get("/staff/customers/not-an-id").status_code == 404


def test_a_teller_deposit_through_the_form_pays_once_when_sent_twice(bank: Bank) -> None:
    customer = onboard(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    fields = form_of(page, f"/staff/customers/{customer.id}/cash")
    assert fields["account"] == str(customer.account_id)
    data = {**fields, "kind": "deposit", "amount": "250.40"}
    for _ in range(2):
        response = bank.client.post(f"/staff/customers/{customer.id}/cash", data=data, follow_redirects=False)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/staff/customers/{customer.id}?done=1"
    assert all_rows(
        bank.url,
        "SELECT kind, amount_minor, status FROM banking.payments WHERE account_id = %s",
        customer.account_id,
    ) == [("cash_deposit", 25040, "completed")]
    shown = bank.client.get(f"/staff/customers/{customer.id}?done=1").text
    assert '<dd class="posted">CN¥250.40</dd>' in shown

    def listed() -> bool:
        bank.runtime.relay.kick()  # history is projected by the relay
        return '<span class="amount in">+CN¥250.40</span>' in bank.client.get(f"/staff/customers/{customer.id}").text

    wait_for(listed)
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    assert page.count('<li class="entry">') == 1
    # A new render carries a new key: a second deposit is a new payment.
    assert form_of(shown, f"/staff/customers/{customer.id}/cash")["key"] != fields["key"]


def test_kyc_approval_through_the_form(bank: Bank) -> None:
    profile = pending_customer(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.CRM_AGENT))
    page = bank.client.get(f"/staff/customers/{profile.id}").text
    fields = form_of(page, f"/staff/customers/{profile.id}/kyc")
    # No reason: refused, nothing changes.
    refused = bank.client.post(f"/staff/customers/{profile.id}/kyc", data={**fields, "decision": "verify"})
    assert refused.status_code == 422
    assert alert_of(refused.text) == "Give a reason."
    response = bank.client.post(
        f"/staff/customers/{profile.id}/kyc",
        data={**fields, "decision": "verify", "reason": "passport checked"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert all_rows(bank.url, "SELECT kyc_status, kyc_reason FROM customers.customers WHERE id = %s", profile.id) == [
        ("verified", "passport checked")
    ]
    assert '<dd class="kyc">Verified</dd>' in bank.client.get(f"/staff/customers/{profile.id}").text


def test_a_teller_does_not_see_the_kyc_action_and_cannot_use_it(bank: Bank) -> None:
    profile = pending_customer(bank)
    csrf = staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    page = bank.client.get(f"/staff/customers/{profile.id}").text
    assert f'action="/staff/customers/{profile.id}/kyc"' not in page
    assert "/freeze" not in page
    response = bank.client.post(
        f"/staff/customers/{profile.id}/kyc", data={"csrf_token": csrf, "decision": "verify", "reason": "ok"}
    )
    assert response.status_code == 403
    assert alert_of(response.text) == "Your role does not allow this."
    assert all_rows(bank.url, "SELECT kyc_status FROM customers.customers WHERE id = %s", profile.id) == [("pending",)]


def test_freeze_and_unfreeze_with_a_reason(bank: Bank) -> None:
    customer = onboard(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.RISK_ANALYST))
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    assert "/cash" not in page  # a risk analyst handles no cash
    fields = form_of(page, f"/staff/customers/{customer.id}/freeze")
    assert fields["frozen"] == "1"
    refused = bank.client.post(f"/staff/customers/{customer.id}/freeze", data={**fields, "reason": "  "})
    assert refused.status_code == 422
    assert alert_of(refused.text) == "Give a reason."
    assert all_rows(bank.url, "SELECT status FROM banking.accounts WHERE id = %s", customer.account_id) == [("open",)]
    response = bank.client.post(
        f"/staff/customers/{customer.id}/freeze", data={**fields, "reason": "fraud report"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    state = "SELECT status FROM banking.accounts WHERE id = %s"
    assert all_rows(bank.url, state, customer.account_id) == [("frozen",)]
    fields = form_of(bank.client.get(f"/staff/customers/{customer.id}").text, f"/staff/customers/{customer.id}/freeze")
    assert fields["frozen"] == "0"
    response = bank.client.post(
        f"/staff/customers/{customer.id}/freeze", data={**fields, "reason": "cleared"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert all_rows(bank.url, state, customer.account_id) == [("open",)]


def test_an_action_without_its_csrf_token_is_refused_and_writes_nothing(bank: Bank) -> None:
    customer = onboard(bank)
    pending = pending_customer(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.ADMIN))
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    cash = {k: v for k, v in form_of(page, f"/staff/customers/{customer.id}/cash").items() if k != "csrf_token"}
    response = bank.client.post(
        f"/staff/customers/{customer.id}/cash", data={**cash, "kind": "deposit", "amount": "10"}
    )
    assert response.status_code == 403
    assert alert_of(response.text) == "This form has expired. Please try again."
    response = bank.client.post(
        f"/staff/customers/{pending.id}/kyc", data={"csrf_token": "forged", "decision": "verify", "reason": "x"}
    )
    assert response.status_code == 403
    assert all_rows(bank.url, "SELECT count(*) FROM banking.payments WHERE account_id = %s", customer.account_id) == [
        (0,)
    ]
    assert all_rows(bank.url, "SELECT kyc_status FROM customers.customers WHERE id = %s", pending.id) == [("pending",)]


def test_when_staff_need_mfa_an_enrolled_one_without_an_mfa_session_is_refused(bank: Bank) -> None:
    staff_id = new_id()
    staff_sign_in(bank, new_staff(bank, StaffRole.ADMIN, staff_id=staff_id))
    # MFA turned on after this password-only login (with no session: the login's stays unverified).
    me = Principal(staff_id, PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    client = ClientInfo(ip="203.0.113.41", device="test", request_id=None)
    rt = bank.runtime
    enrolment = bank.run(lambda: rt.identity.start_mfa_enrolment(me, client))
    bank.run(lambda: rt.identity.confirm_mfa_enrolment(me, code_now(enrolment.secret, bank.clock), client))
    identity = bank.runtime.identity
    identity.staff_mfa_required = True
    try:
        response = bank.client.get("/staff/")
    finally:
        identity.staff_mfa_required = False
    assert response.status_code == 403
    assert alert_of(response.text).startswith("The staff console needs a login that passed MFA.")
    assert bank.client.get("/staff/").status_code == 200


def test_staff_with_mfa_enrolled_pass_the_code_challenge(bank: Bank) -> None:
    staff_id = new_id()
    login_name = new_staff(bank, StaffRole.TELLER, staff_id=staff_id)
    me = Principal(staff_id, PrincipalKind.STAFF, frozenset({StaffRole.TELLER}))
    client = ClientInfo(ip="203.0.113.41", device="test", request_id=None)
    rt = bank.runtime
    enrolment = bank.run(lambda: rt.identity.start_mfa_enrolment(me, client))
    bank.run(lambda: rt.identity.confirm_mfa_enrolment(me, code_now(enrolment.secret, bank.clock), client))
    bank.clock.advance(timedelta(seconds=30))  # the next TOTP step: the enrolment code is spent
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/staff/login").text)
    challenge = bank.client.post("/staff/login", data={"csrf_token": token, "login": login_name, "password": PASSWORD})
    assert challenge.status_code == 200
    assert "sb_session" not in bank.client.cookies
    fields = form_of(challenge.text, "/staff/login/mfa")
    right = code_now(enrolment.secret, bank.clock)
    wrong = bank.client.post("/staff/login/mfa", data={**fields, "code": "000000" if right != "000000" else "111111"})
    assert wrong.status_code == 401
    assert "sb_session" not in bank.client.cookies
    response = bank.client.post("/staff/login/mfa", data={**fields, "code": right}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/staff/"
    assert bank.client.get("/staff/").status_code == 200
