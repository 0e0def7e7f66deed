"""Read-side SQL for customers. Every list is bounded."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.customers.model import (
    Address,
    ContactKind,
    CustomerProfile,
    IdType,
    KycStatus,
    PaymentProfile,
    Tier,
    Verification,
    VerificationPurpose,
    mask_id_number,
)

CUSTOMER_COLUMNS = (
    "c.id, c.phone, c.email, c.legal_name, c.date_of_birth, c.id_type, c.id_number, c.address, c.kyc_status, "
    "c.kyc_submitted_at, c.kyc_reason, c.tier, c.created_at, c.updated_at"
)

VERIFICATION_COLUMNS = (
    "id, purpose, kind, address, customer_id, code_hash, attempts, sends, last_sent_at, expires_at, consumed_at"
)


def profile_from_row(row: Any) -> CustomerProfile:
    return CustomerProfile(
        id=row.id,
        phone=row.phone,
        email=row.email,
        legal_name=row.legal_name,
        date_of_birth=row.date_of_birth,
        id_type=None if row.id_type is None else IdType(row.id_type),
        id_number_masked=None if row.id_number is None else mask_id_number(row.id_number),
        address=None if row.address is None else Address.from_json(row.address),
        kyc_status=KycStatus(row.kyc_status),
        kyc_submitted_at=row.kyc_submitted_at,
        kyc_reason=row.kyc_reason,
        tier=row.tier,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def verification_from_row(row: Any) -> Verification:
    return Verification(
        id=row.id,
        purpose=VerificationPurpose(row.purpose),
        kind=ContactKind(row.kind),
        address=row.address,
        customer_id=row.customer_id,
        code_hash=bytes(row.code_hash),
        attempts=row.attempts,
        sends=row.sends,
        last_sent_at=row.last_sent_at,
        expires_at=row.expires_at,
        consumed_at=row.consumed_at,
    )


async def get_customer(conn: AsyncConnection, customer_id: uuid.UUID, *, lock: bool = False) -> CustomerProfile | None:
    sql = f"SELECT {CUSTOMER_COLUMNS} FROM customers.customers c WHERE c.id = :id"
    if lock:
        sql += " FOR NO KEY UPDATE"
    row = (await conn.execute(text(sql), {"id": customer_id})).first()
    return None if row is None else profile_from_row(row)


async def lock_verification(conn: AsyncConnection, verification_id: uuid.UUID) -> Verification | None:
    row = (
        await conn.execute(
            text(f"SELECT {VERIFICATION_COLUMNS} FROM customers.verifications WHERE id = :id FOR UPDATE"),
            {"id": verification_id},
        )
    ).first()
    return None if row is None else verification_from_row(row)


async def get_tier(conn: AsyncConnection, code: str) -> Tier | None:
    row = (
        await conn.execute(
            text(
                "SELECT code, per_payment_limit_minor, daily_limit_minor, currency FROM customers.tiers "
                "WHERE code = :code"
            ),
            {"code": code},
        )
    ).first()
    return None if row is None else Tier(row.code, row.per_payment_limit_minor, row.daily_limit_minor, row.currency)


async def list_tiers(conn: AsyncConnection) -> list[Tier]:
    rows = (
        await conn.execute(
            text(
                "SELECT code, per_payment_limit_minor, daily_limit_minor, currency FROM customers.tiers "
                "ORDER BY rank LIMIT 100"
            )
        )
    ).all()
    return [Tier(r.code, r.per_payment_limit_minor, r.daily_limit_minor, r.currency) for r in rows]


async def payment_profile(conn: AsyncConnection, customer_id: uuid.UUID) -> PaymentProfile | None:
    row = (
        await conn.execute(
            text(
                """
                SELECT c.id, c.kyc_status, c.tier, t.per_payment_limit_minor, t.daily_limit_minor, t.currency
                  FROM customers.customers c JOIN customers.tiers t ON t.code = c.tier
                 WHERE c.id = :id
                """
            ),
            {"id": customer_id},
        )
    ).first()
    if row is None:
        return None
    return PaymentProfile(
        customer_id=row.id,
        kyc_status=KycStatus(row.kyc_status),
        tier=row.tier,
        per_payment_limit_minor=row.per_payment_limit_minor,
        daily_limit_minor=row.daily_limit_minor,
        currency=row.currency.strip(),
    )


async def kyc_queue(
    conn: AsyncConnection, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[CustomerProfile]:
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT {CUSTOMER_COLUMNS} FROM customers.customers c
                 WHERE c.kyc_status = 'pending'
                   AND (CAST(:after_at AS timestamptz) IS NULL OR (c.kyc_submitted_at, c.id) > (:after_at, :after_id))
                 ORDER BY c.kyc_submitted_at, c.id LIMIT :limit
                """
            ),
            {"after_at": after[0] if after else None, "after_id": after[1] if after else None, "limit": limit},
        )
    ).all()
    return [profile_from_row(r) for r in rows]


def _like_prefix(key: str) -> str:
    return key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search_by_name(conn: AsyncConnection, key: str, after: uuid.UUID | None, limit: int) -> list[CustomerProfile]:
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT {CUSTOMER_COLUMNS} FROM customers.customers c
                 WHERE c.id IN (SELECT k.customer_id FROM customers.name_keys k WHERE k.key LIKE :prefix ESCAPE '\\')
                   AND (CAST(:after AS uuid) IS NULL OR c.id > :after)
                 ORDER BY c.id LIMIT :limit
                """
            ),
            {"prefix": _like_prefix(key), "after": after, "limit": limit},
        )
    ).all()
    return [profile_from_row(r) for r in rows]


async def search_by_phone(
    conn: AsyncConnection, phone: str, after: uuid.UUID | None, limit: int
) -> list[CustomerProfile]:
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT {CUSTOMER_COLUMNS} FROM customers.customers c
                 WHERE c.phone = :phone AND (CAST(:after AS uuid) IS NULL OR c.id > :after)
                 ORDER BY c.id LIMIT :limit
                """
            ),
            {"phone": phone, "after": after, "limit": limit},
        )
    ).all()
    return [profile_from_row(r) for r in rows]


async def search_by_id_hashes(
    conn: AsyncConnection, hashes: Sequence[bytes], after: uuid.UUID | None, limit: int
) -> list[CustomerProfile]:
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT {CUSTOMER_COLUMNS} FROM customers.customers c
                 WHERE c.id_number_hash = ANY(:hashes) AND (CAST(:after AS uuid) IS NULL OR c.id > :after)
                 ORDER BY c.id LIMIT :limit
                """
            ),
            {"hashes": list(hashes), "after": after, "limit": limit},
        )
    ).all()
    return [profile_from_row(r) for r in rows]
