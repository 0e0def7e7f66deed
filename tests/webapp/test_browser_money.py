"""Money already moved, in headless Chromium (JavaScript off): filter the history, open a transaction,
download statements (CSV and PDF), read and clear the notifications; screenshots at 360 and 1280 px."""

from __future__ import annotations

import csv
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.banking.http_helpers import Customer, add_payee, all_rows, onboard

from .conftest import LiveBank, shoot
from .test_browser import log_in, new_page
from .test_money_pages import pay

pytestmark = pytest.mark.timeout(120)


def wait_for_history(bank: LiveBank, customer: Customer, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(all_rows(bank.url, "SELECT 1 FROM banking.entries WHERE account_id = %s", customer.account_id)) < count:
        assert time.monotonic() < deadline, "the history never caught up"
        time.sleep(0.05)


def test_filter_the_history_open_a_transaction_download_statements_and_read_notifications(
    live_bank: LiveBank, browser: Any, tmp_path: Path
) -> None:
    payer = onboard(live_bank, fund_minor=500_000, name="李雷")  # type: ignore[arg-type]
    payee = onboard(live_bank, name="韩梅梅")  # type: ignore[arg-type]
    payee_id = add_payee(live_bank, payer, payee, "韩梅梅")  # type: ignore[arg-type]
    live_bank.clock.advance(timedelta(hours=25))  # booked on 3 March; the deposit on 2 March
    pay(live_bank, payer, payee_id, 8_800, "gym membership")  # type: ignore[arg-type]
    pay(live_bank, payer, payee_id, 42_000, "rent share")  # type: ignore[arg-type]
    wait_for_history(live_bank, payer, 3)

    page: Page = new_page(browser, live_bank)
    log_in(page, payer)
    expect(page).to_have_url(re.compile(r"/app/$"))
    expect(page.locator(".inbox .count")).to_have_text(re.compile(r"^\d+ unread$"))
    page.locator(f"[data-account='{payer.account_number}'] h3 a").click()
    expect(page.locator(".entry")).to_have_count(3)

    # Money out, at least 100 CNY: only the rent.
    page.get_by_label("Money in or out").select_option("out")
    page.get_by_label("Smallest amount").fill("100")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"direction=out"))
    expect(page.locator(".entry")).to_have_count(1)
    expect(page.locator(".entry .amount")).to_have_text("-CN¥420.00")
    expect(page.get_by_label("Smallest amount")).to_have_value("100")  # the filters stay in the form
    shoot(page, "account-filtered")

    # A day with nothing out: the empty state, and a way back.
    page.get_by_label("From (date)").fill("2026-03-02")
    page.get_by_label("To (date)").fill("2026-03-02")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No transactions match these filters.")).to_be_visible()
    page.locator(".empty").get_by_role("link", name="Clear filters").click()
    expect(page.locator(".entry")).to_have_count(3)

    page.locator(".entry", has_text="gym membership").get_by_role("link").click()
    expect(page.get_by_role("heading", name="Money out")).to_be_visible()
    expect(page.locator("#amount")).to_have_text("-CN¥88.00")
    expect(page.locator("#counterparty")).to_have_text("韩梅梅")
    expect(page.locator("#counterparty-number")).to_have_text(payee.account_number)
    expect(page.locator("#reference")).to_have_text("gym membership")
    expect(page.locator("#status")).to_have_text("Payment sent")
    expect(page.locator("#balance-after")).to_have_text("CN¥4,912.00")
    shoot(page, "transaction")

    page.get_by_role("link", name="Back to the account history").click()
    page.get_by_role("link", name="Download a statement").click()
    expect(page.get_by_role("heading", name="Statements")).to_be_visible()
    shoot(page, "statements")
    page.get_by_label("From one day to another").check()
    page.get_by_label("From (date)").fill("2026-03-01")
    page.get_by_label("To (date)").fill("2026-03-03")
    page.get_by_label("CSV (spreadsheet)").check()
    with page.expect_download() as started:
        page.get_by_role("button", name="Download").click()
    download = started.value
    assert download.suggested_filename == f"statement-{payer.account_number}-2026-03-01-2026-03-03.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with saved.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert [(row[1], row[3], row[4]) for row in rows[4:-1]] == [
        ("opening deposit", "5000.00", "5000.00"),
        ("gym membership", "-88.00", "4912.00"),
        ("rent share", "-420.00", "4492.00"),
    ]

    page.get_by_label("A month").check()
    page.get_by_label("Month", exact=True).fill("2026-03")
    page.get_by_label("PDF (to print)").check()
    with page.expect_download() as started:
        page.get_by_role("button", name="Download").click()
    pdf = tmp_path / "statement.pdf"
    started.value.save_as(pdf)
    assert started.value.suggested_filename.endswith("-2026-03-01-2026-03-31.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")

    # A period that ends before it starts: a message on the form, not a broken page.
    page.get_by_label("From one day to another").check()
    page.get_by_label("From (date)").fill("2026-03-05")
    page.get_by_label("To (date)").fill("2026-03-01")
    page.get_by_role("button", name="Download").click()
    expect(page.get_by_role("alert")).to_contain_text("Choose a period that ends on or after the day it starts")

    page.get_by_role("link", name=re.compile("^Notifications")).first.click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    expect(page.locator(".notice.unread", has_text="You sent CN¥420.00 to 韩梅梅.")).to_have_count(1)
    expect(page.locator(".notice.unread", has_text="You sent CN¥88.00 to 韩梅梅.")).to_have_count(1)
    expect(page.locator(".notice", has_text="You received a cash deposit of CN¥5,000.00")).to_have_count(1)
    shoot(page, "notifications")
    page.get_by_role("button", name="Mark all as read").click()
    expect(page.locator(".notice.unread")).to_have_count(0)
    expect(page.locator(".inbox .count")).to_have_count(0)
    unread = all_rows(
        live_bank.url,
        "SELECT count(*) FROM platform.notifications WHERE recipient_id = %s AND read_at IS NULL",
        payer.id,
    )
    assert unread == [(0,)]

    # The payee sees the money arrive in their own inbox, and nothing of the payer's.
    other = new_page(browser, live_bank, width=360)
    log_in(other, payee)
    other.goto("/app/notifications")
    expect(
        other.locator(".notice", has_text=f"You received CN¥420.00 from account {payer.account_number}.")
    ).to_have_count(1)
    expect(other.locator(".notice", has_text="You sent")).to_have_count(0)
    shoot(other, "notifications-payee")
