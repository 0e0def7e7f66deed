"""Ledger use cases. One use case, one transaction; the transfer path is one database call.

Single transfers submitted concurrently are merged into one call of ``ledger.create_transfers``
(group commit): each keeps its own result, none depends on another, and every result a caller
receives has been committed first. See docs/adr/0002-ledger-concurrency.md.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import psycopg
from prometheus_client import Counter, Histogram
from sqlalchemy import text

from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.invariants import invariant
from smartbank.ledger import queries
from smartbank.ledger.errors import LedgerErrorCode
from smartbank.ledger.model import (
    MAX_BATCH,
    MAX_PAGE,
    Account,
    AccountSpec,
    AccountStatus,
    ResultStatus,
    Transfer,
    TransferRequest,
    TransferResult,
    TransferType,
    allowed_status_change,
    result_from_db,
    validate_batch,
)
from smartbank.ledger.wire import batch_columns
from smartbank.platform.db import Database
from smartbank.platform.logging import get_logger

log = get_logger(__name__)

#: Attempts of one database call on a transient failure (lost connection, deadlock, a concurrent
#: insert of the same id, a lock wait given up). Safe: the call is idempotent by transfer id.
MAX_ATTEMPTS: Final = 5
_TRANSIENT_SQLSTATES: Final = frozenset({"40001", "40P01", "23505", "55P03", "57P01", "08000", "08003", "08006"})

TRANSFERS = Counter("smartbank_ledger_transfers_total", "Transfer requests by result", ["result"])
RETRIES = Counter("smartbank_ledger_retries_total", "Transfer calls retried after a transient failure", ["sqlstate"])
BATCH_SIZE = Histogram(
    "smartbank_ledger_batch_size",
    "Transfers per database call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)

# Sent on the driver connection with binary parameters: this is the hot path, one call per batch.
_CREATE_SQL = """
SELECT idx, result, created_at, amount_minor FROM ledger.create_transfers(
    %(now)s, %(id)b::uuid[], %(type)b::text[], %(debit)b::uuid[], %(credit)b::uuid[], %(amount)b::bigint[],
    %(currency)b::text[], %(code)b::integer[], %(pending)b::uuid[], %(timeout)b::integer[], %(reversal)b::uuid[],
    %(metadata)b::text[]::jsonb[], %(hash)b::bytea[], %(linked)b::boolean[], %(event)s::jsonb)
"""


#: The transfer function's single answer row when every transfer of the call was created.
ALL_CREATED: Final = "all_created"


@dataclass(frozen=True, slots=True)
class TransferPage:
    items: list[Transfer]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError(raw)
        seq = int(raw[1:])
        if not 0 < seq < 2**63:
            raise ValueError(raw)
        return seq
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainError(LedgerErrorCode.INVALID_CURSOR, "cursor is not one this API gave out") from exc


def _is_transient(exc: psycopg.Error) -> bool:
    """Lost connections, deadlocks, serialization failures and a concurrent insert of the same id."""
    return isinstance(exc, psycopg.OperationalError) or exc.sqlstate in _TRANSIENT_SQLSTATES


class LedgerService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        batch_max: int = MAX_BATCH,
        inflight_max: int = 1,
        batch_concurrency: int = 2,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        # The transfer function is one statement: it runs on autocommit driver connections, so that
        # call and commit are a single round trip. Merged single transfers use at most inflight_max of
        # them, client batches at most batch_concurrency: neither starves the other.
        self._pool = db.driver_pool(inflight_max + batch_concurrency, "ledger")
        self._batch_slots = asyncio.Semaphore(batch_concurrency)
        self._pool_ready: asyncio.Future[None] | None = None
        self._after_commit = after_commit
        self._group = _GroupCommit(self._execute, batch_max=min(batch_max, MAX_BATCH), inflight_max=inflight_max)

    # -- accounts ------------------------------------------------------------------------------

    async def open_account(self, spec: AccountSpec) -> tuple[Account, bool]:
        """Create an account; the same id and fields again returns it. Returns (account, created)."""
        spec.validate()
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        INSERT INTO ledger.accounts (id, currency, kind, code, owner_ref,
                            debits_must_not_exceed_credits, credits_must_not_exceed_debits, limit_minor,
                            created_at)
                        VALUES (:id, :currency, :kind, :code, :owner_ref, :dmnec, :cmned, :limit_minor, :now)
                        ON CONFLICT (id) DO NOTHING RETURNING id
                        """
                    ),
                    {
                        "id": spec.id,
                        "currency": spec.currency,
                        "kind": spec.kind.value,
                        "code": spec.code,
                        "owner_ref": spec.owner_ref,
                        "dmnec": spec.debits_must_not_exceed_credits,
                        "cmned": spec.credits_must_not_exceed_debits,
                        "limit_minor": spec.limit_minor,
                        "now": self._clock.now(),
                    },
                )
            ).first()
            account = await queries.get_account(conn, spec.id)
        invariant(account is not None, "account row missing after insert", id=str(spec.id))
        assert account is not None
        if row is None and not account.same_spec(spec):
            raise DomainError(
                LedgerErrorCode.ACCOUNT_EXISTS_WITH_DIFFERENT_FIELDS,
                "an account with this id exists with different fields",
                id=str(spec.id),
            )
        return account, row is not None

    async def open_accounts(self, specs: Sequence[AccountSpec]) -> None:
        """Bulk creation for set-up (bank accounts, demo data, benchmarks); existing ids are kept."""
        for spec in specs:
            spec.validate()
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO ledger.accounts (id, currency, kind, code, owner_ref,
                        debits_must_not_exceed_credits, credits_must_not_exceed_debits, limit_minor, created_at)
                    SELECT u.*, CAST(:now AS timestamptz)
                      FROM unnest(CAST(:ids AS uuid[]), CAST(:currencies AS text[]), CAST(:kinds AS text[]),
                                  CAST(:codes AS int[]), CAST(:owners AS text[]), CAST(:dmnec AS bool[]),
                                  CAST(:cmned AS bool[]), CAST(:limits AS bigint[])) AS u
                    ON CONFLICT (id) DO NOTHING
                    """
                ),
                {
                    "ids": [s.id for s in specs],
                    "currencies": [s.currency for s in specs],
                    "kinds": [s.kind.value for s in specs],
                    "codes": [s.code for s in specs],
                    "owners": [s.owner_ref for s in specs],
                    "dmnec": [s.debits_must_not_exceed_credits for s in specs],
                    "cmned": [s.credits_must_not_exceed_debits for s in specs],
                    "limits": [s.limit_minor for s in specs],
                    "now": now,
                },
            )

    async def get_account(self, account_id: uuid.UUID) -> Account:
        async with self._db.connect() as conn:
            account = await queries.get_account(conn, account_id)
        if account is None:
            raise DomainError(LedgerErrorCode.ACCOUNT_NOT_FOUND, "no such account", id=str(account_id))
        return account

    async def set_account_status(self, account_id: uuid.UUID, status: AccountStatus) -> Account:
        """Freeze, unfreeze or close an account. The row lock orders it with concurrent transfers."""
        async with self._db.transaction() as conn:
            current = (
                await conn.execute(
                    text("SELECT status FROM ledger.accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": account_id}
                )
            ).scalar_one_or_none()
            if current is None:
                raise DomainError(LedgerErrorCode.ACCOUNT_NOT_FOUND, "no such account", id=str(account_id))
            if current != status.value:
                if not allowed_status_change(AccountStatus(current), status):
                    raise DomainError(
                        LedgerErrorCode.INVALID_ACCOUNT_STATUS_CHANGE,
                        f"an account cannot go from {current} to {status.value}",
                        current=current,
                        requested=status.value,
                    )
                await conn.execute(
                    text("UPDATE ledger.accounts SET status = :status WHERE id = :id"),
                    {"id": account_id, "status": status.value},
                )
            account = await queries.get_account(conn, account_id)
        assert account is not None
        return account

    # -- transfers -----------------------------------------------------------------------------

    async def submit(self, request: TransferRequest) -> TransferResult:
        """One transfer. Concurrent calls share database round trips; results stay independent."""
        if request.linked:
            request = replace(request, linked=False)
        request.validate()
        if request.type is TransferType.EXPIRE_PENDING:
            raise DomainError(LedgerErrorCode.INVALID_TRANSFER, "only the expiry job expires holds", field="type")
        return await self._group.submit(request)

    async def submit_batch(self, requests: Sequence[TransferRequest], *, atomic: bool) -> list[TransferResult]:
        """Up to 1,000 transfers in one call. ``atomic`` links them all: all succeed or none does."""
        batch = list(requests)
        if atomic:
            batch = [replace(r, linked=i < len(batch) - 1) for i, r in enumerate(batch)]
        validate_batch(batch)
        if TransferType.EXPIRE_PENDING in {r.type for r in batch}:
            raise DomainError(LedgerErrorCode.INVALID_TRANSFER, "only the expiry job expires holds", field="type")
        async with self._batch_slots:
            return await self._execute(batch)

    async def _execute(self, batch: list[TransferRequest]) -> list[TransferResult]:
        params: dict[str, object] = {"now": self._clock.now(), **batch_columns(batch)}
        if self._pool_ready is None:
            self._pool_ready = asyncio.ensure_future(self._pool.open(wait=True))
        await self._pool_ready
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._pool.connection() as conn:  # a broken connection is discarded by the pool
                    cursor = await conn.execute(_CREATE_SQL, params)
                    rows = await cursor.fetchall()
                break
            except psycopg.Error as exc:
                if not _is_transient(exc):
                    raise
                if attempt == MAX_ATTEMPTS:
                    # Each attempt is one transaction, and one whose connection was lost may have
                    # committed: the same ids sent again get the original results, never a second posting.
                    raise DomainError(
                        ErrorCode.SERVICE_UNAVAILABLE,
                        "the ledger could not complete the call; retry it with the same transfer ids",
                        retry_after_s=1,
                        sqlstate=exc.sqlstate or "connection",
                    ) from exc
                log.warning("ledger.retry", attempt=attempt, sqlstate=exc.sqlstate)
                RETRIES.labels(exc.sqlstate or "connection").inc()
                await asyncio.sleep(0.005 * 2**attempt)
        if len(rows) == 1 and rows[0][1] == ALL_CREATED:
            created_at = rows[0][2]
            results = [
                TransferResult(request.id, ResultStatus.CREATED, None, created_at, request.amount_minor)
                for request in batch
            ]
            outcomes = collections.Counter({ResultStatus.CREATED.value: len(batch)})
        else:
            invariant(len(rows) == len(batch), "transfer function returned a result per request")
            results = [
                result_from_db(request.id, result, created_at, amount)
                for request, (_, result, created_at, amount) in zip(batch, sorted(rows), strict=True)
            ]
            outcomes = collections.Counter(result.code or result.status.value for result in results)
        BATCH_SIZE.observe(len(batch))
        for outcome, count in outcomes.items():
            TRANSFERS.labels(outcome).inc(count)
        created = outcomes[ResultStatus.CREATED.value]
        if created and self._after_commit is not None:
            self._after_commit()
        return results

    async def get_transfer(self, transfer_id: uuid.UUID) -> Transfer:
        async with self._db.connect() as conn:
            transfer = await queries.get_transfer(conn, transfer_id)
        if transfer is None:
            raise DomainError(LedgerErrorCode.TRANSFER_NOT_FOUND, "no such transfer", id=str(transfer_id))
        return transfer

    async def account_transfers(
        self, account_id: uuid.UUID, *, cursor: str | None = None, limit: int = 50
    ) -> TransferPage:
        if not 1 <= limit <= MAX_PAGE:
            raise DomainError(ErrorCode.VALIDATION_ERROR, f"limit must be 1..{MAX_PAGE}", field="limit")
        before = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as conn:
            if await queries.get_account(conn, account_id) is None:
                raise DomainError(LedgerErrorCode.ACCOUNT_NOT_FOUND, "no such account", id=str(account_id))
            items = await queries.account_transfers(conn, account_id, before, limit + 1)
        next_cursor = encode_cursor(items[limit - 1].seq) if len(items) > limit else None
        return TransferPage(items[:limit], next_cursor)

    async def expire_pending(self, limit: int = MAX_BATCH) -> int:
        """Void holds whose timeout has passed. Returns how many were expired."""
        now = self._clock.now()
        async with self._db.connect() as conn:
            due = await queries.expired_holds(conn, now, limit)
        if not due:
            return 0
        batch = [
            TransferRequest(
                id=uuid.uuid5(pending_id, "expire"), type=TransferType.EXPIRE_PENDING, pending_id=pending_id
            )
            for pending_id in due
        ]
        async with self._batch_slots:
            results = await self._execute(batch)
        expired = sum(r.status is ResultStatus.CREATED for r in results)
        if expired:
            log.info("ledger.holds_expired", count=expired)
        return expired

    async def verify(self) -> list[str]:
        """Every broken ledger invariant, described; an empty list means the ledger is sound."""
        async with self._db.transaction() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            return await queries.verify(conn)

    async def drain(self) -> None:
        await self._group.drain()


class _GroupCommit:
    """Merges concurrent single transfers into database calls of up to ``batch_max``.

    At most ``inflight_max`` calls run at once; while they do, new requests queue and leave
    together in the next call. Two requests with the same id never share a call (the second
    waits for the first, then sees its result as a replay).
    """

    def __init__(
        self,
        execute: Callable[[list[TransferRequest]], Awaitable[list[TransferResult]]],
        *,
        batch_max: int,
        inflight_max: int,
    ) -> None:
        self._execute = execute
        self._batch_max = batch_max
        self._inflight_max = inflight_max
        self._queue: deque[tuple[TransferRequest, asyncio.Future[TransferResult]]] = deque()
        self._inflight = 0
        self._inflight_ids: set[uuid.UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump_scheduled = False

    async def submit(self, request: TransferRequest) -> TransferResult:
        future: asyncio.Future[TransferResult] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._schedule_pump()
        return await future

    def _schedule_pump(self) -> None:
        """Pump once the current loop turn is over, so that every request made in this turn
        (including those of callers just handed their results) leaves in the same call."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._run_pump)

    def _run_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _pump(self) -> None:
        while self._queue and self._inflight < self._inflight_max:
            batch: list[tuple[TransferRequest, asyncio.Future[TransferResult]]] = []
            ids: set[uuid.UUID] = set()
            held: list[tuple[TransferRequest, asyncio.Future[TransferResult]]] = []
            while self._queue and len(batch) < self._batch_max:
                item = self._queue.popleft()
                if item[1].done():  # the caller went away before the call left
                    continue
                if item[0].id in ids or item[0].id in self._inflight_ids:
                    held.append(item)
                    continue
                ids.add(item[0].id)
                batch.append(item)
            self._queue.extendleft(reversed(held))
            if not batch:
                return
            self._inflight += 1
            self._inflight_ids |= ids
            task = asyncio.create_task(self._flush(batch, ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(
        self, batch: list[tuple[TransferRequest, asyncio.Future[TransferResult]]], ids: set[uuid.UUID]
    ) -> None:
        try:
            results = await self._execute([request for request, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight -= 1
            self._inflight_ids -= ids
            self._schedule_pump()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
