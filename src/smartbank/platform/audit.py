"""The audit log: who did what, when, from where — written in the same transaction as the action.

Use cases call :func:`record` with their own connection, so an audited action and its audit row
commit or roll back together. Rows are append-only. Never put a password, one-time code, token or
other secret in ``details``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.kernel.ids import new_id

MAX_DETAILS_BYTES: Final = 4096


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    #: Dotted verb, e.g. ``identity.login``, ``identity.mfa_enrolled``, ``banking.payment_created``.
    action: str
    outcome: Outcome = Outcome.SUCCESS
    #: ``customer``, ``staff``, ``merchant``, ``system`` or ``anonymous``.
    actor_kind: str = "system"
    actor_id: uuid.UUID | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    ip: str | None = None
    device: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def record(conn: AsyncConnection, event: AuditEvent) -> uuid.UUID:
    """Append one audit row inside the caller's transaction; returns its id."""
    details = orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS)
    if len(details) > MAX_DETAILS_BYTES:
        raise ValueError(f"audit details are {len(details)} bytes; at most {MAX_DETAILS_BYTES}")
    audit_id = new_id()
    await conn.execute(
        text(
            """
            INSERT INTO platform.audit_log (id, action, outcome, actor_kind, actor_id, subject_type, subject_id,
                                            ip, device, request_id, details)
            VALUES (:id, :action, :outcome, :actor_kind, :actor_id, :subject_type, :subject_id,
                    :ip, :device, :request_id, CAST(:details AS jsonb))
            """
        ),
        {
            "id": audit_id,
            "action": event.action,
            "outcome": event.outcome.value,
            "actor_kind": event.actor_kind,
            "actor_id": event.actor_id,
            "subject_type": event.subject_type,
            "subject_id": event.subject_id,
            "ip": event.ip,
            "device": event.device[:300] if event.device else None,
            "request_id": event.request_id,
            "details": details.decode(),
        },
    )
    return audit_id
