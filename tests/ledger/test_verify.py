"""`smartbank ledger verify` finds broken invariants; history cannot be rewritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from smartbank.kernel.clock import SystemClock
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings

from .helpers import open_account, open_funding, transfer

SMARTBANK = str(Path(sys.executable).with_name("smartbank"))


def _verify(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "SMARTBANK_LOG_LEVEL": "WARNING"}
    return subprocess.run([SMARTBANK, "ledger", "verify"], env=env, capture_output=True, text=True, timeout=120)


async def _populated(url: str) -> tuple[str, str]:
    db = Database(create_engine(url, Settings(env="test")))
    ledger = LedgerService(db, SystemClock())
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    await ledger.submit(transfer(bank, alice, 1_000))
    await db.dispose()
    return str(bank), str(alice)


async def test_verify_passes_then_detects_a_tampered_balance(fresh_database) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database()
    _, alice = await _populated(url)
    ok = _verify(url)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE ledger.accounts SET credits_posted = credits_posted + 1 WHERE id = %s", (alice,))
    broken = _verify(url)

    assert broken.returncode == 1
    assert "debits equal credits per currency" in broken.stdout
    assert "balances equal the sums of their transfers" in broken.stdout
    assert alice in broken.stdout


async def test_transfers_cannot_be_updated_or_deleted(fresh_database) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database()
    await _populated(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in (
            "UPDATE ledger.transfers SET amount_minor = 1",
            "DELETE FROM ledger.transfers",
            "TRUNCATE ledger.transfers CASCADE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM ledger.transfers").fetchone() == (1,)


async def test_database_refuses_a_balance_that_breaks_its_flag(fresh_database) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database()
    _, alice = await _populated(url)
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE ledger.accounts SET debits_posted = 1001 WHERE id = %s", (alice,))


async def test_verify_detects_a_void_of_a_transfer_that_does_not_exist(fresh_database) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database()
    bank, alice = await _populated(url)
    missing = "0190f5a8-0000-7000-8000-000000000001"
    with psycopg.connect(url, autocommit=True) as conn:
        # Written behind the transfer function's back: nothing in the schema refuses it, verify must.
        conn.execute(
            """
            INSERT INTO ledger.transfers (id, type, debit_account_id, credit_account_id, amount_minor, currency,
                                          code, pending_id, request_hash, created_at)
            VALUES (gen_random_uuid(), 'void_pending', %s, %s, 5, 'CNY', 1, %s, '\\x00', now())
            """,
            (bank, alice, missing),
        )
    broken = _verify(url)
    assert broken.returncode == 1
    assert "every post, void and reversal points at an existing transfer" in broken.stdout
    assert missing in broken.stdout
    assert "balances equal the sums of their transfers" not in broken.stdout
