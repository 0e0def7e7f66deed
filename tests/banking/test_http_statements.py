"""History and statements through HTTP: filters and cursor pages of transactions, CSV and PDF
statement downloads (content type, file name, every amount exact; the PDF read back with pypdf).

History entries carry the time the ledger's event was written (the database's clock), so statement
periods here are taken from the entries themselves.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pypdf
import pytest

from smartbank.banking.model import local_day
from smartbank.platform.settings import Settings

from .http_helpers import Bank, Customer, add_payee, bearer, error, login, onboard, open_bank, wait_for

TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def bank(banking_url: str, settings: Settings) -> Iterator[Bank]:
    with open_bank(banking_url, settings) as opened:
        yield opened


@dataclass
class Story:
    alice: Customer
    bob: Customer
    token: str
    entries: list[dict[str, Any]]  # alice's history, newest first

    def get(self, bank: Bank, path: str, **params: Any) -> Any:
        return bank.client.get(path, params=params, headers=bearer(self.token))


@pytest.fixture(scope="module")
def story(bank: Bank) -> Story:
    """Alice: 10,000.00 cash in, then three payments to Bob (125.50 rent, 300.00 groceries, 50.00 book club)."""
    alice = onboard(bank, fund_minor=1_000_000, name="李伟")
    bob = onboard(bank, name="王芳")
    payee_id = add_payee(bank, alice, bob, "Wang Fang")
    bank.clock.advance(timedelta(hours=25))
    token = login(bank, alice.login)
    for key, amount, reference in (
        ("s-1", 12_550, "rent March"),
        ("s-2", 30_000, "groceries"),
        ("s-3", 5_000, "book club"),
    ):
        response = bank.client.post(
            "/v1/payments",
            json={
                "from_account_id": str(alice.account_id),
                "to_payee_id": str(payee_id),
                "amount_minor": amount,
                "currency": "CNY",
                "reference": reference,
            },
            headers={**bearer(token), "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
    path = f"/v1/accounts/{alice.account_id}/transactions"
    wait_for(lambda: len(bank.client.get(path, headers=bearer(token)).json()["items"]) == 4)
    entries = bank.client.get(path, headers=bearer(token)).json()["items"]
    return Story(alice, bob, token, entries)


def amounts(items: list[dict[str, Any]]) -> list[int]:
    return [e["amount_minor"] for e in items]


def test_history_is_newest_first_and_filters_by_amount_counterparty_text_and_time(bank: Bank, story: Story) -> None:
    path = f"/v1/accounts/{story.alice.account_id}/transactions"
    assert amounts(story.entries) == [-5_000, -30_000, -12_550, 1_000_000]
    assert [e["description"] for e in story.entries] == ["book club", "groceries", "rent March", "opening deposit"]
    assert story.entries[3]["counterparty_name"].startswith("Cash, branch 0001")
    assert amounts(story.get(bank, path, min_amount_minor=10_000).json()["items"]) == [-30_000, -12_550, 1_000_000]
    assert amounts(story.get(bank, path, max_amount_minor=20_000).json()["items"]) == [-5_000, -12_550]
    assert amounts(story.get(bank, path, min_amount_minor=12_550, max_amount_minor=12_550).json()["items"]) == [-12_550]
    assert amounts(story.get(bank, path, counterparty=story.bob.account_number).json()["items"]) == [
        -5_000,
        -30_000,
        -12_550,
    ]
    assert amounts(story.get(bank, path, counterparty="wang").json()["items"]) == [-5_000, -30_000, -12_550]
    assert amounts(story.get(bank, path, text="rent").json()["items"]) == [-12_550]
    assert story.get(bank, path, text="100%").json()["items"] == []  # LIKE characters are literal
    rent_at = story.entries[2]["posted_at"]
    assert amounts(story.get(bank, path, since=rent_at).json()["items"]) == [-5_000, -30_000, -12_550]
    assert amounts(story.get(bank, path, until=rent_at).json()["items"]) == [1_000_000]


def test_history_pages_with_an_opaque_cursor_and_refuses_bad_pages(bank: Bank, story: Story) -> None:
    path = f"/v1/accounts/{story.alice.account_id}/transactions"
    first = story.get(bank, path, limit=3).json()
    assert amounts(first["items"]) == [-5_000, -30_000, -12_550]
    assert first["next_cursor"]
    second = story.get(bank, path, limit=3, cursor=first["next_cursor"]).json()
    assert (amounts(second["items"]), second["next_cursor"]) == ([1_000_000], None)
    assert error(story.get(bank, path, cursor="not-a-cursor")) == (422, "invalid_cursor")
    assert error(story.get(bank, path, limit=0)) == (422, "validation_error")
    assert error(story.get(bank, path, limit=101)) == (422, "validation_error")
    assert error(story.get(bank, path, since="2026-03-02T10:00:00")) == (422, "validation_error")  # no time zone
    rent_at = story.entries[2]["posted_at"]
    assert error(story.get(bank, path, since=rent_at, until=rent_at)) == (422, "invalid_date_range")


def _period(story: Story) -> tuple[str, str]:
    moments = [datetime.fromisoformat(e["posted_at"].replace("Z", "+00:00")) for e in story.entries]
    return local_day(min(moments), TZ).isoformat(), local_day(max(moments), TZ).isoformat()


def test_a_csv_statement_downloads_with_its_type_name_and_exact_amounts(bank: Bank, story: Story) -> None:
    first, last = _period(story)
    response = story.get(bank, f"/v1/accounts/{story.alice.account_id}/statement", **{"from": first, "to": last})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="statement-{story.alice.account_number}-{first}-{last}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[:4] == [
        ["account", story.alice.account_number],
        ["period", first, last],
        ["opening_balance", "0.00", "CNY"],
        ["date", "description", "counterparty", "amount", "balance", "currency", "transfer_id"],
    ]
    assert [(r[1], r[3], r[4]) for r in rows[4:-1]] == [
        ("opening deposit", "10000.00", "10000.00"),
        ("rent March", "-125.50", "9874.50"),
        ("groceries", "-300.00", "9574.50"),
        ("book club", "-50.00", "9524.50"),
    ]
    bob_number = " ".join(story.bob.account_number[i : i + 4] for i in range(0, 16, 4))
    assert rows[5][2] == f"Wang Fang {bob_number}"
    assert rows[-1] == ["closing_balance", "9524.50", "CNY"]


def test_a_pdf_statement_downloads_and_reads_back_with_pypdf(bank: Bank, story: Story) -> None:
    first, last = _period(story)
    response = story.get(
        bank, f"/v1/accounts/{story.alice.account_id}/statement", **{"from": first, "to": last, "format": "pdf"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="statement-{story.alice.account_number}-{first}-{last}.pdf"'
    )
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(response.content)).pages)
    assert "Opening balance 0.00 CNY" in text
    assert "Closing balance 9524.50 CNY" in text
    for amount in ("10000.00", "-125.50", "-300.00", "-50.00", "9874.50", "9574.50"):
        assert amount in text, amount
    assert "rent March" in text


def test_a_statement_refuses_a_bad_period_or_format(bank: Bank, story: Story) -> None:
    path = f"/v1/accounts/{story.alice.account_id}/statement"
    assert error(story.get(bank, path, **{"from": "2026-03-02", "to": "2026-03-01"})) == (422, "invalid_date_range")
    assert error(story.get(bank, path, **{"from": "2025-01-01", "to": "2026-03-01"})) == (422, "invalid_date_range")
    assert error(story.get(bank, path, **{"from": "2026-03-01", "to": "2026-03-02", "format": "xls"})) == (
        422,
        "validation_error",
    )
    assert error(story.get(bank, path, to="2026-03-02")) == (422, "validation_error")
