from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from smartbank.platform.audit import AuditEvent, Outcome, recent, record
from smartbank.platform.db import Database


async def test_record_writes_one_row_in_the_callers_transaction(db: Database) -> None:
    actor = uuid.uuid4()
    async with db.transaction() as conn:
        audit_id = await record(
            conn,
            AuditEvent(
                action="identity.login",
                outcome=Outcome.FAILURE,
                actor_kind="customer",
                actor_id=actor,
                ip="203.0.113.7",
                device="Mozilla/5.0",
                request_id="req-1",
                details={"reason": "bad_password"},
            ),
        )
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT action, outcome, actor_id, host(ip), details FROM platform.audit_log WHERE id = :id"),
                {"id": audit_id},
            )
        ).one()
    assert tuple(row) == ("identity.login", "failure", actor, "203.0.113.7", {"reason": "bad_password"})


async def test_rolled_back_action_leaves_no_audit_row(db: Database) -> None:
    marker = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await record(conn, AuditEvent(action="banking.payment_created", actor_id=marker))
            raise RuntimeError("the use case failed after auditing")
    async with db.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM platform.audit_log WHERE actor_id = :a"), {"a": marker})
        ).scalar_one()
    assert count == 0


async def test_oversized_details_are_refused_before_writing(db: Database) -> None:
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="at most 4096"):
            await record(conn, AuditEvent(action="identity.login", details={"x": "y" * 5000}))


async def test_recent_finds_an_actors_and_a_subjects_rows_newest_first_and_pages(db: Database) -> None:
    customer, other = uuid.uuid4(), uuid.uuid4()
    account = str(uuid.uuid4())
    async with db.transaction() as conn:
        await record(conn, AuditEvent(action="identity.login", actor_kind="customer", actor_id=customer))
        await record(conn, AuditEvent(action="identity.login", actor_kind="customer", actor_id=other))
        await record(
            conn,
            AuditEvent(
                action="banking.account_frozen",
                actor_kind="staff",
                actor_id=other,
                subject_type="account",
                subject_id=account,
            ),
        )
        await record(conn, AuditEvent(action="identity.password_changed", actor_kind="customer", actor_id=customer))

    found = await recent(db, actor_id=customer, subjects=[("account", account)])
    assert [r.action for r in found] == ["identity.password_changed", "banking.account_frozen", "identity.login"]
    assert all(r.actor_id == customer or r.subject_id == account for r in found)
    assert found[0].seq > found[1].seq > found[2].seq

    page = await recent(db, actor_id=customer, subjects=[("account", account)], limit=2)
    rest = await recent(db, actor_id=customer, subjects=[("account", account)], before_seq=page[-1].seq)
    assert [r.id for r in page + rest] == [r.id for r in found]
    assert await recent(db) == []
    assert [r.action for r in await recent(db, actor_id=other, limit=1)] == ["banking.account_frozen"]
