"""The binary column arrays of ``smartbank.ledger.wire`` read back in PostgreSQL as what was encoded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from smartbank.kernel.ids import new_id
from smartbank.ledger.model import TransferRequest, TransferType
from smartbank.ledger.service import _CREATE_SQL, LedgerService
from smartbank.ledger.wire import (
    BinaryArray,
    batch_columns,
    bool_array,
    bytea_array,
    int4_array,
    int8_array,
    text_array,
    uuid_array,
)

from .helpers import open_account, open_funding, transfer

IDS = [new_id(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]

CASES: list[tuple[str, BinaryArray, list[object]]] = [
    ("uuid[]", uuid_array(IDS), IDS),
    ("uuid[]", uuid_array([IDS[0], None, IDS[1]]), [IDS[0], None, IDS[1]]),
    (
        "text[]",
        text_array(["posted", "pending", "posted", "人民币 ✓", ""]),
        ["posted", "pending", "posted", "人民币 ✓", ""],
    ),
    ("text[]", text_array([None, '{"a": "b\\\\c"}']), [None, '{"a": "b\\\\c"}']),
    ("integer[]", int4_array([1, -1, 2**31 - 1, -(2**31)]), [1, -1, 2**31 - 1, -(2**31)]),
    ("integer[]", int4_array([None, 86_400]), [None, 86_400]),
    ("bigint[]", int8_array([1, 2**63 - 1, -(2**63)]), [1, 2**63 - 1, -(2**63)]),
    ("bigint[]", int8_array([None, 5]), [None, 5]),
    ("bytea[]", bytea_array([b"", b"\x00\xff" * 16, None]), [b"", b"\x00\xff" * 16, None]),
    ("bytea[]", bytea_array([b"\x01" * 32, b"\x00" * 32]), [b"\x01" * 32, b"\x00" * 32]),
    ("bytea[]", bytea_array([]), []),
    ("text[]", text_array([None, None]), [None, None]),
    ("boolean[]", bool_array([True, False, None]), [True, False, None]),
    ("uuid[]", uuid_array([]), []),
    ("bigint[]", int8_array([]), []),
]


@pytest.mark.parametrize(("sql_type", "encoded", "expected"), CASES)
def test_each_array_reads_back_as_encoded(
    database_url: str, sql_type: str, encoded: BinaryArray, expected: list[object]
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT %b::{sql_type}, cardinality(%b::{sql_type})", (encoded, encoded)).fetchone()
    assert row is not None
    value, length = row
    assert [bytes(v) if isinstance(v, memoryview) else v for v in value] == expected
    assert length == len(expected)


def test_a_wrong_type_is_refused_by_the_server(database_url: str) -> None:
    """The array carries its element type: PostgreSQL refuses it where another type is expected."""
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error):
        conn.execute("SELECT %b::uuid[]", (int8_array([1, 2]),))


async def test_the_event_the_caller_encodes_is_the_one_the_function_would_build(
    database_url: str, ledger: LedgerService
) -> None:
    """The fast path writes the caller's event; the general path builds its own in SQL. For the same
    transfers the two are the same document."""
    bank = await open_funding(ledger)
    alice, bob = await open_account(ledger), await open_account(ledger)
    fast = [transfer(bank, alice, 500), transfer(bank, bob, 700, type=TransferType.PENDING, timeout_s=60)]
    # The same kind of transfers, plus one that fails: the batch goes the general path.
    general = [transfer(bank, alice, 300), transfer(bank, bob, 900, type=TransferType.PENDING, timeout_s=60)]
    assert all(r.ok for r in await ledger.submit_batch(fast, atomic=False))
    results = await ledger.submit_batch([*general, transfer(alice, bob, 10**12)], atomic=False)
    assert [r.ok for r in results] == [True, True, False]

    def expected(batch: list[TransferRequest]) -> dict[str, object]:
        return {
            "count": len(batch),
            "id": [str(r.id) for r in batch],
            "type": [r.type.value for r in batch],
            "debit_account_id": [str(r.debit_account_id) for r in batch],
            "credit_account_id": [str(r.credit_account_id) for r in batch],
            "amount_minor": [r.amount_minor for r in batch],
            "currency": [r.currency for r in batch],
            "code": [r.code for r in batch],
            "pending_id": [None for _ in batch],
        }

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for batch in (fast, general):
            row = await (
                await conn.execute(
                    "SELECT payload FROM platform.outbox"
                    " WHERE topic = 'ledger.transfers_created' AND payload->'id' ? %s",
                    (str(batch[0].id),),
                )
            ).fetchone()
            assert row is not None
            assert row[0] == expected(batch)


async def test_without_the_callers_event_the_general_path_writes_it(database_url: str, ledger: LedgerService) -> None:
    """The fast path writes only an event the caller encoded; a call without one still writes a whole
    event, built by the general path, and creates every transfer."""
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    batch = [transfer(bank, alice, 400), transfer(bank, alice, 600)]
    params = {"now": datetime.now(UTC), **batch_columns(batch), "event": None}

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (await conn.execute(_CREATE_SQL, params)).fetchall()
        payload = await (
            await conn.execute(
                "SELECT payload FROM platform.outbox WHERE topic = 'ledger.transfers_created' AND payload->'id' ? %s",
                (str(batch[0].id),),
            )
        ).fetchone()

    assert [(idx, result) for idx, result, _, _ in rows] == [(1, "created"), (2, "created")]  # not all_created
    assert payload is not None
    assert payload[0] == orjson.loads(str(batch_columns(batch)["event"]))
    assert (await ledger.get_account(alice)).balances.credits_posted == 1000
    assert await ledger.verify() == []
