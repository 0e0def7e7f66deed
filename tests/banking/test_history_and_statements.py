"""Account history (projected from the ledger's events), transaction detail, CSV and PDF statements."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from smartbank.banking.model import CashRequest, HistoryFilter, PaymentKind, PaymentRequest
from smartbank.banking.service import BankingService
from smartbank.banking.statements import render_csv, render_pdf
from smartbank.identity.model import Principal, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database
from smartbank.platform.outbox import OutboxRelay

from .conftest import START, FakeDirectory
from .helpers import drain, funded_account, new_customer, posted, staff

CNY = "CNY"


@dataclass
class Story:
    alice: Principal
    account: uuid.UUID
    bob_number: str
    transfers: dict[str, uuid.UUID]


@pytest.fixture
async def story(
    banking: BankingService, bledger: LedgerService, directory: FakeDirectory, bclock: FrozenClock, relay: OutboxRelay
) -> Story:
    """Funding 1000.00 (03-02), rent -15.00 and coffee -2.50 (03-03), +100.00 from Bob and a cash
    deposit of 50.00 (03-04); times in Shanghai."""
    alice = new_customer(directory)
    bob = new_customer(directory)
    account = await funded_account(banking, bledger, alice, 100_000)
    bob_account = await funded_account(banking, bledger, bob, 50_000)
    alice_number = (await banking.list_accounts(alice, alice.id))[0].number
    bob_number = (await banking.list_accounts(bob, bob.id))[0].number
    to_bob = await banking.add_payee(alice, "张三 Zhang San", bob_number)
    to_alice = await banking.add_payee(bob, "Alice", alice_number)
    bclock.advance(timedelta(hours=25))
    rent = await banking.submit_payment(
        alice, "rent", PaymentRequest(account, 1_500, CNY, to_payee_id=to_bob.id, reference="Rent March")
    )
    bclock.advance(timedelta(hours=1))
    coffee = await banking.submit_payment(
        alice, "coffee", PaymentRequest(account, 250, CNY, to_payee_id=to_bob.id, reference="Coffee beans 100%")
    )
    bclock.advance(timedelta(days=1))
    dinner = await banking.submit_payment(
        bob, "dinner", PaymentRequest(bob_account, 10_000, CNY, to_payee_id=to_alice.id, reference="Dinner split")
    )
    bclock.advance(timedelta(hours=1))
    cash = await banking.teller_cash(
        staff(StaffRole.TELLER), "cash", CashRequest(PaymentKind.CASH_DEPOSIT, account, "0002", 5_000, CNY, "cash")
    )
    await drain(relay)
    transfers = {
        "rent": rent.transfer_id,
        "coffee": coffee.transfer_id,
        "dinner": dinner.transfer_id,
        "cash": cash.transfer_id,
    }
    return Story(alice, account, bob_number, transfers)


def amounts(page_items: list) -> list[int]:  # type: ignore[type-arg]
    return [entry.amount_minor for entry in page_items]


async def test_history_lists_every_posted_movement_newest_first(banking: BankingService, story: Story) -> None:
    page = await banking.history(story.alice, story.account)
    assert amounts(page.items) == [5_000, 10_000, -250, -1_500, 100_000]
    assert page.next_cursor is None
    rent = page.items[3]
    assert (rent.counterparty_number, rent.counterparty_name, rent.description) == (
        story.bob_number,
        "张三 Zhang San",
        "Rent March",
    )
    assert page.items[0].counterparty_name == "Cash, branch 0002 Shanghai Lujiazui"
    assert page.items[1].counterparty_number == story.bob_number
    assert page.items[4].counterparty_number is None  # funded from the bank's settlement account


async def test_history_filters(banking: BankingService, story: Story) -> None:
    alice, account = story.alice, story.account
    day1 = START + timedelta(hours=25)

    async def only(where: HistoryFilter) -> list[int]:
        return amounts((await banking.history(alice, account, where)).items)

    assert await only(HistoryFilter(since=day1, until=day1 + timedelta(days=1))) == [-250, -1_500]
    assert await only(HistoryFilter(until=day1)) == [100_000]
    assert await only(HistoryFilter(min_amount_minor=1_000, max_amount_minor=10_000)) == [5_000, 10_000, -1_500]
    assert await only(HistoryFilter(max_amount_minor=250)) == [-250]
    assert await only(HistoryFilter(counterparty=story.bob_number)) == [10_000, -250, -1_500]
    assert await only(HistoryFilter(counterparty="张三")) == [-250, -1_500]
    assert await only(HistoryFilter(text="rent")) == [-1_500]
    assert await only(HistoryFilter(text="100%")) == [-250]
    assert await only(HistoryFilter(text="%")) == [-250]  # a pattern character is matched literally
    assert await only(HistoryFilter(text="_")) == []
    assert await only(HistoryFilter(text="split", min_amount_minor=10_001)) == []
    assert await only(HistoryFilter(direction="in")) == [5_000, 10_000, 100_000]
    assert await only(HistoryFilter(direction="out")) == [-250, -1_500]
    assert await only(HistoryFilter(direction="out", counterparty="张三", max_amount_minor=1_000)) == [-250]
    with pytest.raises(DomainError) as caught:
        await only(HistoryFilter(direction="sideways"))  # type: ignore[arg-type]
    assert caught.value.code == "validation_error"


async def test_history_cursor_walks_every_entry_once(banking: BankingService, story: Story) -> None:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await banking.history(story.alice, story.account, cursor=cursor, limit=2)
        seen.extend(amounts(page.items))
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert (pages, seen) == (3, [5_000, 10_000, -250, -1_500, 100_000])
    # And back up: from the last page, ``prev_cursor`` (as ``newer``) walks to the newest page.
    assert page.prev_cursor is not None
    middle = await banking.history(story.alice, story.account, newer=page.prev_cursor, limit=2)
    assert amounts(middle.items) == [-250, -1_500]
    assert middle.prev_cursor is not None and middle.next_cursor is not None
    newest = await banking.history(story.alice, story.account, newer=middle.prev_cursor, limit=2)
    assert amounts(newest.items) == [5_000, 10_000]
    assert newest.prev_cursor is None  # the newest page: nothing above it
    for bad in (0, 101):
        with pytest.raises(DomainError) as caught:
            await banking.history(story.alice, story.account, limit=bad)
        assert caught.value.code == "validation_error"
    with pytest.raises(DomainError) as caught:
        await banking.history(story.alice, story.account, cursor="bogus")
    assert caught.value.code == "invalid_cursor"


async def test_transaction_detail_joins_ledger_and_payment(banking: BankingService, story: Story) -> None:
    detail = await banking.get_transaction(story.alice, story.account, story.transfers["rent"])
    assert detail.entry.amount_minor == -1_500
    assert (detail.transfer.amount_minor, detail.transfer.debit_account_id) == (1_500, story.account)
    assert detail.payment is not None and detail.payment.reference == "Rent March"
    assert detail.balance_after_minor == 98_500  # the 1,000.00 paid in, less the rent
    with pytest.raises(DomainError) as caught:
        await banking.get_transaction(story.alice, story.account, uuid.uuid4())
    assert caught.value.code == "not_found"
    analyst = staff(StaffRole.RISK_ANALYST)
    assert (await banking.get_transaction(analyst, story.account, story.transfers["cash"])).entry.amount_minor == 5_000


async def test_statement_csv_has_opening_running_and_closing_balances(banking: BankingService, story: Story) -> None:
    statement = await banking.statement(story.alice, story.account, date(2026, 3, 3), date(2026, 3, 3))
    assert (statement.opening_minor, statement.closing_minor) == (100_000, 98_250)
    csv_text = render_csv(statement).decode()
    number = statement.account_number
    rent, coffee = str(story.transfers["rent"]), str(story.transfers["coffee"])
    bob = " ".join(story.bob_number[i : i + 4] for i in range(0, 16, 4))
    assert csv_text.splitlines() == [
        f"account,{number}",
        "period,2026-03-03,2026-03-03",
        "opening_balance,1000.00,CNY",
        "date,description,counterparty,amount,balance,currency,transfer_id",
        f"2026-03-03T03:00:00+00:00,Rent March,张三 Zhang San {bob},-15.00,985.00,CNY,{rent}",
        f"2026-03-03T04:00:00+00:00,Coffee beans 100%,张三 Zhang San {bob},-2.50,982.50,CNY,{coffee}",
        "closing_balance,982.50,CNY",
    ]


async def test_statement_closing_balance_matches_the_ledger(
    banking: BankingService, bledger: LedgerService, story: Story
) -> None:
    statement = await banking.statement(story.alice, story.account, date(2026, 3, 1), date(2026, 3, 31))
    assert statement.opening_minor == 0
    assert [line.balance_minor for line in statement.lines] == [100_000, 98_500, 98_250, 108_250, 113_250]
    assert statement.closing_minor == await posted(bledger, story.account) == 113_250
    for first, last in ((date(2026, 3, 2), date(2026, 3, 1)), (date(2025, 1, 1), date(2026, 3, 1))):
        with pytest.raises(DomainError) as caught:
            await banking.statement(story.alice, story.account, first, last)
        assert caught.value.code == "invalid_date_range"


async def test_statement_pdf_reads_back_with_its_lines_and_chinese_names(banking: BankingService, story: Story) -> None:
    statement = await banking.statement(story.alice, story.account, date(2026, 3, 2), date(2026, 3, 4))
    pdf = render_pdf(statement)
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "Opening balance 0.00 CNY" in text
    assert "Closing balance 1132.50 CNY" in text
    for expected in ("Rent March", "-15.00", "985.00", "-2.50", "982.50", "100.00", "1082.50", "50.00", "张三"):
        assert expected in text, expected


async def test_redelivered_ledger_events_do_not_duplicate_history(
    banking: BankingService, bdb: Database, relay: OutboxRelay, story: Story
) -> None:
    from sqlalchemy import text

    async with bdb.transaction() as conn:
        await conn.execute(
            text("UPDATE platform.outbox SET published_at = NULL WHERE topic = 'ledger.transfers_created'")
        )
    await drain(relay)
    page = await banking.history(story.alice, story.account)
    assert amounts(page.items) == [5_000, 10_000, -250, -1_500, 100_000]
