"""The PostgreSQL rate limiter: exact counts across separate engines (as across server processes)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from smartbank.identity.ratelimit import RateLimiter
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings


async def test_two_processes_share_one_counter_and_refuse_exactly_the_excess(
    database_url: str, settings: Settings
) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 10, 0, 15, tzinfo=UTC))
    engines = [Database(create_engine(database_url, settings)) for _ in range(2)]
    try:
        limiters = [RateLimiter(db, clock) for db in engines]
        key = f"ip:{uuid.uuid4()}"
        results = await asyncio.gather(*(limiters[i % 2].hit("test.scope", [(key, 20)], 60) for i in range(30)))
        assert sorted(r for r in results if r is not None) == [45] * 10  # 45 s left in the minute
        assert results.count(None) == 20
        clock.advance(timedelta(seconds=45))  # a new window
        assert await limiters[0].hit("test.scope", [(key, 20)], 60) is None
    finally:
        for db in engines:
            await db.dispose()


async def test_a_request_over_any_of_its_keys_is_refused(database_url: str, settings: Settings) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC))
    db = Database(create_engine(database_url, settings))
    try:
        limiter = RateLimiter(db, clock)
        ip, principal = f"ip:{uuid.uuid4()}", f"principal:{uuid.uuid4()}"
        for _ in range(3):
            assert await limiter.hit("test.keys", [(ip, 100), (principal, 3)], 60) is None
        assert await limiter.hit("test.keys", [(ip, 100), (principal, 3)], 60) == 60
        assert await limiter.hit("test.keys", [(ip, 100)], 60) is None  # the IP alone is still under its limit
        clock.advance(timedelta(days=2))
        assert await limiter.purge() >= 2
    finally:
        await db.dispose()
