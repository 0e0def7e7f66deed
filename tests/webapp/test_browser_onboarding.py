"""A new customer in headless Chromium (JavaScript off): signs up with the code sent to their phone,
turns on two-step verification with the key shown on the page, logs out and logs in again with it."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.banking.http_helpers import PASSWORD, scalar

from .conftest import LiveBank, shoot
from .test_browser import new_page

pytestmark = pytest.mark.timeout(120)


def sent_code(bank: LiveBank, recipient: str) -> str:
    """The newest code the notifier queued for ``recipient`` (the outbox is the SMS gateway's inbox)."""
    return str(
        scalar(
            bank.url,
            "SELECT payload->'params'->>'code' FROM platform.outbox WHERE topic = 'notifications.requested'"
            " AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
            recipient,
        )
    )


def sign_up(page: Page, bank: LiveBank, national: str, *, screenshots: bool = False) -> None:
    """Through the sign-up form and the code page, to the welcome page."""
    page.goto("/app/login")
    page.get_by_role("link", name=re.compile("Open an account|开户")).click()
    page.locator("#kind-phone").check()
    page.locator("#contact").fill(national)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password_again").fill(PASSWORD)
    page.locator("#accepted_terms").check()
    if screenshots:
        shoot(page, "signup")
    page.locator("form.stack button.primary").click()
    expect(page.locator("#code")).to_be_visible()
    if screenshots:
        shoot(page, "signup-code")
    page.locator("#code").fill(sent_code(bank, "+86" + national))
    page.locator("form.stack button.primary").click()
    expect(page).to_have_url(re.compile(r"/app/welcome$"))


def test_a_new_customer_signs_up_enrols_mfa_and_logs_in_again_with_it(live_bank: LiveBank, browser: Any) -> None:
    national = "139" + f"{secrets.randbelow(10**8):08d}"
    page = new_page(browser, live_bank)
    sign_up(page, live_bank, national, screenshots=True)
    expect(page.get_by_role("heading", name="Welcome to smartbank")).to_be_visible()
    expect(page.locator(".kyc-status")).to_have_text("Not submitted yet")
    shoot(page, "welcome")
    customer_id = scalar(live_bank.url, "SELECT id FROM customers.customers WHERE phone = %s", "+86" + national)

    page.get_by_role("link", name="Set up two-step verification").click()
    page.get_by_role("button", name="Turn on two-step verification").click()
    expect(page.locator(".qr svg")).to_be_visible()
    shoot(page, "mfa-enrol")
    secret = page.locator("#secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code", exact=True).fill(totp.at(live_bank.clock.now()))
    page.get_by_role("button", name="Turn on", exact=True).click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.locator(".codes li")).to_have_count(10)
    shoot(page, "mfa-codes")
    assert scalar(
        live_bank.url, "SELECT confirmed_at IS NOT NULL FROM identity.totp WHERE principal_id = %s", customer_id
    )

    page.get_by_role("link", name="I have kept them").click()
    expect(page.locator(".mfa-state").first).to_have_text("On. Recovery codes left: 10.")
    expect(page.locator(".events")).to_contain_text("Two-step verification turned on")
    expect(page.locator(".sessions .this")).to_contain_text("This device")
    shoot(page, "security")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/app/login$"))
    page.get_by_label("Phone number or e-mail").fill(national)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    shoot(page, "login-mfa")
    live_bank.clock.advance(timedelta(seconds=30))  # the enrolment code's step is used up
    page.get_by_label("Code").fill(totp.at(live_bank.clock.now()))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/app/$"))
    expect(page.locator(".kyc-status")).to_have_text("Not submitted yet")
    assert (
        scalar(
            live_bank.url,
            "SELECT count(*) FROM identity.sessions WHERE principal_id = %s AND status = 'active'"
            " AND mfa_verified_at IS NOT NULL",
            customer_id,
        )
        == 1
    )


def test_a_customer_resets_a_forgotten_password_in_the_browser(live_bank: LiveBank, browser: Any) -> None:
    national = "139" + f"{secrets.randbelow(10**8):08d}"
    page = new_page(browser, live_bank, width=360)
    sign_up(page, live_bank, national)
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("link", name="Forgotten your password?").click()
    page.locator("#contact").fill(national)
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
    shoot(page, "reset")
    new_password = "amber-orchard-compass-17"
    page.locator("#code").fill(sent_code(live_bank, "+86" + national))
    page.locator("#password").fill(new_password)
    page.locator("#password_again").fill(new_password)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    page.get_by_role("link", name="Log in").last.click()
    page.get_by_label("Phone number or e-mail").fill(national)
    page.get_by_label("Password", exact=True).fill(new_password)
    page.locator("form.stack button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/app/$"))
