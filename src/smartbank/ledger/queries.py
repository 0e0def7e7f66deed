"""Read-side SQL for the ledger. Every list is bounded."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.ledger.model import (
    RESOLUTION_STATUS,
    Account,
    AccountKind,
    AccountStatus,
    Balances,
    PendingStatus,
    Transfer,
    TransferType,
)

ACCOUNT_COLUMNS = (
    "id, currency, kind, code, owner_ref, debits_must_not_exceed_credits, credits_must_not_exceed_debits, "
    "limit_minor, status, debits_pending, debits_posted, credits_pending, credits_posted, created_at"
)

TRANSFER_COLUMNS = (
    "t.seq, t.id, t.type, t.debit_account_id, t.credit_account_id, t.amount_minor, t.currency, t.code, "
    "t.pending_id, t.timeout_s, t.expires_at, t.reversal_of, t.metadata, t.created_at, "
    "(SELECT r.type FROM ledger.transfers r WHERE r.pending_id = t.id) AS resolution"
)


def account_from_row(row: Any) -> Account:
    return Account(
        id=row.id,
        currency=row.currency,
        kind=AccountKind(row.kind),
        code=row.code,
        owner_ref=row.owner_ref,
        debits_must_not_exceed_credits=row.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=row.credits_must_not_exceed_debits,
        limit_minor=row.limit_minor,
        status=AccountStatus(row.status),
        balances=Balances(row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted),
        created_at=row.created_at,
    )


def transfer_from_row(row: Any) -> Transfer:
    kind = TransferType(row.type)
    pending_status = None
    if kind is TransferType.PENDING:
        pending_status = (
            PendingStatus.PENDING if row.resolution is None else RESOLUTION_STATUS[TransferType(row.resolution)]
        )
    return Transfer(
        seq=row.seq,
        id=row.id,
        type=kind,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency.strip(),
        code=row.code,
        pending_id=row.pending_id,
        timeout_s=row.timeout_s,
        expires_at=row.expires_at,
        reversal_of=row.reversal_of,
        metadata=row.metadata,
        created_at=row.created_at,
        pending_status=pending_status,
    )


async def get_account(conn: AsyncConnection, account_id: uuid.UUID) -> Account | None:
    row = (
        await conn.execute(text(f"SELECT {ACCOUNT_COLUMNS} FROM ledger.accounts WHERE id = :id"), {"id": account_id})
    ).first()
    return None if row is None else account_from_row(row)


async def get_transfer(conn: AsyncConnection, transfer_id: uuid.UUID) -> Transfer | None:
    row = (
        await conn.execute(
            text(f"SELECT {TRANSFER_COLUMNS} FROM ledger.transfers t WHERE t.id = :id"), {"id": transfer_id}
        )
    ).first()
    return None if row is None else transfer_from_row(row)


async def account_transfers(
    conn: AsyncConnection, account_id: uuid.UUID, before_seq: int | None, limit: int
) -> list[Transfer]:
    """Newest first; each side read through its own index, merged, then cut to ``limit``."""
    bound = before_seq if before_seq is not None else 2**63 - 1
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT * FROM (
                    (SELECT {TRANSFER_COLUMNS} FROM ledger.transfers t
                      WHERE t.debit_account_id = :account AND t.seq < :bound ORDER BY t.seq DESC LIMIT :limit)
                    UNION ALL
                    (SELECT {TRANSFER_COLUMNS} FROM ledger.transfers t
                      WHERE t.credit_account_id = :account AND t.seq < :bound ORDER BY t.seq DESC LIMIT :limit)
                ) s ORDER BY s.seq DESC LIMIT :limit
                """
            ),
            {"account": account_id, "bound": bound, "limit": limit},
        )
    ).all()
    return [transfer_from_row(row) for row in rows]


async def expired_holds(conn: AsyncConnection, now: Any, limit: int) -> list[uuid.UUID]:
    rows = await conn.execute(
        text("SELECT transfer_id FROM ledger.open_holds WHERE expires_at <= :now ORDER BY expires_at LIMIT :limit"),
        {"now": now, "limit": limit},
    )
    return [row.transfer_id for row in rows]


#: Each query returns rows describing a broken invariant; an empty result means it holds.
VERIFY_CHECKS: dict[str, str] = {
    "debits equal credits per currency": """
        SELECT currency, sum(debits_posted) AS debits_posted, sum(credits_posted) AS credits_posted,
               sum(debits_pending) AS debits_pending, sum(credits_pending) AS credits_pending
          FROM ledger.accounts GROUP BY currency
        HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)
    """,
    "balances equal the sums of their transfers": """
        WITH effect AS (
            SELECT t.debit_account_id AS account,
                   CASE WHEN t.type IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END AS dpo,
                   CASE WHEN t.type = 'pending' AND h.transfer_id IS NOT NULL THEN t.amount_minor ELSE 0 END AS dp,
                   0::bigint AS cpo, 0::bigint AS cp
              FROM ledger.transfers t LEFT JOIN ledger.open_holds h ON h.transfer_id = t.id
            UNION ALL
            SELECT t.credit_account_id, 0, 0,
                   CASE WHEN t.type IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END,
                   CASE WHEN t.type = 'pending' AND h.transfer_id IS NOT NULL THEN t.amount_minor ELSE 0 END
              FROM ledger.transfers t LEFT JOIN ledger.open_holds h ON h.transfer_id = t.id
        ), sums AS (
            SELECT account, sum(dpo) AS dpo, sum(dp) AS dp, sum(cpo) AS cpo, sum(cp) AS cp
              FROM effect GROUP BY account
        )
        SELECT a.id, a.debits_posted, coalesce(s.dpo, 0) AS expected_debits_posted,
               a.debits_pending, coalesce(s.dp, 0) AS expected_debits_pending,
               a.credits_posted, coalesce(s.cpo, 0) AS expected_credits_posted,
               a.credits_pending, coalesce(s.cp, 0) AS expected_credits_pending
          FROM ledger.accounts a LEFT JOIN sums s ON s.account = a.id
         WHERE a.debits_posted <> coalesce(s.dpo, 0) OR a.debits_pending <> coalesce(s.dp, 0)
            OR a.credits_posted <> coalesce(s.cpo, 0) OR a.credits_pending <> coalesce(s.cp, 0)
    """,
    "open holds are exactly the unresolved pending transfers": """
        SELECT t.id, (h.transfer_id IS NOT NULL) AS has_hold, r.id AS resolved_by
          FROM ledger.transfers t
          LEFT JOIN ledger.open_holds h ON h.transfer_id = t.id
          LEFT JOIN ledger.transfers r ON r.pending_id = t.id
         WHERE t.type = 'pending' AND ((h.transfer_id IS NULL) = (r.id IS NULL))
        UNION ALL
        SELECT h.transfer_id, true, NULL FROM ledger.open_holds h
          JOIN ledger.transfers t ON t.id = h.transfer_id WHERE t.type <> 'pending'
    """,
    "no account breaks its balance flags": """
        SELECT id FROM ledger.accounts
         WHERE (debits_must_not_exceed_credits
                AND debits_pending::numeric + debits_posted > credits_posted::numeric + limit_minor)
            OR (credits_must_not_exceed_debits
                AND credits_pending::numeric + credits_posted > debits_posted::numeric + limit_minor)
    """,
    "every transfer references existing accounts of its currency": """
        SELECT t.id FROM ledger.transfers t
          LEFT JOIN ledger.accounts d ON d.id = t.debit_account_id
          LEFT JOIN ledger.accounts c ON c.id = t.credit_account_id
         WHERE d.id IS NULL OR c.id IS NULL OR d.currency <> t.currency OR c.currency <> t.currency
    """,
    "every post, void and reversal points at an existing transfer": """
        SELECT r.id, 'pending_id' AS reference, r.pending_id AS missing
          FROM ledger.transfers r LEFT JOIN ledger.transfers p ON p.id = r.pending_id
         WHERE r.pending_id IS NOT NULL AND p.id IS NULL
        UNION ALL
        SELECT r.id, 'reversal_of', r.reversal_of
          FROM ledger.transfers r LEFT JOIN ledger.transfers o ON o.id = r.reversal_of
         WHERE r.reversal_of IS NOT NULL AND o.id IS NULL
    """,
    "reversals undo posted transfers, along their accounts, within their amount": """
        SELECT o.id, sum(r.amount_minor) AS reversed, o.amount_minor
          FROM ledger.transfers r JOIN ledger.transfers o ON o.id = r.reversal_of
         GROUP BY o.id, o.amount_minor, o.type
        HAVING o.type NOT IN ('posted', 'post_pending') OR sum(r.amount_minor) > o.amount_minor
            OR bool_or(r.debit_account_id <> o.credit_account_id OR r.credit_account_id <> o.debit_account_id
                       OR r.currency <> o.currency OR r.type <> 'posted')
    """,
    "post and void amounts stay within their pending transfer": """
        SELECT r.id FROM ledger.transfers r JOIN ledger.transfers p ON p.id = r.pending_id
         WHERE p.type <> 'pending' OR r.amount_minor > p.amount_minor
            OR r.debit_account_id <> p.debit_account_id OR r.credit_account_id <> p.credit_account_id
    """,
}


async def verify(conn: AsyncConnection, sample_limit: int = 20) -> list[str]:
    problems: list[str] = []
    for name, sql in VERIFY_CHECKS.items():
        rows = (await conn.execute(text(f"SELECT * FROM ({sql}) v LIMIT :limit"), {"limit": sample_limit})).all()
        for row in rows:
            problems.append(f"{name}: {dict(row._mapping)}")
    return problems
