"""Client batches submitted together leave in shared database calls, each keeping its own results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smartbank.kernel.clock import SystemClock
from smartbank.ledger.model import ResultStatus, merge_columns
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database

from .helpers import open_account, open_funding, transfer


@pytest.fixture
async def spied(db: Database) -> AsyncIterator[tuple[LedgerService, list[int]]]:
    """A ledger with one call in flight for batches, and the size of every call it makes."""
    service = LedgerService(db, SystemClock(), batch_concurrency=1)
    sizes: list[int] = []
    real_call = service._batches._call

    async def call(columns: dict[str, list[Any] | None]) -> Any:
        ids = columns["id"]
        assert ids is not None
        sizes.append(len(ids))
        return await real_call(columns)

    service._batches._call = call
    yield service, sizes
    await service.drain()


async def test_batches_submitted_while_a_call_runs_share_the_next_call(
    spied: tuple[LedgerService, list[int]],
) -> None:
    ledger, sizes = spied
    bank = await open_funding(ledger)
    accounts = [await open_account(ledger) for _ in range(4)]
    batches = [[transfer(bank, acc, 100 + i) for acc in accounts] for i in range(5)]

    results = await asyncio.gather(*(ledger.submit_batch(b, atomic=False) for b in batches))

    # The first batch leaves alone; the four that queued behind it leave together.
    assert sizes == [4, 16]
    for batch, answer in zip(batches, results, strict=True):
        assert [r.id for r in answer] == [t.id for t in batch]
        assert [r.amount_minor for r in answer] == [t.amount_minor for t in batch]
        assert all(r.status is ResultStatus.CREATED for r in answer)
    for acc in accounts:
        assert (await ledger.get_account(acc)).balances.credits_posted == sum(100 + i for i in range(5))
    assert await ledger.verify() == []


async def test_a_failing_batch_fails_alone_in_a_shared_call(spied: tuple[LedgerService, list[int]]) -> None:
    ledger, sizes = spied
    bank = await open_funding(ledger)
    alice, bob, carol = [await open_account(ledger) for _ in range(3)]
    first = [transfer(bank, alice, 1)]
    good = [transfer(bank, alice, 500), transfer(bank, bob, 500)]
    # Atomic: carol cannot pay, so the whole chain fails, and nothing of it is written.
    chain = [transfer(bank, carol, 50), transfer(carol, bob, 60)]
    # Not atomic: only the transfer that overdraws fails.
    loose = [transfer(bank, bob, 7), transfer(alice, carol, 10_000), transfer(bank, carol, 3)]

    answers = await asyncio.gather(
        ledger.submit_batch(first, atomic=False),
        ledger.submit_batch(good, atomic=False),
        ledger.submit_batch(chain, atomic=True),
        ledger.submit_batch(loose, atomic=False),
    )

    assert sizes == [1, 7]
    assert [r.status for r in answers[1]] == [ResultStatus.CREATED] * 2
    assert [r.code for r in answers[2]] == ["linked_event_failed", "exceeds_credits"]
    assert [r.code for r in answers[3]] == [None, "exceeds_credits", None]
    assert (await ledger.get_account(carol)).balances.credits_posted == 3
    assert (await ledger.get_account(bob)).balances.credits_posted == 507
    assert await ledger.verify() == []


async def test_batches_sharing_an_id_never_share_a_call(spied: tuple[LedgerService, list[int]]) -> None:
    ledger, sizes = spied
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    first = [transfer(bank, alice, 1)]
    original = [transfer(bank, alice, 200)]
    retry = [transfer(bank, alice, 200, id=original[0].id)]
    conflicting = [transfer(bank, alice, 300, id=original[0].id)]

    answers = await asyncio.gather(
        ledger.submit_batch(first, atomic=False),
        ledger.submit_batch(original, atomic=False),
        ledger.submit_batch(retry, atomic=False),
        ledger.submit_batch(conflicting, atomic=False),
    )

    assert sizes == [1, 1, 1, 1]
    assert answers[1][0].status is ResultStatus.CREATED
    assert answers[2][0].status is ResultStatus.EXISTS
    assert answers[3][0].code == "id_already_exists_with_different_fields"
    assert (await ledger.get_account(alice)).balances.credits_posted == 201


def test_merged_columns_fill_a_column_only_some_batches_send() -> None:
    a = {"id": [1, 2], "pending": None, "linked": None, "metadata": None}
    b = {"id": [3], "pending": ["p"], "linked": [False], "metadata": None}

    merged = merge_columns([(a, 2), (b, 1)])

    assert merged == {"id": [1, 2, 3], "pending": [None, None, "p"], "linked": [False, False, False], "metadata": None}
    assert merge_columns([(a, 2)]) is a
