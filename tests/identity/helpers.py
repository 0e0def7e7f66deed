"""Helpers for identity tests: principals created through the public service API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg

from smartbank.identity.credentials import Keys, totp_code, totp_step
from smartbank.identity.model import PrincipalKind, StaffRole
from smartbank.identity.service import IdentityService
from smartbank.kernel.clock import Clock
from smartbank.platform.db import Database, create_engine
from smartbank.platform.keys import load_key
from smartbank.platform.settings import Settings

PASSWORD = "violet-harbour-lantern-42"


def unique_login() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def service(db: Database, clock: Clock, settings: Settings) -> IdentityService:
    return IdentityService(db, clock, Keys(load_key(settings, "secret")))


async def create_principal(
    identity: IdentityService,
    db: Database,
    *,
    login: str | None = None,
    kind: PrincipalKind = PrincipalKind.CUSTOMER,
    roles: frozenset[StaffRole] = frozenset(),
    password: str = PASSWORD,
) -> tuple[uuid.UUID, str]:
    principal_id = uuid.uuid4()
    login = login or unique_login()
    async with db.transaction() as conn:
        await identity.create_login(
            conn, principal_id=principal_id, kind=kind, login=login, password=password, roles=roles
        )
    return principal_id, login


def create_principal_sync(
    database_url: str,
    settings: Settings,
    clock: Clock,
    *,
    kind: PrincipalKind = PrincipalKind.CUSTOMER,
    roles: frozenset[StaffRole] = frozenset(),
) -> tuple[uuid.UUID, str]:
    """For synchronous HTTP tests: create a principal on a short-lived engine."""

    async def go() -> tuple[uuid.UUID, str]:
        db = Database(create_engine(database_url, settings))
        try:
            return await create_principal(service(db, clock, settings), db, kind=kind, roles=roles)
        finally:
            await db.dispose()

    return asyncio.run(go())


def code_now(secret: str, clock: Clock) -> str:
    return totp_code(secret, totp_step(clock.now()))


def audit_rows(database_url: str, actor_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """(action, outcome, details) of every audit row about or by ``actor_id``, in order."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT action, outcome, details FROM platform.audit_log"
            " WHERE actor_id = %s OR subject_id = %s ORDER BY seq",
            (actor_id, str(actor_id)),
        ).fetchall()


def one(database_url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]
