"""History filters and paging, transaction detail, statement downloads and the notification inbox,
over plain HTTP (no browser), with what the database holds checked after each refusal."""

from __future__ import annotations

import csv
import io
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from smartbank.banking.model import CashRequest, PaymentKind, PaymentRequest
from smartbank.banking.service import SYSTEM
from smartbank.identity.model import ClientInfo, Principal, PrincipalKind
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import (
    PASSWORD,
    Bank,
    Customer,
    _submission,
    add_payee,
    all_rows,
    bearer,
    login,
    onboard,
    open_bank,
    teller,
    wait_for,
)
from tests.customers.helpers import register
from tests.webapp.test_pages import alert_of, csrf_of, sign_in


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.44") as opened:
        yield opened


def amounts(html: str) -> list[str]:
    return re.findall(r'class="amount (?:in|out)">([^<]+)<', html)


def history(bank: Bank, customer: Customer, **params: str) -> Any:
    return bank.client.get(f"/app/accounts/{customer.account_id}", params=params)


def entries_of(bank: Bank, customer: Customer) -> int:
    return len(all_rows(bank.url, "SELECT seq FROM banking.entries WHERE account_id = %s", customer.account_id))


def pay(bank: Bank, payer: Customer, payee_id: uuid.UUID, amount_minor: int, reference: str) -> Any:
    rt = bank.runtime
    request = PaymentRequest(
        from_account_id=payer.account_id,
        amount_minor=amount_minor,
        currency="CNY",
        to_payee_id=payee_id,
        reference=reference,
    )
    return bank.run(lambda: rt.banking.submit_payment(payer.principal, f"pay-{secrets.token_hex(6)}", request))


def deposit(bank: Bank, customer: Customer, amount_minor: int, reference: str) -> None:
    rt = bank.runtime
    request = CashRequest(PaymentKind.CASH_DEPOSIT, customer.account_id, "0001", amount_minor, "CNY", reference)
    bank.run(lambda: rt.banking.teller_cash(teller(), f"cash-{secrets.token_hex(6)}", request))


def notices(bank: Bank, customer: Customer) -> list[tuple[Any, ...]]:
    return all_rows(
        bank.url,
        "SELECT kind, params, read_at IS NOT NULL FROM platform.notifications WHERE recipient_id = %s ORDER BY seq",
        customer.id,
    )


def kinds(bank: Bank, customer: Customer) -> list[str]:
    return [kind for kind, _, _ in notices(bank, customer)]


@pytest.fixture(scope="module")
def pair(bank: Bank) -> tuple[Customer, Customer, uuid.UUID]:
    """A (1,000.00 CNY paid in at a branch) has paid B three times; B's history shows them arriving."""
    payer, payee = onboard(bank, fund_minor=100_000, name="李雷"), onboard(bank, name="韩梅梅")
    payee_id = add_payee(bank, payer, payee, name="Han Meimei")
    bank.clock.advance(timedelta(hours=25))  # past the new payee's step-up period
    for amount, reference in ((1_050, "coffee beans"), (2_500, "book club"), (30_000, "rent march")):
        pay(bank, payer, payee_id, amount, reference)
    wait_for(lambda: entries_of(bank, payer) == 4 and entries_of(bank, payee) == 3)
    return payer, payee, payee_id


# -- history -------------------------------------------------------------------------------------


def test_history_filters_by_direction_amount_text_and_dates(bank: Bank, pair: Any) -> None:
    payer, _, _ = pair
    sign_in(bank, payer)
    assert amounts(history(bank, payer).text) == ["-CN¥300.00", "-CN¥25.00", "-CN¥10.50", "+CN¥1,000.00"]
    assert amounts(history(bank, payer, direction="in").text) == ["+CN¥1,000.00"]
    assert amounts(history(bank, payer, direction="out").text) == ["-CN¥300.00", "-CN¥25.00", "-CN¥10.50"]
    assert amounts(history(bank, payer, min="20", max="300").text) == ["-CN¥300.00", "-CN¥25.00"]
    assert amounts(history(bank, payer, direction="out", max="25.00").text) == ["-CN¥25.00", "-CN¥10.50"]
    assert amounts(history(bank, payer, q="Han").text) == ["-CN¥300.00", "-CN¥25.00", "-CN¥10.50"]
    assert amounts(history(bank, payer, ref="book").text) == ["-CN¥25.00"]
    # Days in the bank's time zone: the deposit was booked on 2 March, the payments on 3 March.
    assert amounts(history(bank, payer, **{"from": "2026-03-03"}).text) == ["-CN¥300.00", "-CN¥25.00", "-CN¥10.50"]
    assert amounts(history(bank, payer, to="2026-03-02").text) == ["+CN¥1,000.00"]
    assert len(amounts(history(bank, payer, **{"from": "2026-03-02", "to": "2026-03-03"}).text)) == 4
    page = history(bank, payer, to="2026-03-01")
    assert page.status_code == 200
    assert amounts(page.text) == []
    assert "No transactions match these filters." in page.text
    # The filters stay in the form.
    kept = history(bank, payer, direction="out", min="20", ref="book").text
    assert 'value="out" selected' in kept and 'id="min" name="min" type="text"' in kept and 'value="20"' in kept


def test_bad_filters_get_a_clear_message_not_an_error_page(bank: Bank, pair: Any) -> None:
    payer, _, _ = pair
    sign_in(bank, payer)
    cases = [
        ({"min": "ten"}, "Enter an amount such as 120.50."),
        ({"max": "1.234"}, "That amount has too many decimal places."),
        ({"from": "2026-13-01"}, "Enter dates as year-month-day, such as 2026-01-31."),
        (
            {"from": "2026-03-05", "to": "2026-03-01"},
            "Choose a period that ends on or after the day it starts, and covers at most 366 days.",
        ),
        ({"min": "50", "max": "10"}, "Check what you entered and try again."),
    ]
    for params, message in cases:
        response = history(bank, payer, **params)
        assert response.status_code == 422, params
        assert alert_of(response.text) == message
        assert amounts(response.text) == []


def test_history_pages_keep_the_filters_and_go_back_to_newer(bank: Bank) -> None:
    customer = onboard(bank)
    for n in range(25):
        deposit(bank, customer, 100 + n, f"deposit {n}")
    wait_for(lambda: entries_of(bank, customer) == 25)
    sign_in(bank, customer)
    first = history(bank, customer, direction="in", max="1.22").text
    expected_first = [f"+CN¥1.{n:02d}" for n in range(22, 2, -1)]
    assert amounts(first) == expected_first
    assert 'rel="prev"' not in first  # the newest page has no newer link
    older = re.search(r'href="\?([^"]+)" rel="next"', first)
    assert older is not None
    query = older.group(1).replace("&amp;", "&")
    assert "direction=in" in query and "max=1.22" in query and "cursor=" in query
    second = bank.client.get(f"/app/accounts/{customer.account_id}?{query}").text
    assert amounts(second) == ["+CN¥1.02", "+CN¥1.01", "+CN¥1.00"]
    assert 'rel="next"' not in second
    newer = re.search(r'href="\?([^"]+)" rel="prev"', second)
    assert newer is not None
    back = bank.client.get(f"/app/accounts/{customer.account_id}?{newer.group(1).replace('&amp;', '&')}").text
    assert amounts(back) == expected_first
    # A made-up cursor starts again from the newest page, with the filters.
    response = bank.client.get(
        f"/app/accounts/{customer.account_id}", params={"cursor": "bogus", "direction": "in"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/app/accounts/{customer.account_id}?direction=in"


def test_an_account_without_history_says_so(bank: Bank) -> None:
    customer = onboard(bank)
    sign_in(bank, customer)
    page = history(bank, customer).text
    assert "No transactions yet. Money paid in or out of this account shows here." in page


# -- transaction detail ----------------------------------------------------------------------------


def detail_path(customer: Customer, transfer_id: Any) -> str:
    return f"/app/accounts/{customer.account_id}/transactions/{transfer_id}"


def test_a_transaction_shows_its_detail_to_each_side_and_nobody_else(bank: Bank, pair: Any) -> None:
    payer, payee, _ = pair
    transfer_id = all_rows(
        bank.url,
        "SELECT transfer_id FROM banking.entries WHERE account_id = %s AND description = 'book club'",
        payer.account_id,
    )[0][0]
    sign_in(bank, payer)
    page = bank.client.get(detail_path(payer, transfer_id))
    assert page.status_code == 200
    text = page.text
    assert '<p class="amount out big" id="amount">-CN¥25.00</p>' in text
    assert '<dd id="counterparty">Han Meimei</dd>' in text
    assert f'id="counterparty-number">{payee.account_number}<' in text
    assert '<dd id="reference">book club</dd>' in text
    assert '<dd id="status">Payment sent</dd>' in text
    assert '<dd id="balance-after">CN¥964.50</dd>' in text  # 1,000.00 - 10.50 - 25.00
    # The history links to it.
    assert f'href="{detail_path(payer, transfer_id)}"' in history(bank, payer).text

    sign_in(bank, payee)
    text = bank.client.get(detail_path(payee, transfer_id)).text
    assert '<p class="amount in big" id="amount">+CN¥25.00</p>' in text
    assert f'id="counterparty-number">{payer.account_number}<' in text
    assert 'id="status"' not in text  # the payer's payment is not the payee's to see
    assert '<dd id="balance-after">CN¥35.50</dd>' in text

    # Someone else: not found, whether through the payer's account or their own.
    stranger = onboard(bank)
    sign_in(bank, stranger)
    for path in (detail_path(payer, transfer_id), detail_path(stranger, transfer_id)):
        response = bank.client.get(path)
        assert response.status_code == 404, path
        assert alert_of(response.text) == "We could not find that."
        assert "book club" not in response.text and payer.account_number not in response.text
    assert bank.client.get(f"/app/accounts/{stranger.account_id}/transactions/not-a-uuid").status_code == 404


# -- statements ----------------------------------------------------------------------------------


def statement(bank: Bank, customer: Customer, **params: str) -> Any:
    return bank.client.get(f"/app/accounts/{customer.account_id}/statements/download", params=params)


def test_statements_download_as_csv_and_pdf(bank: Bank, pair: Any) -> None:
    payer, _, _ = pair
    sign_in(bank, payer)
    form = bank.client.get(f"/app/accounts/{payer.account_id}/statements")
    assert form.status_code == 200
    assert 'type="month"' in form.text and 'value="pdf"' in form.text
    first, last = date(2026, 3, 2), date(2026, 3, 3)
    response = statement(bank, payer, period="range", **{"from": first.isoformat(), "to": last.isoformat()})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="statement-{payer.account_number}-2026-03-02-2026-03-03.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == ["account", payer.account_number]
    assert rows[1] == ["period", "2026-03-02", "2026-03-03"]
    assert rows[2] == ["opening_balance", "0.00", "CNY"]
    assert rows[3][:5] == ["date", "description", "counterparty", "amount", "balance"]
    lines = [(row[1], row[3], row[4]) for row in rows[4:-1]]
    assert lines == [
        ("opening deposit", "1000.00", "1000.00"),
        ("coffee beans", "-10.50", "989.50"),
        ("book club", "-25.00", "964.50"),
        ("rent march", "-300.00", "664.50"),
    ]
    assert rows[-1] == ["closing_balance", "664.50", "CNY"]

    pdf = statement(bank, payer, period="month", month="2026-03", format="pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"] == (
        f'attachment; filename="statement-{payer.account_number}-2026-03-01-2026-03-31.pdf"'
    )
    # The day before anything was booked: an empty statement, still a file.
    empty = statement(bank, payer, period="range", **{"from": "2026-03-01", "to": "2026-03-01"})
    rows = list(csv.reader(io.StringIO(empty.content.decode("utf-8"))))
    assert rows[2] == ["opening_balance", "0.00", "CNY"] and rows[-1] == ["closing_balance", "0.00", "CNY"]
    assert len(rows) == 5


def test_bad_statement_periods_get_a_message_and_others_accounts_are_not_found(bank: Bank, pair: Any) -> None:
    payer, payee, _ = pair
    sign_in(bank, payer)
    range_message = "Choose a period that ends on or after the day it starts, and covers at most 366 days."
    date_message = "Enter dates as year-month-day, such as 2026-01-31."
    cases = [
        ({"period": "range", "from": "2026-03-05", "to": "2026-03-01"}, range_message),
        ({"period": "range", "from": "2024-01-01", "to": "2026-01-01"}, range_message),
        (
            {"period": "range", "from": "someday", "to": "2026-03-01"},
            date_message,
        ),
        ({"period": "month", "month": "2026-13"}, "Choose a month, such as 2026-01."),
    ]
    for params, message in cases:
        response = statement(bank, payer, **params)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("text/html")
        assert alert_of(response.text) == message
    for path in (
        f"/app/accounts/{payee.account_id}/statements",
        f"/app/accounts/{payee.account_id}/statements/download?period=month&month=2026-03",
    ):
        response = bank.client.get(path)
        assert response.status_code == 404, path
        assert payee.account_number not in response.text


# -- notifications -------------------------------------------------------------------------------


def test_payments_notify_the_payer_and_the_payee_once(bank: Bank, pair: Any) -> None:
    payer, payee, _ = pair
    assert kinds(bank, payer).count("banking.payment_sent") == 3
    assert kinds(bank, payer).count("banking.money_received") == 1  # the teller's opening deposit
    received = [params for kind, params, _ in notices(bank, payee) if kind == "banking.money_received"]
    assert sorted(p["amount_minor"] for p in received) == [1_050, 2_500, 30_000]
    assert {p["counterparty_number"] for p in received} == {payer.account_number}
    assert not any(kind == "banking.payment_sent" for kind in kinds(bank, payee))
    sent = [params for kind, params, _ in notices(bank, payer) if kind == "banking.payment_sent"]
    assert {p["payee_name"] for p in sent} == {"Han Meimei"}

    # The same ledger event delivered again (under a new event id, so past the consumer's claim),
    # and the finished payments driven again, notify nobody a second time.
    rt = bank.runtime
    before_payer, before_payee = notices(bank, payer), notices(bank, payee)
    event = all_rows(
        bank.url,
        "SELECT payload, created_at FROM platform.outbox WHERE topic = 'ledger.transfers_created'"
        " AND payload->'credit_account_id' ? %s ORDER BY seq DESC LIMIT 1",
        str(payee.account_id),
    )[0]
    assert bank.run(lambda: rt.banking.project_transfers(uuid.uuid4(), event[0], event[1])) == 0
    for (payment_id,) in all_rows(bank.url, "SELECT id FROM banking.payments WHERE customer_id = %s", payer.id):
        bank.run(lambda payment_id=payment_id: rt.banking.drive(payment_id, SYSTEM))
    assert notices(bank, payer) == before_payer
    assert notices(bank, payee) == before_payee


def test_a_failed_payment_notifies_the_payer(bank: Bank, pair: Any) -> None:
    payer, payee, payee_id = pair
    before = kinds(bank, payee)
    with pytest.raises(Exception, match="failed"):
        pay(bank, payer, payee_id, 150_000, "too much")
    failed = [params for kind, params, _ in notices(bank, payer) if kind == "banking.payment_failed"]
    assert len(failed) == 1
    assert failed[0]["amount_minor"] == 150_000 and failed[0]["failure_code"] == "insufficient_funds"
    assert kinds(bank, payee) == before


def test_security_events_notify_the_customer(bank: Bank) -> None:
    customer = onboard(bank)
    rt = bank.runtime
    client = ClientInfo(ip="198.51.100.7", device="Firefox on Linux")
    # Onboarding told them of the identity check and the account it opened.
    assert kinds(bank, customer) == ["customers.kyc_verified", "banking.account_opened"]
    opened = notices(bank, customer)[1][1]
    assert (opened["number"], opened["product"], opened["currency"]) == (customer.account_number, "current", "CNY")
    bank.run(lambda: rt.identity.login(customer.login, PASSWORD, client))
    for _ in range(5):
        with pytest.raises(Exception, match="wrong"):
            bank.run(lambda: rt.identity.login(customer.login, "not the password", client))
    assert kinds(bank, customer)[2:] == ["security.sign_in", "security.locked"]
    assert notices(bank, customer)[2][1] == {"ip": "198.51.100.7", "device": "Firefox on Linux"}


def test_the_inbox_page_lists_marks_read_and_shows_only_your_own(bank: Bank, pair: Any) -> None:
    payer, payee, _ = pair
    csrf = sign_in(bank, payee)
    page = bank.client.get("/app/notifications")
    assert page.status_code == 200
    text = page.text
    assert f"You received CN¥300.00 from account {payer.account_number}." in text
    assert "New sign-in to your account from 203.0.113.44." in text
    unread = len(all_rows(bank.url, "SELECT 1 FROM platform.notifications WHERE recipient_id = %s", payee.id))
    assert unread >= 4
    assert re.search(rf'class="count">{unread}<span class="sr-only"> unread</span>', text)
    assert len(re.findall(r'class="notice unread"', text)) == unread
    assert "You sent" not in text  # the payer's notices are not here
    # Every customer page carries the badge.
    assert f'class="count">{unread}<' in bank.client.get("/app/").text

    response = bank.client.post("/app/notifications/read", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert all(not read for _, _, read in notices(bank, payee))
    response = bank.client.post("/app/notifications/read", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert all(read for _, _, read in notices(bank, payee))
    text = bank.client.get("/app/notifications").text
    assert 'class="count"' not in text and 'class="notice unread"' not in text
    assert any(not read for _, _, read in notices(bank, payer))  # the payer's are untouched


def test_the_inbox_in_chinese(bank: Bank, pair: Any) -> None:
    payer, _, _ = pair
    sign_in(bank, payer)
    text = bank.client.get("/app/notifications", headers={"Accept-Language": "zh-CN"}).text
    assert "您向 Han Meimei 转账 ¥25.00。" in text


def test_the_inbox_pages_newest_first(bank: Bank) -> None:
    customer = onboard(bank)
    for n in range(22):
        deposit(bank, customer, 100 + n, f"deposit {n}")
    wait_for(lambda: kinds(bank, customer).count("banking.money_received") == 22)
    sign_in(bank, customer)
    first = bank.client.get("/app/notifications").text
    listed = re.compile(r'class="notice(?: unread)?"')
    assert len(listed.findall(first)) == 20  # this sign-in, then the deposits of 1.21 down to 1.03
    assert "New sign-in to your account from 203.0.113.44." in first
    assert "You received a cash deposit of CN¥1.21 at Head office (online)." in first
    assert "CN¥1.02" not in first
    older = re.search(r'href="\?(cursor=[^"]+)" rel="next"', first)
    assert older is not None
    second = bank.client.get(f"/app/notifications?{older.group(1)}").text
    assert len(listed.findall(second)) == 5  # the last three deposits, then the account and the check
    assert [f"CN¥1.0{n}" in second for n in (2, 1, 0)] == [True, True, True]
    assert f"Your current account {customer.account_number} is open." in second
    assert f'href="/app/accounts/{customer.account_id}"' in second
    assert "Your identity is verified: your accounts are ready to use." in second
    assert 'rel="next"' not in second


def test_the_inbox_api_lists_and_marks_only_your_own(bank: Bank, pair: Any) -> None:
    payer, payee, _ = pair
    payer_token, payee_token = login(bank, payer.login), login(bank, payee.login)
    listed = bank.client.get("/v1/me/notifications", params={"limit": 2}, headers=bearer(payer_token))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert len(body["items"]) == 2 and body["next_cursor"]
    assert body["items"][0]["kind"] == "security.sign_in"  # this very login, newest first
    newest_id = body["items"][0]["id"]
    older = bank.client.get(
        "/v1/me/notifications", params={"cursor": body["next_cursor"], "limit": 100}, headers=bearer(payer_token)
    ).json()
    every = [item["id"] for item in body["items"] + older["items"]]
    stored = all_rows(bank.url, "SELECT id FROM platform.notifications WHERE recipient_id = %s", payer.id)
    assert sorted(every) == sorted(str(row[0]) for row in stored)

    # The payee cannot mark the payer's notices, nor see them.
    refused = bank.client.post("/v1/me/notifications/read", json={"up_to": newest_id}, headers=bearer(payee_token))
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    theirs = bank.client.get("/v1/me/notifications", params={"limit": 100}, headers=bearer(payee_token)).json()
    assert not {item["id"] for item in theirs["items"]} & set(every)

    unread_before = body["unread"]
    marked = bank.client.post("/v1/me/notifications/read", json={"up_to": every[1]}, headers=bearer(payer_token))
    assert marked.status_code == 200, marked.text
    assert marked.json()["unread"] == 1  # only the newest is left
    assert marked.json()["marked"] == unread_before - 1
    both = bank.client.post(
        "/v1/me/notifications/read", json={"up_to": newest_id, "all": True}, headers=bearer(payer_token)
    )
    assert both.status_code == 422
    done = bank.client.post("/v1/me/notifications/read", json={"all": True}, headers=bearer(payer_token)).json()
    assert done == {"marked": 1, "unread": 0}
    bad = bank.client.get("/v1/me/notifications", params={"cursor": "nope"}, headers=bearer(payer_token))
    assert bad.status_code == 422


def test_home_shows_quick_actions_and_the_identity_check_state(bank: Bank, pair: Any) -> None:
    payer, _, _ = pair
    sign_in(bank, payer)
    home = bank.client.get("/app/").text
    for href in (
        "/app/pay",
        "/app/payees/new",
        f"/app/accounts/{payer.account_id}/statements",
        "/app/notifications",
        "/app/security",
    ):
        assert f'href="{href}"' in home, href

    rt = bank.runtime
    profile = bank.run(lambda: register(rt.customers, rt.db, password=PASSWORD))
    assert profile.phone is not None
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    bank.client.post("/app/login", data={"csrf_token": token, "login": profile.phone, "password": PASSWORD})
    fresh = bank.client.get("/app/").text
    assert "<h3>No accounts yet</h3>" in fresh
    assert 'href="/app/pay"' not in fresh.split("</nav>", 1)[1]  # no pay button without an account
    me = Principal(profile.id, PrincipalKind.CUSTOMER)
    bank.run(lambda: rt.customers.submit_kyc(me, profile.id, _submission("张伟")))
    pending = bank.client.get("/app/").text
    assert "<h3>Identity check pending</h3>" in pending
    assert "No accounts yet" not in pending
