"""The outbox: events written with the change, delivered after commit, consumed once."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from smartbank.kernel.clock import SystemClock
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.outbox import Event, OutboxRelay, claim_event, write_event
from smartbank.platform.settings import Settings

from ..ledger.helpers import open_account, open_funding, transfer


async def test_ledger_events_reach_consumers_once(fresh_database) -> None:  # type: ignore[no-untyped-def]
    db = Database(create_engine(fresh_database(), Settings(env="test")))
    relay = OutboxRelay(db)
    seen: list[uuid.UUID] = []
    applied: list[uuid.UUID] = []

    async def consumer(event: Event) -> None:
        assert event.payload["count"] == len(event.payload["id"]) == len(event.payload["amount_minor"])
        seen.extend(uuid.UUID(i) for i in event.payload["id"])
        async with db.transaction() as conn:
            if await claim_event(conn, "test-consumer", event.event_id):
                applied.append(event.event_id)

    relay.subscribe("ledger.transfers_created", consumer)
    ledger = LedgerService(db, SystemClock(), after_commit=relay.kick)
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    requests = [transfer(bank, alice, n) for n in (10, 20, 30)]
    await ledger.submit_batch(requests, atomic=True)
    failed = await ledger.submit(transfer(alice, bank, 1_000_000))
    assert failed.code == "exceeds_credits"

    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0
    assert seen == [r.id for r in requests]
    assert len(applied) == 1
    # A redelivery (say, after a crash before the row was marked) is recognised by the consumer.
    async with db.transaction() as conn:
        assert not await claim_event(conn, "test-consumer", applied[0])
    await db.dispose()


async def test_event_written_in_a_rolled_back_transaction_is_never_seen(fresh_database) -> None:  # type: ignore[no-untyped-def]
    db = Database(create_engine(fresh_database(), Settings(env="test")))

    class Boom(Exception):
        pass

    try:
        async with db.transaction() as conn:
            await write_event(conn, "test.thing", {"n": 1})
            raise Boom
    except Boom:
        pass
    async with db.transaction() as conn:
        await write_event(conn, "test.thing", {"n": 2})
    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT payload FROM platform.outbox WHERE topic = 'test.thing'"))).all()
    assert [r.payload for r in rows] == [{"n": 2}]
    await db.dispose()
