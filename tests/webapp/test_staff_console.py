"""The rest of the staff console over plain HTTP: search by account number, payments and the audit
trail on the customer view, the KYC queue, tiers, revealing the ID number, MFA set-up, and what each
role sees and may do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from smartbank.platform.settings import Settings
from smartbank.web.ui import staff as staff_pages
from tests.banking.http_helpers import PASSWORD, Bank, all_rows, code_now, onboard, open_bank, scalar
from tests.webapp.test_pages import alert_of, csrf_of
from tests.webapp.test_staff_pages import form_of, new_staff, pending_customer, staff_sign_in


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.42") as opened:
        yield opened


def test_search_by_account_number_finds_the_holder(bank: Bank) -> None:
    customer = onboard(bank, name="郭靖")
    staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    spaced = " ".join(customer.account_number[i : i + 4] for i in range(0, 16, 4))
    found = bank.client.get("/staff/", params={"by": "account", "q": spaced})
    assert found.status_code == 200
    assert re.findall(r'href="/staff/customers/([0-9a-f-]+)"', found.text) == [str(customer.id)]
    assert '<input type="radio" id="by-account" name="by" value="account" checked>' in found.text
    unknown = customer.account_number[:4] + "0000009999"
    unknown += f"{98 - int(unknown + '00') % 97:02d}"
    none = bank.client.get("/staff/", params={"by": "account", "q": unknown})
    assert none.status_code == 200
    assert "No customer matches." in none.text
    bad = bank.client.get("/staff/", params={"by": "account", "q": "1234"})
    assert bad.status_code == 422
    assert alert_of(bad.text) == "An account number is 16 digits; check it and try again."
    iban = bank.client.get("/staff/", params={"by": "account", "q": "DE89 3704 0044 0532 0130 00"})
    assert iban.status_code == 422
    assert alert_of(iban.text).startswith("That is not an IBAN of this bank")


def test_the_customer_view_shows_payments_and_a_paged_audit_trail_in_sentences(bank: Bank) -> None:
    customer = onboard(bank, fund_minor=10_000, name="黄蓉")
    analyst_id = new_id()
    analyst_login = new_staff(bank, StaffRole.RISK_ANALYST, staff_id=analyst_id)
    staff_sign_in(bank, analyst_login)
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    fields = form_of(page, f"/staff/customers/{customer.id}/freeze")
    response = bank.client.post(
        f"/staff/customers/{customer.id}/freeze", data={**fields, "reason": "card stolen"}, follow_redirects=False
    )
    assert response.status_code == 303

    page = bank.client.get(f"/staff/customers/{customer.id}").text
    payments = page[page.index('id="payments-h"') : page.index('id="audit-h"')]
    assert re.findall(r'<span class="name">([^<]+)</span>', payments) == ["Cash deposit"]
    assert '<span class="status">Completed</span>' in payments
    assert '<span class="amount in">+CN¥100.00</span>' in payments
    audit = page[page.index('id="audit-h"') :]
    sentences = re.findall(r'<span class="name">([^<]+)</span>', audit)
    assert sentences == [
        "Froze an account",
        "A cash deposit of CN¥100.00 went through",
        "Recorded a cash deposit of CN¥100.00",
        "Opened an account",
        "Approved the identity check",
        "Sent identity documents for checking",
        "Registered",
        "Login created",
    ]
    first = re.search(r'<span class="meta">(.*?)</span>\s*</div>', audit, re.S)
    assert first is not None
    assert first.group(1).startswith(f"{analyst_login} (risk analyst) · <time")
    assert first.group(1).endswith("· IP 203.0.113.42 · Reason: card stolen")
    assert "the customer ·" in audit  # registration and KYC submission were theirs
    assert "Older events" not in audit

    # More than a page: the newest 20, then the rest.
    me = Principal(analyst_id, PrincipalKind.STAFF, frozenset({StaffRole.RISK_ANALYST}))
    for n in range(staff_pages.AUDIT_PAGE + 3 - len(sentences)):
        bank.run(lambda n=n: bank.runtime.banking.set_frozen(me, customer.account_id, n % 2 == 1, f"check {n}"))
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    audit = page[page.index('id="audit-h"') :]
    assert audit.count('<li class="entry audit-event">') == staff_pages.AUDIT_PAGE
    older = re.search(r'<a href="(/staff/customers/[^"]+audit_before=\d+)#audit">Older events</a>', audit)
    assert older is not None
    rest = bank.client.get(older.group(1).replace("&amp;", "&")).text
    rest = rest[rest.index('id="audit-h"') :]
    assert re.findall(r'<span class="name">([^<]+)</span>', rest) == sentences[-3:]
    assert "Newest events" in rest and "Older events" not in rest


def test_the_kyc_queue_lists_the_longest_waiting_first_and_pages(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    first = pending_customer(bank, "杨过")
    bank.clock.advance(timedelta(seconds=1))
    second = pending_customer(bank, "小龙女")
    staff_sign_in(bank, new_staff(bank, StaffRole.CRM_AGENT))
    home = bank.client.get("/staff/").text
    assert '<a href="/staff/kyc">Identity checks</a>' in home
    queue = bank.client.get("/staff/kyc")
    assert queue.status_code == 200
    listed = re.findall(r'href="/staff/customers/([0-9a-f-]+)"', queue.text)
    assert listed.index(str(first.id)) < listed.index(str(second.id))
    monkeypatch.setattr(staff_pages, "KYC_PAGE", 1)
    page = bank.client.get("/staff/kyc").text
    seen = re.findall(r'href="/staff/customers/([0-9a-f-]+)"', page)
    while (more := re.search(r'<a href="(\?cursor=[^"]+)">More customers</a>', page)) is not None:
        page = bank.client.get("/staff/kyc" + more.group(1).replace("&amp;", "&")).text
        seen += re.findall(r'href="/staff/customers/([0-9a-f-]+)"', page)
    assert seen == listed


def test_a_tier_change_needs_a_reason_and_a_known_tier(bank: Bank) -> None:
    customer = onboard(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.CRM_AGENT))
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    assert '<option value="basic" selected>Basic · CN¥5,000.00 a payment, CN¥20,000.00 a day</option>' in page
    assert '<dd class="tier">Basic</dd>' in page
    fields = form_of(page, f"/staff/customers/{customer.id}/tier")
    tier = "SELECT tier FROM customers.customers WHERE id = %s"
    no_reason = bank.client.post(f"/staff/customers/{customer.id}/tier", data={**fields, "tier": "premium"})
    assert no_reason.status_code == 422
    assert alert_of(no_reason.text) == "Give a reason."
    unknown = bank.client.post(f"/staff/customers/{customer.id}/tier", data={**fields, "tier": "gold", "reason": "x"})
    assert unknown.status_code == 422
    assert alert_of(unknown.text) == "Choose one of the tiers."
    assert all_rows(bank.url, tier, customer.id) == [("basic",)]
    done = bank.client.post(
        f"/staff/customers/{customer.id}/tier",
        data={**fields, "tier": "premium", "reason": "private banking client"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert all_rows(bank.url, tier, customer.id) == [("premium",)]
    assert all_rows(
        bank.url,
        "SELECT details->>'to', details->>'reason', host(ip) FROM platform.audit_log"
        " WHERE action = 'customers.tier_changed' AND subject_id = %s",
        str(customer.id),
    ) == [("premium", "private banking client", "203.0.113.42")]
    assert '<dd class="tier">Premium</dd>' in bank.client.get(f"/staff/customers/{customer.id}").text


def test_the_full_id_number_is_shown_once_with_a_reason_and_audited(bank: Bank) -> None:
    customer = onboard(bank)
    staff_sign_in(bank, new_staff(bank, StaffRole.CRM_AGENT))
    full = scalar(bank.url, "SELECT id_number FROM customers.customers WHERE id = %s", customer.id)
    page = bank.client.get(f"/staff/customers/{customer.id}").text
    assert full not in page
    fields = form_of(page, f"/staff/customers/{customer.id}/reveal")
    refused = bank.client.post(f"/staff/customers/{customer.id}/reveal", data={**fields, "reason": " "})
    assert refused.status_code == 422
    assert alert_of(refused.text) == "Give a reason."
    assert full not in refused.text
    shown = bank.client.post(f"/staff/customers/{customer.id}/reveal", data={**fields, "reason": "document check"})
    assert shown.status_code == 200
    assert f'<strong class="revealed">{full}</strong>' in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert full not in bank.client.get(f"/staff/customers/{customer.id}").text
    assert all_rows(
        bank.url,
        "SELECT details FROM platform.audit_log WHERE action = 'customers.id_number_revealed' AND subject_id = %s",
        str(customer.id),
    ) == [({"reason": "document check"},)]


def test_staff_without_mfa_set_it_up_in_the_console_when_the_bank_requires_it(bank: Bank) -> None:
    staff_id = new_id()
    login_name = new_staff(bank, StaffRole.TELLER, staff_id=staff_id)
    pending = pending_customer(bank)
    identity = bank.runtime.identity
    identity.staff_mfa_required = True
    try:
        bank.client.cookies.clear()
        token = csrf_of(bank.client.get("/staff/login").text)
        response = bank.client.post(
            "/staff/login",
            data={"csrf_token": token, "login": login_name, "password": PASSWORD},
            follow_redirects=False,
        )
        assert response.status_code == 303
        # Before anything else, the set-up: pages and actions alike.
        for path in ("/staff/", f"/staff/customers/{pending.id}", "/staff/kyc"):
            assert bank.client.get(path, follow_redirects=False).headers["location"] == "/staff/mfa/setup"
        start = bank.client.get("/staff/mfa/setup")
        assert start.status_code == 200
        csrf = form_of(start.text, "/staff/mfa/setup")["csrf_token"]
        cash = bank.client.post(
            f"/staff/customers/{pending.id}/cash", data={"csrf_token": csrf, "kind": "deposit"}, follow_redirects=False
        )
        assert cash.headers["location"] == "/staff/mfa/setup"
        forged = bank.client.post("/staff/mfa/setup", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert scalar(bank.url, "SELECT count(*) FROM identity.totp WHERE principal_id = %s", staff_id) == 0

        scan = bank.client.post("/staff/mfa/setup", data={"csrf_token": csrf})
        assert scan.status_code == 200
        assert re.search(r'<div class="qr" role="img" aria-label="[^"]+"><svg [^>]*>', scan.text)
        match = re.search(r'<code class="secret">([A-Z2-7]+)</code>', scan.text)
        assert match is not None
        secret = match.group(1)
        right = code_now(secret, bank.clock)
        wrong = bank.client.post(
            "/staff/mfa/confirm", data={"csrf_token": csrf, "code": "000000" if right != "000000" else "111111"}
        )
        assert wrong.status_code == 401
        assert alert_of(wrong.text) == "That code is wrong, already used or expired. Try the next code."
        assert bank.client.get("/staff/", follow_redirects=False).status_code == 303
        done = bank.client.post("/staff/mfa/confirm", data={"csrf_token": csrf, "code": right})
        assert done.status_code == 200
        codes = re.findall(r"<li><code>([^<]+)</code></li>", done.text)
        assert len(codes) == scalar(
            bank.url, "SELECT count(*) FROM identity.recovery_codes WHERE principal_id = %s", staff_id
        )
        assert len(codes) >= 8
        assert all_rows(
            bank.url, "SELECT confirmed_at IS NOT NULL FROM identity.totp WHERE principal_id = %s", staff_id
        ) == [(True,)]
        # This session passed MFA by confirming: the console opens; the set-up is over.
        assert bank.client.get("/staff/").status_code == 200
        assert bank.client.get("/staff/mfa/setup", follow_redirects=False).headers["location"] == "/staff/"
        # The next login asks for the code.
        bank.client.cookies.clear()
        token = csrf_of(bank.client.get("/staff/login").text)
        challenge = bank.client.post(
            "/staff/login", data={"csrf_token": token, "login": login_name, "password": PASSWORD}
        )
        assert challenge.status_code == 200
        assert 'action="/staff/login/mfa"' in challenge.text
    finally:
        identity.staff_mfa_required = False


# -- what each role sees and may do ----------------------------------------------------------------

SECTIONS = ("kyc_queue", "cash", "freeze", "tier", "reveal", "kyc", "payments", "audit")
SEES = {
    StaffRole.TELLER: {"cash", "payments"},
    StaffRole.RISK_ANALYST: {"freeze", "payments", "audit"},
    StaffRole.CRM_AGENT: {"kyc_queue", "tier", "reveal", "kyc"},
    StaffRole.ADMIN: set(SECTIONS),
}


@pytest.mark.parametrize("role", list(SEES), ids=lambda r: r.value)
def test_each_role_sees_its_own_actions_and_a_forged_post_writes_nothing(bank: Bank, role: StaffRole) -> None:
    customer = onboard(bank)
    pending = pending_customer(bank)
    csrf = staff_sign_in(bank, new_staff(bank, role))
    view = bank.client.get(f"/staff/customers/{customer.id}").text
    pending_view = bank.client.get(f"/staff/customers/{pending.id}").text
    base = f"/staff/customers/{customer.id}"
    markers = {
        "kyc_queue": (view, '<a href="/staff/kyc">'),
        "cash": (view, f'action="{base}/cash"'),
        "freeze": (view, f'action="{base}/freeze"'),
        "tier": (view, f'action="{base}/tier"'),
        "reveal": (view, f'action="{base}/reveal"'),
        "kyc": (pending_view, f'action="/staff/customers/{pending.id}/kyc"'),
        "payments": (view, 'id="payments-h"'),
        "audit": (view, 'id="audit-h"'),
    }
    assert set(markers) == set(SECTIONS)
    shown = {name for name, (html, marker) in markers.items() if marker in html}
    assert shown == SEES[role]
    assert bank.client.get("/staff/kyc").status_code == (200 if "kyc_queue" in SEES[role] else 403)

    forged = {
        "cash": {"account": str(customer.account_id), "key": str(uuid.uuid4()), "kind": "deposit", "amount": "10"},
        "freeze": {"account": str(customer.account_id), "frozen": "1", "reason": "forged"},
        "tier": {"tier": "premium", "reason": "forged"},
        "reveal": {"reason": "forged"},
    }
    for action, data in forged.items():
        if action in SEES[role]:
            continue
        response = bank.client.post(f"{base}/{action}", data={"csrf_token": csrf, **data})
        assert response.status_code == 403, action
        assert alert_of(response.text) == "Your role does not allow this."
    if "kyc" not in SEES[role]:
        response = bank.client.post(
            f"/staff/customers/{pending.id}/kyc", data={"csrf_token": csrf, "decision": "verify", "reason": "forged"}
        )
        assert response.status_code == 403
    if role is not StaffRole.ADMIN:
        assert all_rows(
            bank.url,
            "SELECT a.status, c.tier, c.kyc_status, (SELECT count(*) FROM banking.payments p WHERE p.account_id = a.id)"
            " FROM banking.accounts a JOIN customers.customers c ON c.id = a.customer_id WHERE a.id = %s",
            customer.account_id,
        ) == [("open", "basic", "verified", 0)]
        assert all_rows(bank.url, "SELECT kyc_status FROM customers.customers WHERE id = %s", pending.id) == [
            ("pending",)
        ]
        assert (
            scalar(
                bank.url,
                "SELECT count(*) FROM platform.audit_log WHERE action = 'customers.id_number_revealed'"
                " AND subject_id = %s",
                str(customer.id),
            )
            == 0
        )
