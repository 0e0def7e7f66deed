"""Rate limits shared by every server process: fixed-window counters in PostgreSQL.

One statement per check: every key's counter for the current window is incremented with
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, in its own short transaction (a refused request
still counts). A key over its limit gets the seconds left in the window, for ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import text

from smartbank.kernel.clock import Clock
from smartbank.platform.db import Database

MAX_KEYS: Final = 8
#: Counters older than this are deleted by the purge job.
KEEP: Final = timedelta(days=1)


class RateLimiter:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def hit(self, scope: str, limits: Sequence[tuple[str, int]], window_s: int) -> int | None:
        """Count one hit on each ``(key, limit)``; the seconds to wait if any is over its limit, else None."""
        if not limits:
            return None
        if len(limits) > MAX_KEYS or window_s < 1:
            raise ValueError("at most 8 keys and a window of at least one second")
        now = self._clock.now()
        epoch = int(now.timestamp())
        start = epoch - epoch % window_s
        async with self._db.transaction() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        INSERT INTO identity.rate_counters AS c (scope, key, window_start, hits)
                        SELECT :scope, k, :start, 1 FROM unnest(CAST(:keys AS text[])) AS k
                        ON CONFLICT (scope, key, window_start) DO UPDATE SET hits = c.hits + 1
                        RETURNING c.key, c.hits
                        """
                    ),
                    {
                        "scope": scope,
                        "start": datetime.fromtimestamp(start, UTC),
                        "keys": sorted({key[:200] for key, _ in limits}),  # sorted: a fixed lock order
                    },
                )
            ).all()
        hits = {row.key: row.hits for row in rows}
        if any(hits.get(key[:200], 0) > limit for key, limit in limits):
            return max(1, start + window_s - epoch)
        return None

    async def purge(self, limit: int = 10_000) -> int:
        """Delete counters of windows that ended long ago; returns how many."""
        async with self._db.transaction() as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM identity.rate_counters WHERE ctid = ANY(ARRAY("
                    "SELECT ctid FROM identity.rate_counters WHERE window_start < :before LIMIT :limit))"
                ),
                {"before": self._clock.now() - KEEP, "limit": limit},
            )
        return int(getattr(result, "rowcount", 0) or 0)
