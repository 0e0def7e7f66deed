"""The whole customer journey in headless Chromium (JavaScript off), through the pages alone.

A new customer signs up with the code sent to their phone, turns on two-step verification and gives
their ID details; a member of staff (logging in with a code) approves the identity check from the
queue, waits for the account that opens on it, finds the customer by name and pays cash in; the
customer sees the money, adds an existing customer as a payee, pays them with a step-up code, and both
see the payment in their history and their notifications. The database then shows that the money moved
exactly once and the ledger's invariants hold. Only the staff member and the payee are set up through
the services.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from tests.banking.http_helpers import _submission, all_rows, code_now, ledger_posted, onboard, scalar
from tests.webapp.test_staff_pages import new_staff

from .conftest import LiveBank, reload_until_visible, shoot
from .test_browser import enter_mfa_code, log_in, new_page
from .test_browser_onboarding import sign_up
from .test_browser_staff import staff_log_in

pytestmark = pytest.mark.timeout(180)

NAME = "东方明月"
PAYEE_NAME = "岳灵珊"


def test_a_new_customer_is_verified_funded_by_a_teller_and_pays_another_customer(
    live_bank: LiveBank, browser: Any
) -> None:
    rt = live_bank.runtime
    client = ClientInfo(ip="127.0.0.1", device="test", request_id=None)
    payee = onboard(live_bank, fund_minor=10_000, name=PAYEE_NAME)  # type: ignore[arg-type]
    staff_id = new_id()
    staff_login = new_staff(live_bank, StaffRole.ADMIN, staff_id=staff_id)  # type: ignore[arg-type]
    officer = Principal(staff_id, PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    staff_enrolment = live_bank.run(lambda: rt.identity.start_mfa_enrolment(officer, client))
    live_bank.run(
        lambda: rt.identity.confirm_mfa_enrolment(officer, code_now(staff_enrolment.secret, live_bank.clock), client)
    )

    # -- the new customer: sign up, two-step verification, ID details -------------------------
    national = "139" + f"{secrets.randbelow(10**8):08d}"
    customer = new_page(browser, live_bank)
    sign_up(customer, live_bank, national)
    expect(customer.get_by_role("heading", name="Welcome to smartbank")).to_be_visible()
    shoot(customer, "journey-welcome")
    customer_id = scalar(live_bank.url, "SELECT id FROM customers.customers WHERE phone = %s", "+86" + national)

    customer.get_by_role("link", name="Set up two-step verification").click()
    customer.get_by_role("button", name="Turn on two-step verification").click()
    expect(customer.locator(".qr svg")).to_be_visible()
    totp = pyotp.TOTP(customer.locator("#secret").inner_text().replace(" ", ""))
    customer.get_by_label("Code", exact=True).fill(totp.at(live_bank.clock.now()))
    customer.get_by_role("button", name="Turn on", exact=True).click()
    expect(customer.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(customer.get_by_role("status")).to_have_text("Two-step verification is on.")
    expect(customer.get_by_role("status")).to_have_class("notice-ok")
    customer.get_by_role("link", name="I have kept them").click()
    expect(customer.locator(".mfa-state").first).to_have_text("On. Recovery codes left: 10.")
    customer.get_by_role("link", name="See connected apps").click()
    expect(customer.get_by_role("heading", name="Apps you share with")).to_be_visible()
    expect(customer.get_by_text("You have not allowed any app to see your information.")).to_be_visible()

    identity = _submission(NAME)
    customer.goto("/app/profile/kyc")
    customer.get_by_label("Full legal name (as on your ID)").fill(identity.legal_name)
    customer.get_by_label("Date of birth").fill(identity.date_of_birth.isoformat())
    customer.get_by_label("Type of ID").select_option("prc_resident_id")
    customer.get_by_label("ID number").fill(identity.id_number)
    customer.get_by_label("Country or region code (2 letters)").fill("CN")
    customer.get_by_label("Province or municipality").fill("上海市")
    customer.get_by_label("City").fill("上海市")
    customer.get_by_label("Street and number").fill("浦东新区 世纪大道 100 号")
    shoot(customer, "journey-kyc")
    customer.get_by_role("button", name="Send for checking").click()
    expect(customer).to_have_url(re.compile(r"/app/$"))
    expect(customer.locator(".kyc-status")).to_have_text("Being checked")
    expect(customer.get_by_role("heading", name="Identity check pending")).to_be_visible()
    shoot(customer, "journey-pending")

    # The check takes a while: the enrolment's code is spent and its MFA no longer fresh enough to pay.
    live_bank.clock.advance(timedelta(minutes=6))

    # -- staff: log in with a code, approve from the queue, find the customer, pay cash in ---------
    staff = new_page(browser, live_bank)
    staff_log_in(staff, staff_login)
    enter_mfa_code(staff, code_now(staff_enrolment.secret, live_bank.clock))
    expect(staff).to_have_url(re.compile(r"/staff/$"))
    staff.get_by_role("link", name="Identity checks").click()
    entry = staff.locator(".kyc-queue a", has_text=NAME)
    expect(entry).to_have_count(1)
    entry.click()
    expect(staff.get_by_role("heading", name=NAME, level=1)).to_be_visible()
    expect(staff.locator("dd.kyc")).to_have_text("Waiting for a decision")
    staff.get_by_label("Reason", exact=True).fill("resident ID checked at the branch")
    staff.get_by_role("button", name="Approve").click()
    expect(staff.get_by_role("status")).to_have_text("Done.")
    expect(staff.get_by_role("status")).to_have_class("notice-ok")
    expect(staff.locator("dd.kyc")).to_have_text("Verified")

    # The account opens when banking consumes customers.kyc_verified from the outbox.
    card = staff.locator(".card.account")
    reload_until_visible(staff, card)
    expect(card).to_have_count(1)
    account_number = card.get_attribute("data-account")
    assert account_number is not None and re.fullmatch(r"\d{16}", account_number)
    account_id = scalar(live_bank.url, "SELECT id FROM banking.accounts WHERE number = %s", account_number)
    assert scalar(live_bank.url, "SELECT customer_id FROM banking.accounts WHERE id = %s", account_id) == customer_id

    staff.get_by_role("link", name="Find a customer").click()
    staff.get_by_label("Name (Chinese or pinyin)").check()
    staff.get_by_label("Search for").fill(NAME)
    staff.get_by_role("button", name="Search").click()
    results = staff.locator(".entries .customer a")
    expect(results).to_have_count(1)
    expect(results).to_have_text(NAME)
    results.click()
    card = staff.locator(f"[data-account='{account_number}']")
    expect(card.locator(".posted")).to_have_text("CN¥0.00")
    card.get_by_label("Deposit").check()
    card.get_by_label("Amount").fill("1500")
    card.get_by_role("button", name="Record cash").click()
    expect(staff.get_by_role("status")).to_have_text("Done.")
    expect(card.locator(".posted")).to_have_text("CN¥1,500.00")
    expect(staff.locator(".payments .payment").first.locator(".amount")).to_have_text("+CN¥1,500.00")
    shoot(staff, "journey-staff-deposit")

    # -- the customer sees the money ----------------------------------------------------------
    customer.goto("/app/")
    mine = customer.locator(f"[data-account='{account_number}']")
    expect(mine.locator(".available")).to_have_text("CN¥1,500.00")
    expect(customer.locator(".kyc-status")).to_have_text("Verified")
    deposit = customer.locator(".entries .entry", has_text="+CN¥1,500.00")
    reload_until_visible(customer, deposit)  # the history is projected from the ledger's events
    shoot(customer, "journey-home-funded")
    mine.get_by_role("link", name="History").click()
    expect(customer.locator(".entry")).to_have_count(1)
    expect(customer.locator(".entry .amount")).to_have_text("+CN¥1,500.00")
    customer.get_by_role("link", name=re.compile("^Notifications")).first.click()
    deposited = customer.locator(".notice", has_text="You received a cash deposit of CN¥1,500.00")
    reload_until_visible(customer, deposited)
    expect(deposited).to_have_count(1)
    shoot(customer, "journey-notifications")

    # -- adds the other customer as a payee and pays them (a new payee: a step-up code) --------
    customer.goto("/app/")
    customer.get_by_role("link", name="Add a payee").click()
    customer.get_by_label("Name").fill(PAYEE_NAME)
    customer.get_by_label("Account number").fill(payee.account_number)
    customer.get_by_role("button", name="Add payee").click()
    expect(customer.get_by_role("heading", name="Pay")).to_be_visible()
    expect(customer.get_by_label(re.compile(PAYEE_NAME))).to_be_checked()
    customer.get_by_label("Amount (CNY)").fill("320.75")
    customer.get_by_label("Reference (optional)").fill("concert tickets")
    customer.get_by_role("button", name="Review payment").click()
    expect(customer.get_by_role("heading", name="Check your payment")).to_be_visible()
    expect(customer.locator(".summary .amount")).to_have_text("CN¥320.75")
    customer.get_by_role("button", name="Confirm and pay").click()

    expect(customer.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(customer.get_by_text("This payee is new")).to_be_visible()
    assert (
        all_rows(
            live_bank.url, "SELECT 1 FROM banking.payments WHERE kind = 'transfer' AND customer_id = %s", customer_id
        )
        == []
    )
    shoot(customer, "journey-step-up")
    customer.get_by_label("Code").fill(totp.at(live_bank.clock.now()))
    customer.get_by_role("button", name="Confirm and pay").click()
    expect(customer.get_by_role("heading", name="Payment sent")).to_be_visible()
    expect(customer.locator(".summary .amount")).to_have_text("CN¥320.75")
    shoot(customer, "journey-payment-sent")

    customer.get_by_role("link", name="See account history").click()
    sent = customer.locator(".entry", has_text="concert tickets")
    reload_until_visible(customer, sent)
    expect(sent.locator(".amount")).to_have_text("-CN¥320.75")
    expect(sent).to_contain_text(PAYEE_NAME)
    expect(customer.locator(".available")).to_have_text("CN¥1,179.25")
    shoot(customer, "journey-history")

    # -- the payee logs in and sees the money arrive -------------------------------------------
    other = new_page(browser, live_bank, width=360)
    log_in(other, payee)
    expect(other).to_have_url(re.compile(r"/app/$"))
    expect(other.locator(f"[data-account='{payee.account_number}'] .available")).to_have_text("CN¥420.75")
    other.locator(f"[data-account='{payee.account_number}']").get_by_role("link", name="History").click()
    received = other.locator(".entry", has_text="+CN¥320.75")
    reload_until_visible(other, received)
    expect(received).to_have_count(1)
    shoot(other, "journey-payee-history")
    other.goto("/app/notifications")
    notice = other.locator(".notice", has_text=f"You received CN¥320.75 from account {account_number}.")
    reload_until_visible(other, notice)
    expect(notice).to_have_count(1)

    # -- the money moved exactly once --------------------------------------------------------
    assert all_rows(
        live_bank.url,
        "SELECT kind, amount_minor, status, step_up FROM banking.payments WHERE customer_id = %s ORDER BY kind",
        customer_id,
    ) == [("cash_deposit", 150_000, "completed", False), ("transfer", 32_075, "completed", True)]
    assert all_rows(
        live_bank.url,
        "SELECT customer_id, amount_minor FROM banking.payments WHERE counterparty_account_id = %s",
        payee.account_id,
    ) == [(customer_id, 32_075)]
    transfers = dict(
        all_rows(live_bank.url, "SELECT kind, transfer_id FROM banking.payments WHERE customer_id = %s", customer_id)
    )
    branch_cash = scalar(
        live_bank.url,
        "SELECT b.cash_account_id FROM banking.branches b JOIN banking.accounts a ON a.branch_code = b.code"
        " WHERE a.id = %s",
        account_id,
    )
    # Every ledger transfer that touches the new account: the cash in and the payment, once each.
    assert all_rows(
        live_bank.url,
        "SELECT id, type, debit_account_id, credit_account_id, amount_minor FROM ledger.transfers"
        " WHERE %s IN (debit_account_id, credit_account_id) ORDER BY seq",
        account_id,
    ) == [
        (transfers["cash_deposit"], "posted", branch_cash, account_id, 150_000),
        (transfers["transfer"], "posted", account_id, payee.account_id, 32_075),
    ]
    assert all_rows(
        live_bank.url,
        "SELECT account_id, amount_minor FROM banking.entries WHERE transfer_id = %s ORDER BY amount_minor",
        transfers["transfer"],
    ) == [(account_id, -32_075), (payee.account_id, 32_075)]
    assert ledger_posted(live_bank.url, account_id) == 117_925
    assert ledger_posted(live_bank.url, payee.account_id) == 42_075
    assert live_bank.run(rt.ledger.verify) == []
