"""The job worker (procrastinate, periodic) expires timed-out holds on its own."""

from __future__ import annotations

import asyncio

import pytest

from smartbank.kernel.ids import new_id
from smartbank.ledger.model import PendingStatus, TransferRequest, TransferType
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime

from .helpers import open_account, open_funding, transfer


@pytest.mark.slow
async def test_worker_expires_a_timed_out_hold(fresh_database) -> None:  # type: ignore[no-untyped-def]
    runtime = Runtime.build(Settings(env="test"), fresh_database())
    ledger = runtime.ledger
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 1_000))
    hold = transfer(alice, bank, 700, type=TransferType.PENDING, timeout_s=1)
    await ledger.submit(hold)
    assert (await ledger.get_transfer(hold.id)).pending_status is PendingStatus.PENDING

    await runtime.start_background(worker=True)
    try:
        for _ in range(60):  # the periodic job runs every 5 s
            if (await ledger.get_transfer(hold.id)).pending_status is PendingStatus.EXPIRED:
                break
            await asyncio.sleep(0.25)
        assert (await ledger.get_transfer(hold.id)).pending_status is PendingStatus.EXPIRED
        account = await ledger.get_account(alice)
        assert (account.balances.debits_pending, account.balances.available(account.kind)) == (0, 1_000)
        late = TransferRequest(id=new_id(), type=TransferType.POST_PENDING, pending_id=hold.id)
        assert (await ledger.submit(late)).code == "pending_transfer_expired"
        assert await ledger.verify() == []
    finally:
        await runtime.close()
