"""SQL for the banking schema. Every list is bounded; every lock is named at its call site."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.banking.model import (
    AccountState,
    Branch,
    DepositAccount,
    Entry,
    HistoryFilter,
    Payee,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    RiskOutcome,
)

Lock = Literal["update", "skip"] | None

ACCOUNT_COLUMNS = "id, customer_id, number, iban, product, currency, status, branch_code, opened_at"
PAYMENT_COLUMNS = (
    "id, kind, customer_id, initiated_by, account_id, counterparty_account_id, payee_id, branch_code, "
    "debit_account_id, credit_account_id, amount_minor, currency, reference, transfer_id, status, failure_code, "
    "usage_day, step_up, risk_decision, risk_reason, risk_version, created_at, finished_at"
)
ENTRY_COLUMNS = (
    "seq, account_id, transfer_id, amount_minor, currency, posted_at, counterparty_number, counterparty_name, "
    "description, payment_id, kind"
)


def _lock_clause(lock: Lock) -> str:
    return {None: "", "update": " FOR UPDATE", "skip": " FOR UPDATE SKIP LOCKED"}[lock]


def account_from_row(row: Any) -> DepositAccount:
    return DepositAccount(
        id=row.id,
        customer_id=row.customer_id,
        number=row.number,
        iban=row.iban,
        product=Product(row.product),
        currency=row.currency.strip(),
        status=AccountState(row.status),
        branch_code=row.branch_code,
        opened_at=row.opened_at,
    )


def payment_from_row(row: Any) -> Payment:
    return Payment(
        id=row.id,
        kind=PaymentKind(row.kind),
        customer_id=row.customer_id,
        initiated_by=row.initiated_by,
        account_id=row.account_id,
        counterparty_account_id=row.counterparty_account_id,
        payee_id=row.payee_id,
        branch_code=row.branch_code,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency.strip(),
        reference=row.reference,
        transfer_id=row.transfer_id,
        status=PaymentStatus(row.status),
        failure_code=row.failure_code,
        usage_day=row.usage_day,
        step_up=row.step_up,
        risk_decision=RiskOutcome(row.risk_decision),
        risk_reason=row.risk_reason,
        risk_version=row.risk_version,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def entry_from_row(row: Any) -> Entry:
    return Entry(
        seq=row.seq,
        account_id=row.account_id,
        transfer_id=row.transfer_id,
        amount_minor=row.amount_minor,
        currency=row.currency.strip(),
        posted_at=row.posted_at,
        counterparty_number=row.counterparty_number,
        counterparty_name=row.counterparty_name,
        description=row.description,
        payment_id=row.payment_id,
        kind=row.kind,
    )


# -- accounts and branches -----------------------------------------------------------------------


async def get_account(conn: AsyncConnection, account_id: uuid.UUID, lock: Lock = None) -> DepositAccount | None:
    row = (
        await conn.execute(
            text(f"SELECT {ACCOUNT_COLUMNS} FROM banking.accounts WHERE id = :id{_lock_clause(lock)}"),
            {"id": account_id},
        )
    ).first()
    return None if row is None else account_from_row(row)


async def get_account_by_number(conn: AsyncConnection, number: str) -> DepositAccount | None:
    row = (
        await conn.execute(
            text(f"SELECT {ACCOUNT_COLUMNS} FROM banking.accounts WHERE number = :number"), {"number": number}
        )
    ).first()
    return None if row is None else account_from_row(row)


async def customer_accounts(conn: AsyncConnection, customer_id: uuid.UUID, limit: int) -> list[DepositAccount]:
    rows = await conn.execute(
        text(
            f"SELECT {ACCOUNT_COLUMNS} FROM banking.accounts WHERE customer_id = :customer "
            "ORDER BY opened_at, id LIMIT :limit"
        ),
        {"customer": customer_id, "limit": limit},
    )
    return [account_from_row(row) for row in rows]


async def next_account_serial(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT nextval('banking.account_serial')"))).scalar_one())


async def insert_account(conn: AsyncConnection, account: DepositAccount) -> bool:
    row = (
        await conn.execute(
            text(
                f"""
                INSERT INTO banking.accounts ({ACCOUNT_COLUMNS})
                VALUES (:id, :customer_id, :number, :iban, :product, :currency, :status, :branch_code, :opened_at)
                ON CONFLICT (id) DO NOTHING RETURNING id
                """
            ),
            {
                "id": account.id,
                "customer_id": account.customer_id,
                "number": account.number,
                "iban": account.iban,
                "product": account.product.value,
                "currency": account.currency,
                "status": account.status.value,
                "branch_code": account.branch_code,
                "opened_at": account.opened_at,
            },
        )
    ).first()
    return row is not None


async def set_account_state(conn: AsyncConnection, account_id: uuid.UUID, state: AccountState, now: datetime) -> None:
    await conn.execute(
        text("UPDATE banking.accounts SET status = :status, status_changed_at = :now WHERE id = :id"),
        {"id": account_id, "status": state.value, "now": now},
    )


async def get_branch(conn: AsyncConnection, code: str) -> Branch | None:
    row = (
        await conn.execute(
            text("SELECT code, name, currency, cash_account_id FROM banking.branches WHERE code = :code"),
            {"code": code},
        )
    ).first()
    return None if row is None else Branch(row.code, row.name, row.currency.strip(), row.cash_account_id)


# -- payees --------------------------------------------------------------------------------------

PAYEE_COLUMNS = "id, customer_id, name, account_number, account_id, created_at"


def payee_from_row(row: Any) -> Payee:
    return Payee(row.id, row.customer_id, row.name, row.account_number, row.account_id, row.created_at)


async def get_live_payee(conn: AsyncConnection, payee_id: uuid.UUID) -> Payee | None:
    row = (
        await conn.execute(
            text(f"SELECT {PAYEE_COLUMNS} FROM banking.payees WHERE id = :id AND deleted_at IS NULL"),
            {"id": payee_id},
        )
    ).first()
    return None if row is None else payee_from_row(row)


async def customer_payees(conn: AsyncConnection, customer_id: uuid.UUID, limit: int) -> list[Payee]:
    rows = await conn.execute(
        text(
            f"SELECT {PAYEE_COLUMNS} FROM banking.payees WHERE customer_id = :customer AND deleted_at IS NULL "
            "ORDER BY created_at, id LIMIT :limit"
        ),
        {"customer": customer_id, "limit": limit},
    )
    return [payee_from_row(row) for row in rows]


async def lock_customer_payees(conn: AsyncConnection, customer_id: uuid.UUID) -> int:
    """Serialise payee changes of one customer (transaction-scoped); returns how many live payees they have."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('banking.payees:' || CAST(:customer AS text), 0))"),
        {"customer": customer_id},
    )
    return int(
        (
            await conn.execute(
                text("SELECT count(*) FROM banking.payees WHERE customer_id = :customer AND deleted_at IS NULL"),
                {"customer": customer_id},
            )
        ).scalar_one()
    )


async def insert_payee(conn: AsyncConnection, payee: Payee) -> bool:
    row = (
        await conn.execute(
            text(
                f"""
                INSERT INTO banking.payees ({PAYEE_COLUMNS})
                VALUES (:id, :customer_id, :name, :account_number, :account_id, :created_at)
                ON CONFLICT (customer_id, account_number) WHERE deleted_at IS NULL DO NOTHING RETURNING id
                """
            ),
            {
                "id": payee.id,
                "customer_id": payee.customer_id,
                "name": payee.name,
                "account_number": payee.account_number,
                "account_id": payee.account_id,
                "created_at": payee.created_at,
            },
        )
    ).first()
    return row is not None


async def delete_payee(conn: AsyncConnection, payee_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        text("UPDATE banking.payees SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL"),
        {"id": payee_id, "now": now},
    )


# -- payments ------------------------------------------------------------------------------------


async def get_payment(conn: AsyncConnection, payment_id: uuid.UUID, lock: Lock = None) -> Payment | None:
    row = (
        await conn.execute(
            text(f"SELECT {PAYMENT_COLUMNS}, request_hash FROM banking.payments WHERE id = :id{_lock_clause(lock)}"),
            {"id": payment_id},
        )
    ).first()
    return None if row is None else payment_from_row(row)


async def find_by_key(conn: AsyncConnection, initiated_by: uuid.UUID, key: str) -> tuple[Payment, bytes] | None:
    row = (
        await conn.execute(
            text(
                f"SELECT {PAYMENT_COLUMNS}, request_hash FROM banking.payments "
                "WHERE initiated_by = :by AND idempotency_key = :key"
            ),
            {"by": initiated_by, "key": key},
        )
    ).first()
    return None if row is None else (payment_from_row(row), bytes(row.request_hash))


async def customer_payments(
    conn: AsyncConnection, customer_id: uuid.UUID, account_ids: list[uuid.UUID], limit: int
) -> list[Payment]:
    """The newest ``limit`` payments out of (and cash at) the customer's accounts and into them from
    others, newest first: one index scan for the customer's own, one per account for incoming ones."""
    rows = await conn.execute(
        text(
            f"""
            SELECT {PAYMENT_COLUMNS} FROM (
                (SELECT {PAYMENT_COLUMNS} FROM banking.payments WHERE customer_id = :customer
                  ORDER BY created_at DESC LIMIT :limit)
                UNION ALL
                (SELECT p.* FROM unnest(CAST(:accounts AS uuid[])) AS a (id)
                   CROSS JOIN LATERAL (
                       SELECT {PAYMENT_COLUMNS} FROM banking.payments
                        WHERE counterparty_account_id = a.id AND customer_id <> :customer
                        ORDER BY created_at DESC LIMIT :limit) AS p)
            ) AS found ORDER BY created_at DESC, id DESC LIMIT :limit
            """
        ),
        {"customer": customer_id, "accounts": account_ids, "limit": limit},
    )
    return [payment_from_row(row) for row in rows]


async def insert_payment(
    conn: AsyncConnection, payment: Payment, *, key: str, request_hash: bytes, initiator_kind: str
) -> bool:
    """Insert the payment unless its idempotency key is taken (then a concurrent insert of the same
    key waits here for the first to commit or roll back). True when this call inserted it."""
    row = (
        await conn.execute(
            text(
                f"""
                INSERT INTO banking.payments ({PAYMENT_COLUMNS}, idempotency_key, request_hash, initiator_kind)
                VALUES (:id, :kind, :customer_id, :initiated_by, :account_id, :counterparty_account_id, :payee_id,
                        :branch_code, :debit_account_id, :credit_account_id, :amount_minor, :currency, :reference,
                        :transfer_id, :status, :failure_code, :usage_day, :step_up, :risk_decision, :risk_reason,
                        :risk_version, :created_at, :finished_at, :key, :request_hash, :initiator_kind)
                ON CONFLICT (initiated_by, idempotency_key) DO NOTHING RETURNING id
                """
            ),
            {
                "id": payment.id,
                "kind": payment.kind.value,
                "customer_id": payment.customer_id,
                "initiated_by": payment.initiated_by,
                "account_id": payment.account_id,
                "counterparty_account_id": payment.counterparty_account_id,
                "payee_id": payment.payee_id,
                "branch_code": payment.branch_code,
                "debit_account_id": payment.debit_account_id,
                "credit_account_id": payment.credit_account_id,
                "amount_minor": payment.amount_minor,
                "currency": payment.currency,
                "reference": payment.reference,
                "transfer_id": payment.transfer_id,
                "status": payment.status.value,
                "failure_code": payment.failure_code,
                "usage_day": payment.usage_day,
                "step_up": payment.step_up,
                "risk_decision": payment.risk_decision.value,
                "risk_reason": payment.risk_reason,
                "risk_version": payment.risk_version,
                "created_at": payment.created_at,
                "finished_at": payment.finished_at,
                "key": key,
                "request_hash": request_hash,
                "initiator_kind": initiator_kind,
            },
        )
    ).first()
    return row is not None


async def finish_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, status: PaymentStatus, failure_code: str | None, now: datetime
) -> None:
    await conn.execute(
        text(
            "UPDATE banking.payments SET status = :status, failure_code = :code, finished_at = :now "
            "WHERE id = :id AND status = 'submitted'"
        ),
        {"id": payment_id, "status": status.value, "code": failure_code, "now": now},
    )


async def stuck_payments(conn: AsyncConnection, before: datetime, limit: int) -> list[uuid.UUID]:
    rows = await conn.execute(
        text(
            "SELECT id FROM banking.payments WHERE status = 'submitted' AND created_at <= :before "
            "ORDER BY created_at LIMIT :limit"
        ),
        {"before": before, "limit": limit},
    )
    return [row.id for row in rows]


async def lock_daily_usage(conn: AsyncConnection, customer_id: uuid.UUID, day: date, currency: str) -> int:
    """The customer's usage row of ``day``, created if missing and locked until the transaction ends."""
    await conn.execute(
        text(
            "INSERT INTO banking.daily_usage (customer_id, day, currency) VALUES (:customer, :day, :currency) "
            "ON CONFLICT (customer_id, day) DO NOTHING"
        ),
        {"customer": customer_id, "day": day, "currency": currency},
    )
    return int(
        (
            await conn.execute(
                text(
                    "SELECT used_minor FROM banking.daily_usage WHERE customer_id = :customer AND day = :day FOR UPDATE"
                ),
                {"customer": customer_id, "day": day},
            )
        ).scalar_one()
    )


async def add_daily_usage(conn: AsyncConnection, customer_id: uuid.UUID, day: date, delta_minor: int) -> None:
    await conn.execute(
        text(
            "UPDATE banking.daily_usage SET used_minor = used_minor + :delta "
            "WHERE customer_id = :customer AND day = :day"
        ),
        {"customer": customer_id, "day": day, "delta": delta_minor},
    )


async def daily_usage(conn: AsyncConnection, customer_id: uuid.UUID, day: date) -> int:
    value = (
        await conn.execute(
            text("SELECT used_minor FROM banking.daily_usage WHERE customer_id = :customer AND day = :day"),
            {"customer": customer_id, "day": day},
        )
    ).scalar_one_or_none()
    return int(value or 0)


# -- history -------------------------------------------------------------------------------------


async def accounts_among(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[uuid.UUID, DepositAccount]:
    rows = await conn.execute(
        text(f"SELECT {ACCOUNT_COLUMNS} FROM banking.accounts WHERE id = ANY(:ids)"), {"ids": ids}
    )
    return {row.id: account_from_row(row) for row in rows}


async def payments_by_transfer(conn: AsyncConnection, transfer_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.execute(
        text(
            """
            SELECT p.transfer_id, p.id, p.kind, p.reference, p.account_id, p.customer_id, p.branch_code,
                   y.name AS payee_name, b.name AS branch_name
              FROM banking.payments p
              LEFT JOIN banking.payees y ON y.id = p.payee_id
              LEFT JOIN banking.branches b ON b.code = p.branch_code
             WHERE p.transfer_id = ANY(:ids)
            """
        ),
        {"ids": transfer_ids},
    )
    return {row.transfer_id: row for row in rows}


async def branches_by_cash_account(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[uuid.UUID, Branch]:
    rows = await conn.execute(
        text("SELECT code, name, currency, cash_account_id FROM banking.branches WHERE cash_account_id = ANY(:ids)"),
        {"ids": ids},
    )
    return {row.cash_account_id: Branch(row.code, row.name, row.currency.strip(), row.cash_account_id) for row in rows}


async def insert_entries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    result = await conn.execute(
        text(
            """
            INSERT INTO banking.entries (account_id, transfer_id, amount_minor, currency, posted_at,
                                         counterparty_number, counterparty_name, description, payment_id, kind)
            SELECT * FROM unnest(CAST(:account AS uuid[]), CAST(:transfer AS uuid[]), CAST(:amount AS bigint[]),
                                 CAST(:currency AS text[]), CAST(:posted AS timestamptz[]), CAST(:number AS text[]),
                                 CAST(:name AS text[]), CAST(:description AS text[]), CAST(:payment AS uuid[]),
                                 CAST(:kind AS text[]))
            ON CONFLICT (account_id, transfer_id) DO NOTHING
            """
        ),
        {
            "account": [r["account_id"] for r in rows],
            "transfer": [r["transfer_id"] for r in rows],
            "amount": [r["amount_minor"] for r in rows],
            "currency": [r["currency"] for r in rows],
            "posted": [r["posted_at"] for r in rows],
            "number": [r["counterparty_number"] for r in rows],
            "name": [r["counterparty_name"] for r in rows],
            "description": [r["description"] for r in rows],
            "payment": [r["payment_id"] for r in rows],
            "kind": [r["kind"] for r in rows],
        },
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _like(value: str) -> str:
    """A LIKE pattern matching ``value`` anywhere, with the pattern characters escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def history(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    where: HistoryFilter,
    before_seq: int | None,
    limit: int,
    *,
    after_seq: int | None = None,
) -> list[Entry]:
    """Newest first, at most ``limit`` entries; with ``after_seq``, the ``limit`` oldest entries newer
    than it, oldest first (the page before, read upwards)."""
    clauses = ["account_id = :account"]
    params: dict[str, Any] = {"account": account_id, "limit": limit}
    if before_seq is not None:
        clauses.append("seq < :before")
        params["before"] = before_seq
    if after_seq is not None:
        clauses.append("seq > :after")
        params["after"] = after_seq
    if where.direction is not None:
        clauses.append("amount_minor > 0" if where.direction == "in" else "amount_minor < 0")
    if where.since is not None:
        clauses.append("posted_at >= :since")
        params["since"] = where.since
    if where.until is not None:
        clauses.append("posted_at < :until")
        params["until"] = where.until
    if where.min_amount_minor is not None:
        clauses.append("abs(amount_minor) >= :min_amount")
        params["min_amount"] = where.min_amount_minor
    if where.max_amount_minor is not None:
        clauses.append("abs(amount_minor) <= :max_amount")
        params["max_amount"] = where.max_amount_minor
    if where.counterparty is not None:
        clauses.append("(counterparty_number = :cp_number OR counterparty_name ILIKE :cp_name)")
        params["cp_number"] = where.counterparty.replace(" ", "")
        params["cp_name"] = _like(where.counterparty)
    if where.text is not None:
        clauses.append("description ILIKE :text")
        params["text"] = _like(where.text)
    rows = await conn.execute(
        text(
            f"SELECT {ENTRY_COLUMNS} FROM banking.entries WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq {'ASC' if after_seq is not None else 'DESC'} LIMIT :limit"
        ),
        params,
    )
    return [entry_from_row(row) for row in rows]


async def get_entry(conn: AsyncConnection, account_id: uuid.UUID, transfer_id: uuid.UUID) -> Entry | None:
    row = (
        await conn.execute(
            text(
                f"SELECT {ENTRY_COLUMNS} FROM banking.entries WHERE account_id = :account AND transfer_id = :transfer"
            ),
            {"account": account_id, "transfer": transfer_id},
        )
    ).first()
    return None if row is None else entry_from_row(row)


async def balance_after(conn: AsyncConnection, account_id: uuid.UUID, entry: Entry) -> int:
    """The account's balance just after ``entry``, in the order statements use (posted_at, seq)."""
    return int(
        (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(amount_minor), 0) FROM banking.entries "
                    "WHERE account_id = :account AND (posted_at, seq) <= (:posted_at, :seq)"
                ),
                {"account": account_id, "posted_at": entry.posted_at, "seq": entry.seq},
            )
        ).scalar_one()
    )


async def payee_name(conn: AsyncConnection, payee_id: uuid.UUID) -> str | None:
    """A payee's name, also of one since deleted (a finished payment still names it)."""
    value = (
        await conn.execute(text("SELECT name FROM banking.payees WHERE id = :id"), {"id": payee_id})
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def balance_before(conn: AsyncConnection, account_id: uuid.UUID, moment: datetime) -> int:
    return int(
        (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(amount_minor), 0) FROM banking.entries "
                    "WHERE account_id = :account AND posted_at < :moment"
                ),
                {"account": account_id, "moment": moment},
            )
        ).scalar_one()
    )


async def entries_between(
    conn: AsyncConnection, account_id: uuid.UUID, start: datetime, end: datetime, limit: int
) -> list[Entry]:
    """Oldest first, [start, end), at most ``limit``."""
    rows = await conn.execute(
        text(
            f"SELECT {ENTRY_COLUMNS} FROM banking.entries WHERE account_id = :account "
            "AND posted_at >= :start AND posted_at < :end ORDER BY posted_at, seq LIMIT :limit"
        ),
        {"account": account_id, "start": start, "end": end, "limit": limit},
    )
    return [entry_from_row(row) for row in rows]
