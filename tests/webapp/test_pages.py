"""The web app's pages over plain HTTP (no JavaScript, no browser): sign-in, CSRF, ownership, refusals."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from smartbank.banking.model import CashRequest, PaymentKind
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import PASSWORD, Bank, Customer, add_payee, all_rows, onboard, open_bank, teller


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.40") as opened:
        yield opened


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has no form token"
    return match.group(1)


def alert_of(html: str) -> str:
    match = re.search(r'role="alert"[^>]*>\s*(?:<p>)?([^<]+)', html)
    assert match is not None, "the page shows no message"
    return match.group(1).strip()


def sign_in(bank: Bank, customer: Customer) -> str:
    """Log ``customer`` in through the form; returns the session's CSRF token (from the home page)."""
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    response = bank.client.post(
        "/app/login",
        data={"csrf_token": token, "login": customer.login, "password": PASSWORD, "next": "/app/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/app/"
    return csrf_of(bank.client.get("/app/").text)


def payments(bank: Bank, customer: Customer) -> list[tuple[Any, ...]]:
    return all_rows(
        bank.url,
        "SELECT amount_minor, status, failure_code FROM banking.payments WHERE customer_id = %s AND kind = 'transfer'",
        customer.id,
    )


def reviewed(bank: Bank, payer: Customer, payee_id: Any, amount: str) -> dict[str, str]:
    """The hidden fields of the review page for this payment."""
    csrf = csrf_of(bank.client.get("/app/pay").text)
    response = bank.client.post(
        "/app/pay/review",
        data={"csrf_token": csrf, "from": str(payer.account_id), "payee": str(payee_id), "amount": amount},
    )
    assert response.status_code == 200, response.text
    return dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', response.text))


def test_a_visitor_is_sent_to_the_login_page(bank: Bank) -> None:
    bank.client.cookies.clear()
    response = bank.client.get("/app/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/app/login?next=%2Fapp%2F"
    assert bank.client.get("/", follow_redirects=False).headers["location"] == "/app/"
    page = bank.client.get("/app/login")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert '<label for="login">Phone number or e-mail</label>' in page.text


def test_a_login_form_without_its_token_is_refused_and_opens_no_session(bank: Bank) -> None:
    customer = onboard(bank)
    bank.client.cookies.clear()
    response = bank.client.post("/app/login", data={"login": customer.login, "password": PASSWORD})
    assert response.status_code == 403
    assert alert_of(response.text) == "This form has expired. Please try again."
    assert all_rows(bank.url, "SELECT id FROM identity.sessions WHERE principal_id = %s", customer.id) == []


def test_a_wrong_password_says_so_and_a_good_one_signs_in(bank: Bank) -> None:
    customer = onboard(bank)
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    response = bank.client.post("/app/login", data={"csrf_token": token, "login": customer.login, "password": "nope"})
    assert response.status_code == 401
    assert alert_of(response.text) == "The login or password is wrong."
    assert "sb_session" not in bank.client.cookies
    # A "next" that leaves the site is ignored.
    response = bank.client.post(
        "/app/login",
        data={"csrf_token": token, "login": customer.login, "password": PASSWORD, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/app/"


def test_log_out_ends_the_session(bank: Bank) -> None:
    customer = onboard(bank)
    csrf = sign_in(bank, customer)
    assert bank.client.post("/app/logout", data={}, follow_redirects=False).status_code == 403  # no token
    response = bank.client.post("/app/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/app/login"
    assert all_rows(bank.url, "SELECT status FROM identity.sessions WHERE principal_id = %s", customer.id) == [
        ("ended",)
    ]
    assert bank.client.get("/app/", follow_redirects=False).status_code == 303


def test_another_customers_account_is_not_found(bank: Bank) -> None:
    owner = onboard(bank, fund_minor=50_000)
    other = onboard(bank)
    sign_in(bank, other)
    response = bank.client.get(f"/app/accounts/{owner.account_id}")
    assert response.status_code == 404
    assert owner.account_number not in response.text
    assert alert_of(response.text) == "We could not find that."
    assert bank.client.get("/app/accounts/not-a-uuid").status_code == 404


def test_a_payment_without_the_csrf_token_is_refused_and_writes_nothing(bank: Bank) -> None:
    payer, payee = onboard(bank, fund_minor=100_000), onboard(bank)
    payee_id = add_payee(bank, payer, payee)
    bank.clock.advance(timedelta(hours=25))
    sign_in(bank, payer)
    fields = reviewed(bank, payer, payee_id, "10.00")
    fields.pop("csrf_token")
    response = bank.client.post("/app/pay/confirm", data=fields)
    assert response.status_code == 403
    assert payments(bank, payer) == []


def test_insufficient_funds_and_a_frozen_account_get_clear_messages(bank: Bank) -> None:
    payer, payee = onboard(bank, fund_minor=10_000), onboard(bank)
    payee_id = add_payee(bank, payer, payee)
    bank.clock.advance(timedelta(hours=25))
    sign_in(bank, payer)

    response = bank.client.post("/app/pay/confirm", data=reviewed(bank, payer, payee_id, "100.01"))
    assert response.status_code == 409
    assert alert_of(response.text) == "Not enough money in this account for this payment."
    assert 'value="100.01"' in response.text  # the form keeps what was typed
    # The ledger refused it: the payment is recorded as failed and no money moved.
    assert payments(bank, payer) == [(10_001, "failed", "insufficient_funds")]

    officer = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    rt = bank.runtime
    bank.run(lambda: rt.banking.set_frozen(officer, payer.account_id, True, "fraud check"))
    response = bank.client.post("/app/pay/confirm", data=reviewed(bank, payer, payee_id, "1.00"))
    assert response.status_code == 409
    assert alert_of(response.text).startswith("This account is frozen")
    home = bank.client.get("/app/").text
    assert "Frozen" in home
    assert payments(bank, payer) == [(10_001, "failed", "insufficient_funds")]  # the frozen account: none


def test_review_checks_the_amount_before_anything_is_sent(bank: Bank) -> None:
    payer, payee = onboard(bank, fund_minor=10_000), onboard(bank)
    payee_id = add_payee(bank, payer, payee)
    csrf = sign_in(bank, payer)
    for amount, message in [
        ("12.345", "That amount has too many decimal places."),
        ("ten", "Enter an amount such as 120.50."),
        ("0", "Enter an amount above zero."),
    ]:
        response = bank.client.post(
            "/app/pay/review",
            data={"csrf_token": csrf, "from": str(payer.account_id), "payee": str(payee_id), "amount": amount},
        )
        assert response.status_code == 422, amount
        assert alert_of(response.text) == message
    assert payments(bank, payer) == []


def test_adding_a_payee_from_the_form(bank: Bank) -> None:
    payer, payee = onboard(bank), onboard(bank)
    csrf = sign_in(bank, payer)
    bad = bank.client.post("/app/payees", data={"csrf_token": csrf, "name": "李四", "account_number": "1234"})
    assert bad.status_code == 422
    assert alert_of(bad.text) == "An account number is 16 digits; check it and try again."
    response = bank.client.post(
        "/app/payees",
        data={"csrf_token": csrf, "name": "李四", "account_number": payee.account_number},
        follow_redirects=False,
    )
    assert response.status_code == 303
    rows = all_rows(bank.url, "SELECT name, account_number FROM banking.payees WHERE customer_id = %s", payer.id)
    assert rows == [("李四", payee.account_number)]
    pay_page = bank.client.get(response.headers["location"]).text
    assert "李四" in pay_page
    assert "Payee added. You can pay them now." in pay_page
    # The notice is for a payee of one's own only, not for any id put in the address.
    other = bank.client.get("/app/pay", params={"payee": str(uuid.uuid4()), "added": "1"}).text
    assert "Payee added" not in other


def test_history_pages_and_searches(bank: Bank) -> None:
    customer = onboard(bank)
    rt = bank.runtime
    for n in range(23):
        request = CashRequest(PaymentKind.CASH_DEPOSIT, customer.account_id, "0001", 100 + n, "CNY", f"deposit {n}")
        bank.run(lambda request=request: rt.banking.teller_cash(teller(), f"page-{secrets.token_hex(4)}", request))
    sign_in(bank, customer)

    def amounts(html: str) -> list[str]:
        return re.findall(r'class="amount in">([^<]+)<', html)

    deadline = time.monotonic() + 10
    while len(amounts(page := bank.client.get(f"/app/accounts/{customer.account_id}").text)) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(amounts(page)) == 20
    older = re.search(r'href="(\?cursor=[^"]+)" rel="next"', page)
    assert older is not None
    second = bank.client.get(f"/app/accounts/{customer.account_id}{older.group(1).replace('&amp;', '&')}").text
    assert amounts(second) == ["+CN¥1.02", "+CN¥1.01", "+CN¥1.00"]
    found = bank.client.get(f"/app/accounts/{customer.account_id}", params={"ref": "deposit 7"}).text
    assert amounts(found) == ["+CN¥1.07"]


def test_paying_a_new_payee_asks_for_a_code_and_without_mfa_says_to_set_it_up(bank: Bank) -> None:
    payer, payee = onboard(bank, fund_minor=10_000), onboard(bank)
    payee_id = add_payee(bank, payer, payee)  # less than 24 hours old
    csrf = sign_in(bank, payer)
    fields = reviewed(bank, payer, payee_id, "5.00")
    response = bank.client.post("/app/pay/confirm", data=fields)
    assert response.status_code == 403
    assert "This payee is new, so we need a code from your authenticator app." in response.text
    assert payments(bank, payer) == []
    response = bank.client.post("/app/pay/step-up", data={**fields, "csrf_token": csrf, "code": "123456"})
    assert response.status_code == 409
    assert alert_of(response.text) == "Set up an authenticator app first: this payment needs a code from it."
    assert payments(bank, payer) == []


def test_staff_signed_in_here_are_told_this_app_is_for_customers(bank: Bank) -> None:
    login_name = f"staff-{secrets.token_hex(4)}@bank.example"
    rt = bank.runtime

    async def create() -> None:
        async with rt.db.transaction() as conn:
            await rt.identity.create_login(
                conn,
                principal_id=new_id(),
                kind=PrincipalKind.STAFF,
                login=login_name,
                password=PASSWORD,
                roles=frozenset({StaffRole.ADMIN}),
            )

    bank.run(create)
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    response = bank.client.post(
        "/app/login", data={"csrf_token": token, "login": login_name, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303
    for path in ("/app/", "/app/pay", f"/app/accounts/{new_id()}"):
        response = bank.client.get(path)
        assert response.status_code == 403, path
        assert alert_of(response.text) == "This app is for customers. Staff sign in to the staff console."
