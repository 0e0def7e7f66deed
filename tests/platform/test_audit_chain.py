"""The audit log's tamper evidence: every change, deletion or insertion made in SQL is named.

Each test has a database of its own, since a tampered log fails verification for everyone.
The append-only triggers are bypassed the way an attacker with superuser access would
(``session_replication_role = replica``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from smartbank.platform import audit
from smartbank.platform.audit import AuditEvent, Outcome, chain_pending, record, verify
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings, get_settings


@pytest.fixture
async def own_db(fresh_database: Callable[[], str], settings: Settings) -> AsyncIterator[tuple[Database, str]]:
    url = fresh_database()
    database = Database(create_engine(url, settings))
    yield database, url
    await database.dispose()


async def write_rows(db: Database, n: int) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        async with db.transaction() as conn:
            ids.append(
                await record(
                    conn,
                    AuditEvent(
                        action="identity.login",
                        outcome=Outcome.SUCCESS if i % 2 else Outcome.FAILURE,
                        actor_kind="customer",
                        actor_id=uuid.uuid4(),
                        ip="2001:DB8::1" if i == 1 else "203.0.113.7",
                        device="Mozilla/5.0",
                        request_id=f"req-{i}",
                        details={"n": i, "nested": {"b": [1, 2.5, None], "a": "é"}},
                    ),
                )
            )
    return ids


async def settle(db: Database, rows: int) -> None:
    """Chain until ``rows`` rows are linked. Transaction ids are cluster-wide, so a transaction
    running in another database of the same server briefly holds chaining back."""
    for _ in range(200):
        await chain_pending(db)
        async with db.connect() as conn:
            if (await conn.execute(text("SELECT count(*) FROM platform.audit_chain"))).scalar_one() >= rows:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {rows} rows chained after 20 s")


def tamper(url: str, sql: str, *params: object) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql, params)  # type: ignore[arg-type]


def seq_of(url: str, audit_id: uuid.UUID) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT seq FROM platform.audit_log WHERE id = %s", (audit_id,)).fetchone()
        assert row is not None
        return int(row[0])


async def test_untouched_log_verifies(own_db: tuple[Database, str]) -> None:
    db, _ = own_db
    await write_rows(db, 5)
    await settle(db, 5)
    report = await verify(db)
    assert (report.ok, report.rows, report.chained, report.problems) == (True, 5, 5, [])
    await write_rows(db, 2)
    await settle(db, 7)
    assert (await verify(db)).chained == 7  # the chain grows; earlier links are untouched


async def test_a_changed_row_is_named(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    ids = await write_rows(db, 4)
    await settle(db, 4)
    seq = seq_of(url, ids[2])
    tamper(url, "UPDATE platform.audit_log SET outcome = 'success' WHERE id = %s", ids[2])
    report = await verify(db)
    assert report.problems == [f"audit row seq={seq} id={ids[2]}: content does not match its MAC (changed or forged)"]
    assert not report.ok


async def test_a_changed_detail_and_a_recomputed_mac_column_are_both_caught(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    ids = await write_rows(db, 3)
    await settle(db, 3)
    seq = seq_of(url, ids[0])
    # Without the key the attacker cannot recompute the MAC; copying another row's MAC does not help.
    tamper(
        url,
        "UPDATE platform.audit_log SET details = '{}'::jsonb,"
        " mac = (SELECT mac FROM platform.audit_log WHERE id = %s) WHERE id = %s",
        ids[1],
        ids[0],
    )
    problems = (await verify(db)).problems
    assert problems == [
        f"audit row seq={seq} id={ids[0]}: content does not match its MAC (changed or forged)",
        f"audit row seq={seq}: MAC differs from the chained one (changed)",
    ]


async def test_a_deleted_row_is_named(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    ids = await write_rows(db, 4)
    await settle(db, 4)
    seq = seq_of(url, ids[1])
    tamper(url, "DELETE FROM platform.audit_log WHERE id = %s", ids[1])
    assert (await verify(db)).problems == [f"audit row seq={seq}: missing from the log (deleted); chain entry 2"]


async def test_a_forged_inserted_row_is_named(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    await write_rows(db, 3)
    await settle(db, 3)
    forged = uuid.uuid4()
    # A row slipped in after the fact: a plausible MAC (32 bytes), but not one made with the key.
    tamper(
        url,
        "INSERT INTO platform.audit_log (id, action, outcome, actor_kind, details, mac)"
        " VALUES (%s, 'banking.payment_created', 'success', 'staff', '{}', decode(repeat('ab', 32), 'hex'))",
        forged,
    )
    seq = seq_of(url, forged)
    assert (await verify(db)).problems == [
        f"audit row seq={seq} id={forged}: content does not match its MAC (changed or forged)"
    ]


async def test_a_row_inserted_behind_the_chain_head_is_named(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    ids = await write_rows(db, 3)
    await settle(db, 3)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id, txid::text FROM platform.audit_log WHERE id = %s", (ids[0],)).fetchone()
        assert row is not None
    # Even a perfect copy of a real row, placed back in time, is not in the chain.
    copy = uuid.uuid4()
    tamper(
        url,
        "INSERT INTO platform.audit_log (id, occurred_at, txid, action, outcome, actor_kind, actor_id, ip, device,"
        " request_id, details, mac) SELECT %s, occurred_at, txid, action, outcome, actor_kind, actor_id, ip, device,"
        " request_id, details, mac FROM platform.audit_log WHERE id = %s",
        copy,
        ids[0],
    )
    seq = seq_of(url, copy)
    assert (await verify(db)).problems == [
        f"audit row seq={seq} id={copy}: content does not match its MAC (changed or forged)",
        f"audit row seq={seq} id={copy}: not in the chain though written before its head (inserted)",
    ]


async def test_an_altered_chain_link_is_named(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    ids = await write_rows(db, 3)
    await settle(db, 3)
    tamper(url, "UPDATE platform.audit_chain SET chain_hash = decode(repeat('00', 32), 'hex') WHERE chain_seq = 2")
    seq = seq_of(url, ids[1])
    assert (await verify(db)).problems == [
        f"chain entry 2 (audit row seq={seq}): chain hash broken",
        f"chain entry 3 (audit row seq={seq_of(url, ids[2])}): chain hash broken",
    ]


async def test_rows_are_chained_only_once_their_transaction_has_finished(own_db: tuple[Database, str]) -> None:
    db, url = own_db
    async with db.transaction() as slow:
        await record(slow, AuditEvent(action="identity.login"))
        await write_rows(db, 2)  # later transactions commit first
        assert await chain_pending(db) == 0  # the open one holds back everything after it
    await settle(db, 3)
    with psycopg.connect(url) as conn:
        order = conn.execute(
            "SELECT a.action, a.request_id FROM platform.audit_chain c JOIN platform.audit_log a ON a.seq = c.audit_seq"
            " ORDER BY c.chain_seq"
        ).fetchall()
    assert order == [("identity.login", None), ("identity.login", "req-0"), ("identity.login", "req-1")]
    assert (await verify(db)).ok


async def test_the_log_refuses_update_and_delete(own_db: tuple[Database, str]) -> None:
    db, _ = own_db
    await write_rows(db, 1)
    for sql in ("UPDATE platform.audit_log SET outcome = 'success'", "DELETE FROM platform.audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(text(sql))


def test_audit_verify_command_exits_1_naming_the_row(
    fresh_database: Callable[[], str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smartbank.cli import app

    url = fresh_database()

    async def setup() -> list[uuid.UUID]:
        database = Database(create_engine(url, settings))
        try:
            ids = await write_rows(database, 3)
            await settle(database, 3)
            return ids
        finally:
            await database.dispose()

    ids = asyncio.run(setup())
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(app, ["audit", "verify"])
        assert ok.exit_code == 0, ok.output
        seq = seq_of(url, ids[2])
        tamper(url, "DELETE FROM platform.audit_log WHERE id = %s", ids[2])
        bad = runner.invoke(app, ["audit", "verify"])
        assert bad.exit_code == 1
        assert f"audit row seq={seq}: missing from the log (deleted); chain entry 3" in bad.output
    finally:
        get_settings.cache_clear()
        audit._keys.clear()


async def test_concurrent_writers_and_a_running_chainer_give_an_intact_chain(own_db: tuple[Database, str]) -> None:
    db, _ = own_db
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        for i in range(5):
            async with db.transaction() as conn:
                await record(conn, AuditEvent(action="banking.payment_created", details={"writer": n, "i": i}))
                await asyncio.sleep(0.001 * ((n * 7 + i) % 5))  # commits interleave out of seq order
                await record(conn, AuditEvent(action="banking.payment_posted", details={"writer": n, "i": i}))

    async def chainer() -> None:
        while not stop.is_set():
            await chain_pending(db)
            await asyncio.sleep(0.005)

    running = asyncio.create_task(chainer())
    await asyncio.gather(*(writer(n) for n in range(8)))
    stop.set()
    await running
    await settle(db, 80)
    report = await verify(db)
    assert (report.problems, report.rows, report.chained) == ([], 80, 80)


async def test_rows_are_chained_in_transaction_id_order_across_digit_counts(own_db: tuple[Database, str]) -> None:
    """Transaction ids 9, 10, 99, 100 and 1000 are chained in that order, not in their text order
    ('10' < '100' < '1000' < '9' < '99'), however the batches fall."""
    db, url = own_db
    txids = [1000, 99, 9, 100, 10]
    with psycopg.connect(url, autocommit=True) as conn:
        for txid in txids:
            conn.execute(
                "INSERT INTO platform.audit_log (id, txid, action, outcome, actor_kind, mac)"
                " VALUES (%s, %s::text::xid8, 'identity.login', 'success', 'system', %s)",
                (uuid.uuid4(), txid, bytes(32)),
            )

    assert await chain_pending(db, batch=2) == len(txids)
    assert await chain_pending(db, batch=2) == 0

    async with db.connect() as conn:
        chained = (
            await conn.execute(text("SELECT audit_txid::text FROM platform.audit_chain ORDER BY chain_seq"))
        ).scalars()
        assert [int(t) for t in chained] == sorted(txids)
