"""The transactional outbox.

A use case writes its events with :func:`write_event` inside its own transaction; the relay reads
unpublished rows after commit and hands them to in-process consumers (and, when configured, to an
external stream through a :class:`Publisher`). Delivery is at least once; consumers make it
exactly-once in effect with :func:`claim_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.kernel.ids import new_id
from smartbank.platform.db import Database
from smartbank.platform.logging import get_logger

log = get_logger(__name__)

RELAY_BATCH = 200


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    event_id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    created_at: datetime


Handler = Callable[[Event], Awaitable[None]]


class Publisher(Protocol):
    """Where events go besides in-process consumers (NATS JetStream when configured)."""

    async def publish(self, event: Event) -> None: ...


async def write_event(conn: AsyncConnection, topic: str, payload: dict[str, Any]) -> uuid.UUID:
    event_id = new_id()
    await conn.execute(
        text(
            "INSERT INTO platform.outbox (event_id, topic, payload) VALUES (:event_id, :topic, CAST(:payload AS jsonb))"
        ),
        {"event_id": event_id, "topic": topic, "payload": orjson.dumps(payload).decode()},
    )
    return event_id


async def claim_event(conn: AsyncConnection, consumer: str, event_id: uuid.UUID) -> bool:
    """True the first time ``consumer`` sees ``event_id``; call it in the consumer's transaction."""
    row = await conn.execute(
        text(
            "INSERT INTO platform.consumed_events (consumer, event_id) VALUES (:consumer, :event_id) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"consumer": consumer, "event_id": event_id},
    )
    return row.first() is not None


class OutboxRelay:
    def __init__(self, db: Database, publisher: Publisher | None = None) -> None:
        self._db = db
        self._publisher = publisher
        self._handlers: dict[str, list[Handler]] = {}
        self._wake = asyncio.Event()

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def kick(self) -> None:
        """Ask for a relay pass now (called after a commit that wrote events)."""
        self._wake.set()

    async def relay_once(self, limit: int = RELAY_BATCH) -> int:
        """Deliver up to ``limit`` unpublished events, oldest first. Returns how many."""
        async with self._db.transaction() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT seq, event_id, topic, payload, created_at FROM platform.outbox "
                        "WHERE published_at IS NULL ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
                    ),
                    {"limit": limit},
                )
            ).all()
            for row in rows:
                event = Event(row.seq, row.event_id, row.topic, row.payload, row.created_at)
                for handler in self._handlers.get(event.topic, ()):
                    await handler(event)
                if self._publisher is not None:
                    await self._publisher.publish(event)
            if rows:
                await conn.execute(
                    text("UPDATE platform.outbox SET published_at = now() WHERE seq = ANY(:seqs)"),
                    {"seqs": [row.seq for row in rows]},
                )
        return len(rows)

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                while await self.relay_once() == RELAY_BATCH:
                    pass
            except Exception:
                log.exception("outbox.relay_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
