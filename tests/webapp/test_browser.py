"""The customer web app in headless Chromium: log in, home balances, pay, history; Chinese; step-up."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from smartbank.identity.model import ClientInfo
from tests.banking.http_helpers import PASSWORD, Customer, add_payee, all_rows, code_now, onboard

from .conftest import LiveBank, shoot

pytestmark = pytest.mark.timeout(120)


def new_page(browser: Any, bank: LiveBank, locale: str = "en-GB", width: int = 1280) -> Page:
    context = browser.new_context(
        base_url=bank.base_url, locale=locale, viewport={"width": width, "height": 900}, java_script_enabled=False
    )
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def log_in(page: Page, customer: Customer) -> None:
    page.goto("/app/login")
    page.get_by_label(re.compile("Phone number or e-mail|手机号或电子邮箱")).fill(customer.login)
    page.get_by_label(re.compile("^(Password|密码)$")).fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()


def enter_mfa_code(page: Page, code: str) -> None:
    """Answer the login's "Enter your code" page (customer app or staff console)."""
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Continue").click()


def payee_aged(bank: LiveBank, payer: Customer, payee: Customer, name: str) -> None:
    add_payee(bank, payer, payee, name)  # type: ignore[arg-type]
    bank.clock.advance(timedelta(hours=25))  # past the new-payee step-up period


def payments_of(bank: LiveBank, customer: Customer) -> list[tuple[Any, ...]]:
    return all_rows(
        bank.url,
        "SELECT amount_minor, status FROM banking.payments WHERE customer_id = %s AND kind = 'transfer'",
        customer.id,
    )


def test_a_customer_logs_in_sees_the_balance_pays_and_finds_the_payment_in_the_history(
    live_bank: LiveBank, browser: Any
) -> None:
    payer = onboard(live_bank, fund_minor=123_456, name="李雷")  # type: ignore[arg-type]
    payee = onboard(live_bank, name="韩梅梅")  # type: ignore[arg-type]
    payee_aged(live_bank, payer, payee, "韩梅梅")
    page = new_page(browser, live_bank)
    page.goto("/app/login")
    shoot(page, "login")
    log_in(page, payer)

    expect(page).to_have_url(re.compile(r"/app/$"))
    card = page.locator(f"[data-account='{payer.account_number}']")
    expect(card.locator(".available")).to_have_text("CN¥1,234.56")
    expect(card.locator(".posted")).to_have_text("CN¥1,234.56")
    expect(page.locator(".entries")).to_contain_text("opening deposit")
    shoot(page, "home")

    page.get_by_role("link", name="Pay someone").click()
    expect(page.get_by_role("heading", name="Pay")).to_be_visible()
    expect(page.get_by_label(re.compile("韩梅梅"))).to_be_checked()  # the only payee is chosen
    page.get_by_label("Amount (CNY)").fill("200.50")
    page.get_by_label("Reference (optional)").fill("dinner at the noodle bar")
    shoot(page, "pay")
    page.get_by_role("button", name="Review payment").click()

    expect(page.get_by_role("heading", name="Check your payment")).to_be_visible()
    expect(page.locator(".summary .amount")).to_have_text("CN¥200.50")
    assert payments_of(live_bank, payer) == []  # reviewing writes nothing
    shoot(page, "review")
    page.get_by_role("button", name="Confirm and pay").click()

    expect(page.get_by_role("heading", name="Payment sent")).to_be_visible()
    assert payments_of(live_bank, payer) == [(20_050, "completed")]
    shoot(page, "result")

    page.get_by_role("link", name="See account history").click()
    entry = page.locator(".entry", has_text="dinner at the noodle bar")
    deadline = time.monotonic() + 10
    while entry.count() == 0:  # the history follows the ledger by one relay pass
        assert time.monotonic() < deadline, "the payment never reached the history"
        time.sleep(0.1)
        page.reload()
    expect(entry.locator(".amount")).to_have_text("-CN¥200.50")
    expect(entry).to_contain_text("韩梅梅")
    expect(page.locator(".available")).to_have_text("CN¥1,034.06")
    shoot(page, "account")

    page.get_by_label("Reference").fill("opening")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".entry")).to_have_count(1)
    expect(page.locator(".entry .amount")).to_have_text("+CN¥1,234.56")


def test_the_chinese_locale_renders_the_home_page_with_localised_amounts(live_bank: LiveBank, browser: Any) -> None:
    customer = onboard(live_bank, fund_minor=1_234_567, name="王芳")  # type: ignore[arg-type]
    page = new_page(browser, live_bank, locale="zh-CN", width=360)
    log_in(page, customer)

    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(page.get_by_role("heading", name="您的账户")).to_be_visible()
    card = page.locator(f"[data-account='{customer.account_number}']")
    expect(card.locator(".available")).to_have_text("¥12,345.67")
    expect(card).to_contain_text("可用余额")
    shoot(page, "home-zh")

    # The language chosen on the page wins over the browser's and is kept in a cookie.
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Your accounts")).to_be_visible()
    expect(card.locator(".available")).to_have_text("CN¥12,345.67")


def test_a_payment_over_the_step_up_threshold_asks_for_the_totp_code(live_bank: LiveBank, browser: Any) -> None:
    payer = onboard(live_bank, fund_minor=1_000_000, name="张伟")  # type: ignore[arg-type]
    payee = onboard(live_bank, name="刘洋")  # type: ignore[arg-type]
    rt = live_bank.runtime
    client = ClientInfo(ip="127.0.0.1", device="test", request_id=None)
    enrolment = live_bank.run(lambda: rt.identity.start_mfa_enrolment(payer.principal, client))
    live_bank.run(
        lambda: rt.identity.confirm_mfa_enrolment(payer.principal, code_now(enrolment.secret, live_bank.clock), client)
    )
    payee_aged(live_bank, payer, payee, "刘洋")

    page = new_page(browser, live_bank)
    log_in(page, payer)
    enter_mfa_code(page, code_now(enrolment.secret, live_bank.clock))
    expect(page).to_have_url(re.compile(r"/app/$"))
    expect(page.locator(".available")).to_have_text("CN¥10,000.00")

    live_bank.clock.advance(timedelta(minutes=6))  # the login's MFA is no longer fresh enough to pay with
    page.goto("/app/pay")
    page.get_by_label("Amount (CNY)").fill("6000")  # above the basic tier's 5,000 a payment
    page.get_by_role("button", name="Review payment").click()
    page.get_by_role("button", name="Confirm and pay").click()
    expect(page.get_by_role("alert")).to_have_text("This amount is above your limit for one payment.")
    expect(page.get_by_label("Amount (CNY)")).to_have_value("6000")
    assert payments_of(live_bank, payer) == []

    page.get_by_label("Amount (CNY)").fill("2000")  # above the step-up threshold of 1,000
    page.get_by_role("button", name="Review payment").click()
    page.get_by_role("button", name="Confirm and pay").click()

    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(page.get_by_text("This is a large payment")).to_be_visible()
    expect(page.locator(".summary .amount")).to_have_text("CN¥2,000.00")
    expect(page.locator(".summary")).to_contain_text("刘洋")
    assert payments_of(live_bank, payer) == []
    shoot(page, "step-up")

    page.get_by_label("Code").fill("000000" if code_now(enrolment.secret, live_bank.clock) != "000000" else "111111")
    page.get_by_role("button", name="Confirm and pay").click()
    expect(page.get_by_role("alert")).to_have_text("That code is wrong, already used or expired. Try the next code.")
    assert payments_of(live_bank, payer) == []

    live_bank.clock.advance(timedelta(seconds=30))  # the next TOTP step (a code is accepted once)
    page.get_by_label("Code").fill(code_now(enrolment.secret, live_bank.clock))
    page.get_by_role("button", name="Confirm and pay").click()
    expect(page.get_by_role("heading", name="Payment sent")).to_be_visible()
    expect(page.locator(".summary .amount")).to_have_text("CN¥2,000.00")
    assert payments_of(live_bank, payer) == [(200_000, "completed")]
