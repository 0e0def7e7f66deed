"""Ledger use cases through the service layer, against PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountStatus, PendingStatus, ResultStatus, TransferRequest, TransferType
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database

from .helpers import open_account, open_funding, transfer


async def test_posted_transfer_moves_money_and_replay_returns_original(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    request = transfer(bank, alice, 10_000)

    first = await ledger.submit(request)
    again = await ledger.submit(request)

    assert first.status is ResultStatus.CREATED
    assert again.status is ResultStatus.EXISTS
    assert again.created_at == first.created_at
    account = await ledger.get_account(alice)
    assert account.balances.credits_posted == 10_000
    assert account.balances.available(account.kind) == 10_000


async def test_same_id_with_other_fields_is_a_conflict_and_writes_nothing(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    request = transfer(bank, alice, 500)
    await ledger.submit(request)

    changed = transfer(bank, alice, 501, id=request.id)
    result = await ledger.submit(changed)

    assert result.status is ResultStatus.FAILED
    assert result.code == "id_already_exists_with_different_fields"
    assert (await ledger.get_account(alice)).balances.credits_posted == 500


async def test_no_overdraft_account_refuses_to_go_below_zero(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    bob = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 1_000))

    refused = await ledger.submit(transfer(alice, bob, 1_001))
    allowed = await ledger.submit(transfer(alice, bob, 1_000))

    assert refused.code == "exceeds_credits"
    assert allowed.status is ResultStatus.CREATED
    alice_account = await ledger.get_account(alice)
    assert alice_account.balances.posted(alice_account.kind) == 0


async def test_overdraft_limit_allows_exactly_the_limit(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger, limit_minor=300)

    assert (await ledger.submit(transfer(alice, bank, 301))).code == "exceeds_credits"
    assert (await ledger.submit(transfer(alice, bank, 300))).status is ResultStatus.CREATED


async def test_pending_post_partial_then_second_post_refused(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    shop = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 1_000))
    hold = transfer(alice, shop, 800, type=TransferType.PENDING, timeout_s=60)
    assert (await ledger.submit(hold)).status is ResultStatus.CREATED

    account = await ledger.get_account(alice)
    assert account.balances.debits_pending == 800
    assert account.balances.available(account.kind) == 200
    # The hold counts against the limit.
    assert (await ledger.submit(transfer(alice, shop, 201))).code == "exceeds_credits"

    post = TransferRequest(id=new_id(), type=TransferType.POST_PENDING, pending_id=hold.id, amount_minor=500)
    assert (await ledger.submit(post)).amount_minor == 500
    second = TransferRequest(id=new_id(), type=TransferType.VOID_PENDING, pending_id=hold.id)
    assert (await ledger.submit(second)).code == "pending_transfer_already_posted"

    account = await ledger.get_account(alice)
    assert (account.balances.debits_pending, account.balances.debits_posted) == (0, 500)
    assert (await ledger.get_transfer(hold.id)).pending_status is PendingStatus.POSTED
    assert await ledger.verify() == []


async def test_expiry_job_voids_timed_out_holds(db: Database) -> None:
    clock = FrozenClock()
    ledger = LedgerService(db, clock)
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 1_000))
    hold = transfer(alice, bank, 1_000, type=TransferType.PENDING, timeout_s=30)
    await ledger.submit(hold)

    clock.advance(timedelta(seconds=29))
    assert await ledger.expire_pending() == 0
    clock.advance(timedelta(seconds=1))
    post_late = TransferRequest(id=new_id(), type=TransferType.POST_PENDING, pending_id=hold.id)
    assert (await ledger.submit(post_late)).code == "pending_transfer_expired"
    assert await ledger.expire_pending() >= 1

    assert (await ledger.get_transfer(hold.id)).pending_status is PendingStatus.EXPIRED
    account = await ledger.get_account(alice)
    assert account.balances.debits_pending == 0
    assert account.balances.available(account.kind) == 1_000
    assert (await ledger.submit(post_late)).code == "pending_transfer_expired"


async def test_atomic_batch_fails_as_one(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    bob = await open_account(ledger)
    batch = [transfer(bank, alice, 100), transfer(alice, bob, 50), transfer(alice, bob, 51)]

    results = await ledger.submit_batch(batch, atomic=True)

    assert [r.code for r in results] == ["linked_event_failed", "linked_event_failed", "exceeds_credits"]
    assert (await ledger.get_account(alice)).balances.credits_posted == 0
    with pytest.raises(DomainError) as missing:
        await ledger.get_transfer(batch[0].id)
    assert missing.value.code == "transfer_not_found"


async def test_independent_batch_keeps_the_good_ones(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    bob = await open_account(ledger)
    batch = [transfer(bank, alice, 100), transfer(alice, bob, 150), transfer(alice, bob, 100)]

    results = await ledger.submit_batch(batch, atomic=False)

    assert [r.status for r in results] == [ResultStatus.CREATED, ResultStatus.FAILED, ResultStatus.CREATED]
    assert results[1].code == "exceeds_credits"
    assert (await ledger.get_account(bob)).balances.credits_posted == 100


async def test_frozen_account_refuses_debits_and_credits(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 100))
    await ledger.set_account_status(alice, AccountStatus.FROZEN)

    assert (await ledger.submit(transfer(alice, bank, 10))).code == "debit_account_frozen"
    assert (await ledger.submit(transfer(bank, alice, 10))).code == "credit_account_frozen"
    await ledger.set_account_status(alice, AccountStatus.OPEN)
    assert (await ledger.submit(transfer(alice, bank, 10))).status is ResultStatus.CREATED


async def test_currency_mismatch_and_unknown_accounts(ledger: LedgerService) -> None:
    cny = await open_funding(ledger, "CNY")
    usd = await open_account(ledger, currency="USD")
    assert (await ledger.submit(transfer(cny, usd, 10))).code == "currency_mismatch"
    assert (await ledger.submit(transfer(new_id(), usd, 10, currency="USD"))).code == "debit_account_not_found"
    assert (await ledger.submit(transfer(cny, new_id(), 10))).code == "credit_account_not_found"


async def test_reversal_cannot_exceed_the_original(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    original = transfer(bank, alice, 1_000)
    await ledger.submit(original)

    def reversal(amount: int) -> TransferRequest:
        return replace(transfer(alice, bank, amount), reversal_of=original.id)

    assert (await ledger.submit(reversal(600))).status is ResultStatus.CREATED
    assert (await ledger.submit(reversal(401))).code == "reversal_exceeds_original"
    assert (await ledger.submit(reversal(400))).status is ResultStatus.CREATED
    assert await ledger.verify() == []


async def test_account_transfers_pages_newest_first(ledger: LedgerService) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    ids = []
    for amount in range(1, 8):
        request = transfer(bank, alice, amount)
        ids.append(request.id)
        await ledger.submit(request)

    first = await ledger.account_transfers(alice, limit=3)
    second = await ledger.account_transfers(alice, limit=3, cursor=first.next_cursor)
    third = await ledger.account_transfers(alice, limit=3, cursor=second.next_cursor)

    seen = [t.id for t in first.items + second.items + third.items]
    assert seen == list(reversed(ids))
    assert third.next_cursor is None


async def test_order_inside_a_batch_decides_what_an_empty_account_can_pay(ledger: LedgerService) -> None:
    """Credits earlier in a batch fund debits later in it; not the other way round."""
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    bob = await open_account(ledger)

    funded_first = await ledger.submit_batch([transfer(bank, alice, 100), transfer(alice, bob, 100)], atomic=False)
    spent_first = await ledger.submit_batch([transfer(alice, bob, 100), transfer(bank, alice, 100)], atomic=False)

    assert [r.status for r in funded_first] == [ResultStatus.CREATED, ResultStatus.CREATED]
    assert [r.code for r in spent_first] == ["exceeds_credits", None]
    account = await ledger.get_account(alice)
    assert account.balances.available(account.kind) == 100
    assert await ledger.verify() == []


async def test_the_database_fails_a_chain_left_open_even_when_python_is_bypassed(ledger: LedgerService) -> None:
    """Python refuses a batch that ends inside a linked chain; the transfer function is the backstop."""
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    batch = [replace(transfer(bank, alice, 100), linked=True), replace(transfer(bank, alice, 200), linked=True)]

    results = await ledger._execute(batch)  # past validate_batch, straight to the database

    assert [(r.status, r.code) for r in results] == [(ResultStatus.FAILED, "linked_event_chain_open")] * 2
    assert (await ledger.get_account(alice)).balances.credits_posted == 0


async def test_a_batch_whose_total_overflows_an_account_names_the_transfer(ledger: LedgerService) -> None:
    """Each transfer fits, their sum on the bank's debit side does not: the fast path's bigint total
    stops, and the general path says which transfer would overflow the account."""
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    bob = await open_account(ledger)
    half = 2**62 + 1

    results = await ledger.submit_batch([transfer(bank, alice, half), transfer(bank, bob, half)], atomic=False)

    assert [(r.status, r.code) for r in results] == [
        (ResultStatus.CREATED, None),
        (ResultStatus.FAILED, "overflows_debits"),
    ]
    assert (await ledger.get_account(bank)).balances.debits_posted == half
    assert (await ledger.get_account(bob)).balances.credits_posted == 0
    assert await ledger.verify() == []
