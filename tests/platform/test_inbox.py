"""The in-app inbox: one notice per cause, only ever the recipient's, no secrets in it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.platform.db import Database
from smartbank.platform.inbox import MAX_UNREAD_COUNTED, Inbox, check_params, notify

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


async def write(db: Database, recipient: uuid.UUID, key: str, kind: str = "test.happened") -> uuid.UUID | None:
    async with db.transaction() as conn:
        return await notify(conn, recipient, kind, {"amount_minor": 100, "currency": "CNY"}, dedupe_key=key, at=NOW)


async def test_a_cause_notifies_once_and_each_recipient_sees_only_their_own(db: Database) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    inbox = Inbox(db, FrozenClock(NOW + timedelta(minutes=1)))
    first = await write(db, alice, "payment:1")
    assert first is not None
    assert await write(db, alice, "payment:1") is None  # delivered again: nothing new
    assert await write(db, bob, "payment:1") is not None  # the same cause, another recipient
    for n in range(2, 6):
        await write(db, alice, f"payment:{n}")

    page = await inbox.page(alice, limit=3)
    assert len(page.items) == 3 and page.next_cursor is not None
    rest = await inbox.page(alice, cursor=page.next_cursor, limit=3)
    assert [item.id for item in rest.items][-1] == first and rest.next_cursor is None
    assert {item.recipient_id for item in page.items + rest.items} == {alice}
    assert (await inbox.unread_count(alice), await inbox.unread_count(bob)) == (5, 1)

    # Bob cannot mark Alice's notices, not even by naming one.
    with pytest.raises(DomainError) as caught:
        await inbox.mark_read(bob, first)
    assert caught.value.code == "not_found"
    assert await inbox.unread_count(alice) == 5
    # Up to the oldest marks one; all marks the rest; Bob's stay unread.
    assert await inbox.mark_read(alice, first) == 1
    assert await inbox.mark_read(alice) == 4
    assert (await inbox.unread_count(alice), await inbox.unread_count(bob)) == (0, 1)
    read = (await inbox.page(alice)).items
    assert {item.read_at for item in read} == {NOW + timedelta(minutes=1)}

    with pytest.raises(DomainError):
        await inbox.page(alice, cursor="not-ours")
    with pytest.raises(DomainError):
        await inbox.page(alice, limit=101)


async def test_the_unread_count_stops_at_its_cap(db: Database) -> None:
    carol = uuid.uuid4()
    for n in range(MAX_UNREAD_COUNTED + 3):
        await write(db, carol, f"k{n}")
    assert await Inbox(db, FrozenClock(NOW)).unread_count(carol) == MAX_UNREAD_COUNTED


def test_parameters_that_look_secret_or_too_big_are_refused() -> None:
    for bad in ({"otp": "123456"}, {"reset_token": "x"}, {"Password": "p"}, {"note": 1.5}, {"n": "x" * 3000}):
        with pytest.raises(ValueError):
            check_params(bad)  # type: ignore[arg-type]
    assert check_params({"failure_code": "insufficient_funds", "amount_minor": 5}) == (
        b'{"amount_minor":5,"failure_code":"insufficient_funds"}'
    )


async def test_a_bad_kind_or_key_is_a_writers_bug(db: Database) -> None:
    async with db.transaction() as conn:
        for kind, key in (("NoDots", "k"), ("a.b", ""), ("a.b", "k" * 201)):
            with pytest.raises(ValueError):
                await notify(conn, uuid.uuid4(), kind, {}, dedupe_key=key, at=NOW)
