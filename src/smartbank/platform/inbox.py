"""The in-app inbox: short notices a principal reads in the app ("payment sent", "new sign-in").

Domains write a notice with :func:`notify` inside the transaction of the use case (or consumer) that
caused it, so a notice exists exactly when its cause committed. Each notice carries a dedupe key
chosen by the writer from its cause (``payment:<id>:finished``, ``audit:<id>``): the pair
(recipient, key) is unique, so an event delivered twice notifies once.

A notice holds a ``kind`` (``banking.payment_sent``) and a few plain parameters (amounts in minor
units, ids, names); the app turns them into a sentence in the reader's language. Never put a
password, one-time code, token or other secret in the parameters: :func:`check_params` refuses keys
named like one, and the table keeps them small.

Every read and write takes the recipient and touches only that recipient's rows.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.ids import new_id
from smartbank.platform.db import Database

MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 20
#: The unread count stops here (a badge shows "99+").
MAX_UNREAD_COUNTED: Final = 100
MAX_PARAMS: Final = 16
MAX_PARAMS_BYTES: Final = 2048
MAX_DEDUPE_KEY: Final = 200
KIND_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Parameter names that would suggest a secret: refused outright.
SECRET_WORDS: Final = ("password", "secret", "token", "code", "otp", "pin", "cvv")

Param = str | int | bool | None

COLUMNS: Final = "seq, id, recipient_id, kind, params, created_at, read_at"


@dataclass(frozen=True, slots=True)
class Notification:
    seq: int
    id: uuid.UUID
    recipient_id: uuid.UUID
    kind: str
    params: dict[str, Param]
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


@dataclass(frozen=True, slots=True)
class NotificationPage:
    items: list[Notification]
    next_cursor: str | None


def check_params(params: Mapping[str, Param]) -> bytes:
    """The parameters as JSON, or ``ValueError`` (a writer's bug, not a caller's input)."""
    if len(params) > MAX_PARAMS:
        raise ValueError(f"a notification takes at most {MAX_PARAMS} parameters")
    for name, value in params.items():
        lowered = name.lower()
        if any(word in lowered for word in SECRET_WORDS) and lowered not in {"failure_code"}:
            raise ValueError(f"notification parameter {name!r} looks like a secret")
        if value is not None and type(value) not in (str, int, bool):
            raise ValueError(f"notification parameter {name!r} must be text, a number, true/false or null")
    encoded = orjson.dumps(dict(params), option=orjson.OPT_SORT_KEYS)
    if len(encoded) > MAX_PARAMS_BYTES:
        raise ValueError(f"notification parameters are at most {MAX_PARAMS_BYTES} bytes")
    return encoded


async def notify(
    conn: AsyncConnection,
    recipient_id: uuid.UUID,
    kind: str,
    params: Mapping[str, Param],
    *,
    dedupe_key: str,
    at: datetime,
) -> uuid.UUID | None:
    """Write one notice inside the caller's transaction. Returns its id, or None when a notice with
    this ``dedupe_key`` was already written for this recipient (nothing is written then)."""
    if not KIND_PATTERN.match(kind) or len(kind) > 64:
        raise ValueError(f"bad notification kind {kind!r}")
    if not 1 <= len(dedupe_key) <= MAX_DEDUPE_KEY:
        raise ValueError("a dedupe key is 1..200 characters")
    if at.tzinfo is None:
        raise ValueError("a notification time needs a time zone")
    encoded = check_params(params)
    row = (
        await conn.execute(
            text(
                """
                INSERT INTO platform.notifications (id, recipient_id, kind, params, dedupe_key, created_at)
                VALUES (:id, :recipient, :kind, CAST(:params AS jsonb), :key, :at)
                ON CONFLICT (recipient_id, dedupe_key) DO NOTHING RETURNING id
                """
            ),
            {
                "id": new_id(),
                "recipient": recipient_id,
                "kind": kind,
                "params": encoded.decode(),
                "key": dedupe_key,
                "at": at,
            },
        )
    ).first()
    return None if row is None else uuid.UUID(str(row.id))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"n{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seq = int(raw[1:]) if raw.startswith("n") else 0
    except (ValueError, UnicodeDecodeError):
        seq = 0
    if not 0 < seq < 2**63:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "cursor is not one this API gave out", field="cursor")
    return seq


def _from_row(row: Any) -> Notification:
    return Notification(
        seq=row.seq,
        id=row.id,
        recipient_id=row.recipient_id,
        kind=row.kind,
        params=dict(row.params),
        created_at=row.created_at,
        read_at=row.read_at,
    )


class Inbox:
    """Reads and marks a recipient's notices (the writes come from :func:`notify`)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def page(
        self, recipient_id: uuid.UUID, *, cursor: str | None = None, limit: int = DEFAULT_PAGE
    ) -> NotificationPage:
        """Newest first, at most ``limit`` (1..100); ``next_cursor`` asks for the older ones."""
        if not 1 <= limit <= MAX_PAGE:
            raise DomainError(ErrorCode.VALIDATION_ERROR, f"limit is 1..{MAX_PAGE}", field="limit")
        before = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {COLUMNS} FROM platform.notifications WHERE recipient_id = :recipient"
                        f"{' AND seq < :before' if before is not None else ''} ORDER BY seq DESC LIMIT :limit"
                    ),
                    {"recipient": recipient_id, "before": before, "limit": limit + 1},
                )
            ).all()
        items = [_from_row(row) for row in rows[:limit]]
        return NotificationPage(items, encode_cursor(items[-1].seq) if len(rows) > limit else None)

    async def unread_count(self, recipient_id: uuid.UUID) -> int:
        """Unread notices, counted up to :data:`MAX_UNREAD_COUNTED`."""
        async with self._db.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM (SELECT 1 FROM platform.notifications"
                            " WHERE recipient_id = :recipient AND read_at IS NULL LIMIT :cap) AS unread"
                        ),
                        {"recipient": recipient_id, "cap": MAX_UNREAD_COUNTED},
                    )
                ).scalar_one()
            )

    async def mark_read(self, recipient_id: uuid.UUID, up_to: uuid.UUID | None = None) -> int:
        """Mark the recipient's notices read: all of them, or those up to and including ``up_to``
        (one of theirs; anyone else's is ``not_found``). Returns how many changed."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            bound: int | None = None
            if up_to is not None:
                bound = (
                    await conn.execute(
                        text("SELECT seq FROM platform.notifications WHERE id = :id AND recipient_id = :recipient"),
                        {"id": up_to, "recipient": recipient_id},
                    )
                ).scalar_one_or_none()
                if bound is None:
                    raise DomainError(ErrorCode.NOT_FOUND, "no such notification")
            result = await conn.execute(
                text(
                    "UPDATE platform.notifications SET read_at = :now WHERE recipient_id = :recipient"
                    f" AND read_at IS NULL{' AND seq <= :bound' if bound is not None else ''}"
                ),
                {"now": now, "recipient": recipient_id, "bound": bound},
            )
        return int(getattr(result, "rowcount", 0) or 0)
