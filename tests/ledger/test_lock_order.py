"""Lock order of the transfer function: the waits concurrent calls can get into, and their end.

The fast path inserts a call's transfers before it locks the call's accounts; the general path locks
the accounts before it inserts. These tests drive both into the one overlap where that could form a
cycle, and check the history order a batch is written in.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
from prometheus_client import REGISTRY

from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind, AccountSpec, ResultStatus, TransferRequest, TransferType
from smartbank.ledger.service import LedgerService

from .helpers import open_account, open_funding, transfer


def _retries(sqlstate: str) -> float:
    return REGISTRY.get_sample_value("smartbank_ledger_retries_total", {"sqlstate": sqlstate}) or 0.0


async def _lock_waiters(conn: psycopg.AsyncConnection[tuple[int]], at_least: int) -> None:
    """Wait until ``at_least`` backends of this database wait on a lock (up to 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).fetchone()
        if row is not None and row[0] >= at_least:
            return
        assert time.monotonic() < deadline, f"fewer than {at_least} backends ever waited on a lock"
        await asyncio.sleep(0.02)


async def test_a_general_path_call_never_waits_on_an_insert_while_holding_accounts(
    database_url: str, ledger: LedgerService
) -> None:
    """The overlap: a fast-path call A has inserted transfer X and waits for an account that a
    general-path call G holds; G then comes to insert X too. Were G to wait for A's insert, the two
    would wait on each other until PostgreSQL's deadlock detector killed one (after a second). G gives
    up its wait within a short lock timeout instead, and its retry finds X committed."""
    bank = await open_funding(ledger)
    # Ids chosen so that E sorts last: G locks C, D and F, then waits for E, which H holds.
    ids = sorted(new_id() for _ in range(4))
    c, d, f, e = ids
    for account in (c, d, f, e):
        await ledger.open_account(
            AccountSpec(
                id=account,
                currency="CNY",
                kind=AccountKind.LIABILITY,
                code=100,
                debits_must_not_exceed_credits=True,
            )
        )
    funding = [transfer(bank, account, 10_000) for account in (c, d, f, e)]
    assert all(r.ok for r in await ledger.submit_batch(funding, atomic=True))
    hold = transfer(f, e, 1_000, type=TransferType.PENDING)
    assert (await ledger.submit(hold)).ok

    x = transfer(d, c, 250)
    void = TransferRequest(id=new_id(), type=TransferType.VOID_PENDING, pending_id=hold.id)
    deadlocks, timeouts = _retries("40P01"), _retries("55P03")

    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(database_url) as holder,
    ):
        await holder.execute("SELECT 1 FROM ledger.accounts WHERE id = %s FOR NO KEY UPDATE", (e,))
        # G: a post or void sends a batch straight to the general path, which locks C, D, F and waits for E.
        g = asyncio.create_task(ledger.submit_batch([x, void], atomic=False))
        await _lock_waiters(watcher, 1)
        # A: the fast path inserts X, then waits for C and D, which G holds.
        a = asyncio.create_task(ledger.submit_batch([x], atomic=False))
        await _lock_waiters(watcher, 2)
        await holder.rollback()  # G goes on: it finds X new, and comes to insert it
        a_results, g_results = await asyncio.wait_for(asyncio.gather(a, g), timeout=30)

    assert [r.status for r in a_results] == [ResultStatus.CREATED]
    assert [r.status for r in g_results] == [ResultStatus.EXISTS, ResultStatus.CREATED]
    assert _retries("40P01") == deadlocks  # no deadlock was ever detected
    assert _retries("55P03") == timeouts + 1  # G gave up its wait once, and its retry went through
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM ledger.transfers WHERE id = %s", (x.id,))).fetchone()
    assert row == (1,)
    assert await ledger.verify() == []


async def test_a_batch_keeps_its_order_in_history_whatever_its_ids(database_url: str, ledger: LedgerService) -> None:
    """Transfers are inserted in id order (so that concurrent calls meet shared ids in one order),
    but their history position follows the batch, on the fast path and on the general path."""
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    for general in (False, True):
        batch = [transfer(bank, alice, 100 + k) for k in range(6)]
        batch.sort(key=lambda r: r.id, reverse=True)  # ids against the batch order
        if general:  # a failing member sends the batch to the general path; the others still go through
            batch.insert(3, transfer(alice, bank, 10**12))
        results = await ledger.submit_batch(batch, atomic=False)
        created = [r.id for r, res in zip(batch, results, strict=True) if res.status is ResultStatus.CREATED]
        assert len(created) == 6
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            rows = await (
                await conn.execute("SELECT id FROM ledger.transfers WHERE id = ANY(%s) ORDER BY seq", (created,))
            ).fetchall()
        assert [row[0] for row in rows] == created, "general path" if general else "fast path"
