"""Many clients at once, one hot account, accounts near zero, retries of the same ids."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

import psycopg
import pytest
from prometheus_client import REGISTRY

from smartbank.kernel.clock import SystemClock
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind, AccountSpec, ResultStatus, TransferRequest
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings

CLIENTS = 8
TRANSFERS_PER_CLIENT = 150


@pytest.mark.slow
async def test_concurrent_clients_keep_every_invariant(fresh_database) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database()
    db = Database(create_engine(url, Settings(env="test", db_pool_size=CLIENTS + 2)))
    # One service per client: each merges only its own requests, so clients race in the database.
    services = [LedgerService(db, SystemClock(), inflight_max=2) for _ in range(CLIENTS)]
    setup = services[0]
    bank = AccountSpec(id=new_id(), currency="CNY", kind=AccountKind.ASSET, code=1)
    hot = AccountSpec(
        id=new_id(), currency="CNY", kind=AccountKind.LIABILITY, code=2, debits_must_not_exceed_credits=True
    )
    customers = [
        AccountSpec(
            id=new_id(), currency="CNY", kind=AccountKind.LIABILITY, code=3, debits_must_not_exceed_credits=True
        )
        for _ in range(40)
    ]
    await setup.open_accounts([bank, hot, *customers])
    # Fund each customer with a little, so that many transfers hit the no-overdraft limit.
    funding = [
        TransferRequest(
            id=new_id(), debit_account_id=bank.id, credit_account_id=c.id, amount_minor=500, currency="CNY", code=1
        )
        for c in customers
    ]
    assert all(r.ok for r in await setup.submit_batch(funding, atomic=True))

    rng = random.Random(7)
    plans: list[list[TransferRequest]] = []
    for _ in range(CLIENTS):
        plan = []
        for _ in range(TRANSFERS_PER_CLIENT):
            a, b = rng.sample(customers, 2)
            debit, credit = a.id, b.id
            roll = rng.random()
            if roll < 0.2:  # the hot account takes a share of the traffic, both ways
                debit, credit = (hot.id, b.id) if rng.random() < 0.5 else (a.id, hot.id)
            plan.append(
                TransferRequest(
                    id=new_id(),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=rng.randint(1, 300),
                    currency="CNY",
                    code=9,
                )
            )
        plans.append(plan)
    # Every client also retries a slice of another client's ids at the same time.
    for i in range(CLIENTS):
        plans[i].extend(plans[(i + 1) % CLIENTS][:20])
        rng.shuffle(plans[i])

    deadlocks_before = REGISTRY.get_sample_value("smartbank_ledger_retries_total", {"sqlstate": "40P01"}) or 0.0
    outcomes: dict[uuid.UUID, list[ResultStatus]] = {}
    codes: Counter[str] = Counter()

    async def client(service: LedgerService, plan: list[TransferRequest]) -> None:
        for start in range(0, len(plan), 4):
            chunk = plan[start : start + 4]
            results = await asyncio.gather(*(service.submit(r) for r in chunk))
            for request, result in zip(chunk, results, strict=True):
                outcomes.setdefault(request.id, []).append(result.status)
                codes[result.code or result.status.value] += 1

    await asyncio.gather(*(client(s, p) for s, p in zip(services, plans, strict=True)))

    # Rows are locked in id order on every path these transfers take: no call ever deadlocked.
    deadlocks = REGISTRY.get_sample_value("smartbank_ledger_retries_total", {"sqlstate": "40P01"}) or 0.0
    assert deadlocks == deadlocks_before

    # Some transfers were refused for lack of funds, most went through, none failed otherwise.
    assert codes["created"] > CLIENTS * TRANSFERS_PER_CLIENT // 3
    assert codes["exceeds_credits"] > 0
    assert set(codes) <= {"created", "exists", "exceeds_credits"}
    # Each id succeeded at most once as "created"; a retry of a created id is "exists", never a second posting.
    for request_id, statuses in outcomes.items():
        assert statuses.count(ResultStatus.CREATED) <= 1, request_id
    created_ids = [i for i, s in outcomes.items() if ResultStatus.CREATED in s]

    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM ledger.transfers WHERE id = ANY(%s)", (created_ids,)
        ).fetchone()
        negative = conn.execute(
            "SELECT count(*) FROM ledger.accounts WHERE debits_must_not_exceed_credits "
            "AND debits_posted + debits_pending > credits_posted"
        ).fetchone()
    assert stored == (len(created_ids), len(created_ids))
    assert negative == (0,)
    assert await setup.verify() == []
    for service in services:
        await service.drain()
    await db.dispose()
