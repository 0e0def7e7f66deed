"""The staff console in headless Chromium (JavaScript off): a teller with MFA finds a customer by
account number and pays cash in; an administrator approves an identity check from the queue."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from tests.banking.http_helpers import PASSWORD, all_rows, code_now, onboard
from tests.webapp.test_staff_pages import new_staff, pending_customer

from .conftest import LiveBank, shoot
from .test_browser import enter_mfa_code, new_page

pytestmark = pytest.mark.timeout(120)


def staff_log_in(page: Page, login_name: str) -> None:
    page.goto("/staff/login")
    page.get_by_label("Staff login").fill(login_name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_teller_with_mfa_finds_a_customer_by_account_number_and_pays_cash_in(
    live_bank: LiveBank, browser: Any
) -> None:
    customer = onboard(live_bank, fund_minor=5_000, name="令狐冲")  # type: ignore[arg-type]
    teller_id = new_id()
    login_name = new_staff(live_bank, StaffRole.TELLER, staff_id=teller_id)  # type: ignore[arg-type]
    me = Principal(teller_id, PrincipalKind.STAFF, frozenset({StaffRole.TELLER}))
    client = ClientInfo(ip="127.0.0.1", device="test", request_id=None)
    rt = live_bank.runtime
    enrolment = live_bank.run(lambda: rt.identity.start_mfa_enrolment(me, client))
    live_bank.run(lambda: rt.identity.confirm_mfa_enrolment(me, code_now(enrolment.secret, live_bank.clock), client))
    live_bank.clock.advance(timedelta(seconds=30))  # the enrolment's code is spent

    page = new_page(browser, live_bank)
    page.goto("/staff/login")
    expect(page.get_by_role("heading", name="Staff log in")).to_be_visible()
    shoot(page, "staff-login")
    staff_log_in(page, login_name)
    enter_mfa_code(page, code_now(enrolment.secret, live_bank.clock))

    expect(page).to_have_url(re.compile(r"/staff/$"))
    expect(page.get_by_role("link", name="Identity checks")).to_have_count(0)  # not a teller's work
    page.get_by_label("Account number or IBAN").check()
    page.get_by_label("Search for").fill(" ".join(re.findall("....", customer.account_number)))
    page.get_by_role("button", name="Search").click()
    results = page.locator(".entries .customer a")
    expect(results).to_have_count(1)
    expect(results).to_have_text("令狐冲")
    shoot(page, "staff-search")
    results.click()

    expect(page.get_by_role("heading", name="令狐冲", level=1)).to_be_visible()
    card = page.locator(f"[data-account='{customer.account_number}']")
    expect(card.locator(".posted")).to_have_text("CN¥50.00")
    expect(page.get_by_role("heading", name="Audit events")).to_have_count(0)  # tellers read no audit log
    card.get_by_label("Deposit").check()
    card.get_by_label("Amount").fill("120.50")
    card.get_by_role("button", name="Record cash").click()

    expect(page.get_by_role("status")).to_have_text("Done.")
    expect(card.locator(".posted")).to_have_text("CN¥170.50")
    payments = page.locator(".payments .payment")
    expect(payments.first.locator(".amount")).to_have_text("+CN¥120.50")
    expect(payments.first.locator(".status")).to_have_text("Completed")
    shoot(page, "staff-customer")
    assert all_rows(
        live_bank.url,
        "SELECT amount_minor, status FROM banking.payments WHERE account_id = %s AND initiated_by = %s",
        customer.account_id,
        teller_id,
    ) == [(12_050, "completed")]


def test_an_administrator_approves_an_identity_check_from_the_queue(live_bank: LiveBank, browser: Any) -> None:
    pending = pending_customer(live_bank, "任盈盈")  # type: ignore[arg-type]
    login_name = new_staff(live_bank, StaffRole.ADMIN)  # type: ignore[arg-type]
    page = new_page(browser, live_bank)
    staff_log_in(page, login_name)
    expect(page).to_have_url(re.compile(r"/staff/$"))
    page.get_by_role("link", name="Identity checks").click()

    expect(page.get_by_role("heading", name="Identity checks")).to_be_visible()
    entry = page.locator(".kyc-queue a", has_text="任盈盈")
    expect(entry).to_have_count(1)
    shoot(page, "staff-kyc-queue")
    entry.click()

    expect(page.get_by_role("heading", name="任盈盈", level=1)).to_be_visible()
    expect(page.locator("dd.kyc")).to_have_text("Waiting for a decision")
    page.get_by_label("Reason", exact=True).fill("passport matches the selfie")
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("status")).to_have_text("Done.")
    expect(page.locator("dd.kyc")).to_have_text("Verified")
    assert all_rows(
        live_bank.url, "SELECT kyc_status, kyc_reason FROM customers.customers WHERE id = %s", pending.id
    ) == [("verified", "passport matches the selfie")]
    page.get_by_role("link", name="Identity checks").click()
    expect(page.locator(".kyc-queue a", has_text="任盈盈")).to_have_count(0)
