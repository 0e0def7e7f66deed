"""axe-core (the copy shipped in the axe-playwright-python wheel) over the main pages: no serious or
critical violation, at phone and desktop widths, in English and Chinese."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.banking.http_helpers import PASSWORD, add_payee, all_rows, onboard, wait_for

from .conftest import WIDTHS, LiveBank

pytestmark = pytest.mark.timeout(120)

BLOCKING = {"serious", "critical"}


def entries(url: str, account_id: Any) -> list[tuple[Any, ...]]:
    return all_rows(url, "SELECT transfer_id FROM banking.entries WHERE account_id = %s", account_id)


def blocking_violations(page: Page) -> list[str]:
    found: list[str] = []
    for width, height in WIDTHS.values():
        page.set_viewport_size({"width": width, "height": height})
        results = Axe().run(page)
        assert results.response["testEngine"]["name"] == "axe-core"
        found += [
            f"{width}px {v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"]
            if v["impact"] in BLOCKING
        ]
    return found


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_the_main_pages_have_no_serious_or_critical_accessibility_violations(
    live_bank: LiveBank, browser: Any, locale: str
) -> None:
    payer = onboard(live_bank, fund_minor=50_000, name="赵敏")  # type: ignore[arg-type]
    payee = onboard(live_bank, name="周芷若")  # type: ignore[arg-type]
    add_payee(live_bank, payer, payee, "周芷若")  # type: ignore[arg-type]
    live_bank.clock.advance(timedelta(hours=25))
    # Scripts on (axe is one) but the page's CSP bypassed only for the injected checker.
    context = browser.new_context(base_url=live_bank.base_url, locale=locale, bypass_csp=True)
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    checked: dict[str, list[str]] = {}

    page.goto("/app/login")
    checked["login"] = blocking_violations(page)
    page.locator("#login").fill(payer.login)
    page.locator("#password").fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/app/$"))
    checked["home"] = blocking_violations(page)

    page.goto(f"/app/accounts/{payer.account_id}")
    checked["account"] = blocking_violations(page)
    page.goto(f"/app/accounts/{payer.account_id}?direction=out&min=ten")
    expect(page.get_by_role("alert")).to_be_visible()
    checked["account-bad-filter"] = blocking_violations(page)
    page.goto(f"/app/accounts/{payer.account_id}?direction=out")
    checked["account-no-match"] = blocking_violations(page)
    wait_for(lambda: bool(entries(live_bank.url, payer.account_id)))  # type: ignore[arg-type]
    page.goto(f"/app/accounts/{payer.account_id}/transactions/{entries(live_bank.url, payer.account_id)[0][0]}")
    checked["transaction"] = blocking_violations(page)
    page.goto(f"/app/accounts/{payer.account_id}/statements")
    checked["statements"] = blocking_violations(page)
    page.goto(f"/app/accounts/{payer.account_id}/statements/download?period=month&month=2026-13")
    expect(page.get_by_role("alert")).to_be_visible()
    checked["statements-refused"] = blocking_violations(page)
    page.goto("/app/notifications")
    checked["notifications"] = blocking_violations(page)

    page.goto("/app/pay")
    page.locator("#amount").fill("1000")  # more than the balance: the refusal page is checked too
    checked["pay"] = blocking_violations(page)
    page.locator("form.stack button[type=submit]").click()
    checked["review"] = blocking_violations(page)
    page.locator("form.stack button[type=submit]").click()
    expect(page.get_by_role("alert")).to_be_visible()
    checked["pay-refused"] = blocking_violations(page)
    context.close()

    assert {name: found for name, found in checked.items() if found} == {}


def test_the_checker_finds_a_serious_violation_when_there_is_one(browser: Any) -> None:
    context = browser.new_context()
    page: Page = context.new_page()
    page.set_content('<html lang="en"><title>t</title><main><input type="text" name="unlabelled"></main></html>')
    assert any(v.startswith("360px label (critical)") for v in blocking_violations(page))
    context.close()


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_the_staff_pages_have_no_serious_or_critical_accessibility_violations(
    live_bank: LiveBank, browser: Any, locale: str
) -> None:
    from smartbank.identity.model import StaffRole
    from tests.webapp.test_staff_pages import new_staff, pending_customer

    customer = onboard(live_bank, fund_minor=10_000, name="张无忌")  # type: ignore[arg-type]
    pending = pending_customer(live_bank, "殷素素")  # type: ignore[arg-type]
    login_name = new_staff(live_bank, StaffRole.ADMIN)  # type: ignore[arg-type]
    context = browser.new_context(base_url=live_bank.base_url, locale=locale, bypass_csp=True)
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    checked: dict[str, list[str]] = {}

    page.goto("/staff/login")
    checked["staff-login"] = blocking_violations(page)
    page.locator("#login").fill(login_name)
    page.locator("#password").fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))
    checked["staff-search"] = blocking_violations(page)
    page.goto("/staff/?by=name&q=zhangwuji")
    expect(page.locator(f'a[href="/staff/customers/{customer.id}"]')).to_be_visible()
    checked["staff-results"] = blocking_violations(page)
    page.goto(f"/staff/customers/{customer.id}")
    checked["staff-customer"] = blocking_violations(page)
    page.goto(f"/staff/customers/{pending.id}")
    expect(page.locator("#kyc-form")).to_be_visible()
    checked["staff-kyc"] = blocking_violations(page)
    page.goto(f"/staff/?by=account&q={customer.account_number}")
    expect(page.locator(f'a[href="/staff/customers/{customer.id}"]')).to_be_visible()
    checked["staff-account-search"] = blocking_violations(page)
    page.goto("/staff/kyc")
    expect(page.locator(f'a[href="/staff/customers/{pending.id}"]')).to_be_visible()
    checked["staff-kyc-queue"] = blocking_violations(page)
    page.goto("/staff/mfa/setup")
    checked["staff-mfa-setup"] = blocking_violations(page)
    page.locator("form.stack button[type=submit]").click()
    expect(page.locator(".qr svg")).to_be_visible()
    checked["staff-mfa-scan"] = blocking_violations(page)
    context.close()

    assert {name: found for name, found in checked.items() if found} == {}


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_the_sign_up_and_security_pages_have_no_serious_or_critical_accessibility_violations(
    live_bank: LiveBank, browser: Any, locale: str
) -> None:
    import secrets

    import pyotp

    from tests.webapp.test_browser_onboarding import sent_code

    national = "139" + f"{secrets.randbelow(10**8):08d}"
    context = browser.new_context(base_url=live_bank.base_url, locale=locale, bypass_csp=True)
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    checked: dict[str, list[str]] = {}

    page.goto("/app/password/forgot")
    checked["forgot"] = blocking_violations(page)
    page.locator("#contact").fill("139" + f"{secrets.randbelow(10**8):08d}")
    page.locator("form.stack button.primary").click()
    expect(page.locator("#code")).to_be_visible()
    checked["reset"] = blocking_violations(page)

    page.goto("/app/signup")
    checked["signup"] = blocking_violations(page)
    page.locator("#contact").fill(national)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password_again").fill(PASSWORD)
    page.locator("#accepted_terms").check()
    page.locator("form.stack button.primary").click()
    expect(page.locator("#code")).to_be_visible()
    checked["signup-code"] = blocking_violations(page)
    page.locator("#code").fill(sent_code(live_bank, "+86" + national))
    page.locator("form.stack button.primary").click()
    expect(page).to_have_url(re.compile(r"/app/welcome$"))
    checked["welcome"] = blocking_violations(page)

    page.goto("/app/profile/kyc")
    checked["kyc"] = blocking_violations(page)
    page.goto("/app/security/mfa")
    checked["mfa"] = blocking_violations(page)
    page.locator("form.stack button.primary").click()
    expect(page.locator(".qr svg")).to_be_visible()
    checked["mfa-enrol"] = blocking_violations(page)
    secret = page.locator("#secret").inner_text().replace(" ", "")
    page.locator("#code").fill(pyotp.TOTP(secret).at(live_bank.clock.now()))
    page.locator("form.stack button.primary").first.click()
    expect(page.locator(".codes li")).to_have_count(10)
    checked["mfa-codes"] = blocking_violations(page)
    page.goto("/app/security")
    checked["security"] = blocking_violations(page)
    context.close()

    assert {name: found for name, found in checked.items() if found} == {}


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_the_open_banking_consent_pages_have_no_serious_or_critical_accessibility_violations(
    live_bank: LiveBank, browser: Any, locale: str
) -> None:
    from smartbank.identity.model import ClientInfo
    from smartbank.openbanking.service import AccessContext
    from tests.banking.http_helpers import code_now

    rt = live_bank.runtime
    customer = onboard(live_bank, fund_minor=10_000, name="黄蓉")  # type: ignore[arg-type]
    enrolment = live_bank.run(lambda: rt.identity.start_mfa_enrolment(customer.principal, ClientInfo()))
    live_bank.run(
        lambda: rt.identity.confirm_mfa_enrolment(
            customer.principal, code_now(enrolment.secret, live_bank.clock), ClientInfo()
        )
    )
    app = live_bank.run(
        lambda: rt.openbanking.register_client(
            {
                "client_name": "Budget Buddy",
                "redirect_uris": ["https://partner.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            ClientInfo(),
        )
    ).client
    partner = AccessContext(app.client_id, "client_credentials", "accounts", None, None)
    consent = live_bank.run(
        lambda: rt.openbanking.create_account_access_consent(
            partner, {"Data": {"Permissions": ["ReadAccountsBasic", "ReadBalances"]}, "Risk": {}}, ClientInfo()
        )
    )
    params = {
        "client_id": [app.client_id],
        "response_type": ["code"],
        "redirect_uri": ["https://partner.example/cb"],
        "scope": ["accounts"],
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"],
        "code_challenge_method": ["S256"],
        "openbanking_intent_id": [consent.id],
    }
    request_id = live_bank.run(lambda: rt.openbanking.authorize(params))
    context = browser.new_context(base_url=live_bank.base_url, locale=locale, bypass_csp=True)
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    checked: dict[str, list[str]] = {}

    live_bank.clock.advance(timedelta(seconds=30))
    page.goto(f"/app/consents/authorize/{request_id}")  # to the login page first, and back after it
    page.locator("#login").fill(customer.login)
    page.locator("#password").fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()
    page.locator("#code").fill(code_now(enrolment.secret, live_bank.clock))
    page.locator("form.stack button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/app/consents/authorize/"))
    checked["consent"] = blocking_violations(page)

    live_bank.clock.advance(timedelta(seconds=30))
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "sb_session")
    principal = live_bank.run(lambda: rt.identity.authenticate_session(session))
    assert principal is not None
    live_bank.run(
        lambda: rt.openbanking.decide(
            principal[0],
            request_id,
            approve=True,
            account_ids=[customer.account_id],
            mfa_code=code_now(enrolment.secret, live_bank.clock),
            client_info=ClientInfo(),
        )
    )
    page.goto("/app/consents")
    expect(page.locator(f'[data-consent="{consent.id}"]')).to_be_visible()
    checked["consents"] = blocking_violations(page)

    # The payment variant of the consent screen: amount, payee and reference, one payer account.
    payer = AccessContext(app.client_id, "client_credentials", "payments", None, None)
    initiation = {
        "InstructionIdentification": "i-1",
        "EndToEndIdentification": "e-1",
        "InstructedAmount": {"Amount": "12.30", "Currency": "CNY"},
        "CreditorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": customer.account_number, "Name": "郭靖"},
    }
    payment = live_bank.run(
        lambda: rt.openbanking.payments.create_payment_consent(
            payer, {"Data": {"Initiation": initiation}, "Risk": {}}, "a11y-1", ClientInfo()
        )
    )
    pay_request = live_bank.run(
        lambda: rt.openbanking.authorize({**params, "scope": ["payments"], "openbanking_intent_id": [payment.id]})
    )
    page.goto(f"/app/consents/authorize/{pay_request}")
    expect(page.locator("dd.amount")).to_be_visible()
    checked["payment-consent"] = blocking_violations(page)
    context.close()

    assert {name: found for name, found in checked.items() if found} == {}
