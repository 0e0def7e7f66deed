"""Transient failures of the transfer call are retried; a transfer is never posted twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.ledger.model import ResultStatus
from smartbank.ledger.service import MAX_ATTEMPTS, LedgerService

from .helpers import open_account, open_funding, transfer


def _retries(sqlstate: str) -> float:
    return REGISTRY.get_sample_value("smartbank_ledger_retries_total", {"sqlstate": sqlstate}) or 0.0


def _failing_pool(
    ledger: LedgerService, monkeypatch: pytest.MonkeyPatch, fail: Callable[[int], Exception | None], *, after: bool
) -> list[int]:
    """Make the ledger's pool raise ``fail(n)`` on the n-th checkout, before or after the real call ran."""
    pool = ledger._pool  # the seam where a real deadlock or a lost connection surfaces
    real: Callable[..., AbstractAsyncContextManager[Any]] = pool.connection
    calls: list[int] = []

    @asynccontextmanager
    async def connection(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        calls.append(len(calls) + 1)
        error = fail(len(calls))
        if error is not None and not after:
            raise error
        async with real(*args, **kwargs) as conn:
            yield conn
        if error is not None:
            raise error

    monkeypatch.setattr(pool, "connection", connection)
    return calls


async def test_a_deadlocked_call_is_retried_and_the_caller_sees_one_success(
    ledger: LedgerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    before = _retries("40P01")
    calls = _failing_pool(
        ledger,
        monkeypatch,
        lambda n: psycopg.errors.DeadlockDetected("deadlock detected") if n == 1 else None,
        after=False,
    )

    result = await ledger.submit(transfer(bank, alice, 700))

    assert result.status is ResultStatus.CREATED
    assert calls == [1, 2]
    assert _retries("40P01") == before + 1
    assert (await ledger.get_account(alice)).balances.credits_posted == 700


async def test_a_lost_acknowledgement_is_retried_as_a_replay_not_a_second_posting(
    ledger: LedgerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    # The call commits, then the connection drops before the answer arrives.
    calls = _failing_pool(
        ledger,
        monkeypatch,
        lambda n: psycopg.OperationalError("server closed the connection") if n == 1 else None,
        after=True,
    )

    result = await ledger.submit(transfer(bank, alice, 700))

    assert result.status is ResultStatus.EXISTS
    assert calls == [1, 2]
    assert (await ledger.get_account(alice)).balances.credits_posted == 700  # once, not twice


async def test_a_call_failing_every_attempt_raises_after_the_limit(
    ledger: LedgerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = await open_funding(ledger)
    alice = await open_account(ledger)
    calls = _failing_pool(
        ledger, monkeypatch, lambda n: psycopg.errors.SerializationFailure("could not serialize"), after=False
    )

    with pytest.raises(DomainError) as refused:
        await ledger.submit_batch([transfer(bank, alice, 700)], atomic=False)

    # A 503 with a stable code for the API, the database's reason underneath for the logs.
    assert refused.value.code == ErrorCode.SERVICE_UNAVAILABLE
    assert refused.value.http_status == 503
    assert refused.value.details == {"retry_after_s": 1, "sqlstate": "40001"}
    assert isinstance(refused.value.__cause__, psycopg.errors.SerializationFailure)
    assert len(calls) == MAX_ATTEMPTS
    assert (await ledger.get_account(alice)).balances.credits_posted == 0
