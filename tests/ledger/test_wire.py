"""The binary column arrays of ``smartbank.ledger.wire`` read back in PostgreSQL as what was encoded."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from smartbank.kernel.ids import new_id
from smartbank.ledger.wire import (
    BinaryArray,
    bool_array,
    bytea_array,
    int4_array,
    int8_array,
    text_array,
    uuid_array,
)

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
