"""Helpers for the customers tests: a SQL fake of the identity domain's Logins, principals, data."""

from __future__ import annotations

import itertools
import secrets
import uuid
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from stdnum.cn import ric

from smartbank.customers.model import Address, ContactKind, CustomerProfile, IdType, KycSubmission
from smartbank.customers.service import CustomerService
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.errors import DomainError, register_statuses
from smartbank.platform.db import Database

# The identity domain registers these; the fake raises them the same way.
register_statuses({"login_taken": 409, "weak_password": 422})

MIN_PASSWORD_CHARS = 12
PASSWORD = "correct horse battery"
TERMS = "2026-11"


class FakeLogins:
    """Behaves as the identity service's ``create_login``: writes in the caller's transaction,
    ``login_taken`` for a login that exists, ``weak_password`` for a short password."""

    async def create_login(
        self,
        conn: AsyncConnection,
        *,
        principal_id: uuid.UUID,
        kind: PrincipalKind,
        login: str,
        password: str,
        roles: frozenset[StaffRole] = frozenset(),
    ) -> None:
        if len(password) < MIN_PASSWORD_CHARS:
            raise DomainError("weak_password", "password is too short", min_length=MIN_PASSWORD_CHARS)
        row = (
            await conn.execute(
                text(
                    "INSERT INTO public.fake_logins (login, principal_id, kind) VALUES (:login, :id, :kind) "
                    "ON CONFLICT (login) DO NOTHING RETURNING 1"
                ),
                {"login": login, "id": principal_id, "kind": kind.value},
            )
        ).first()
        if row is None:
            raise DomainError("login_taken", "this login is taken")


async def create_fake_logins_table(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(42)"))
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS public.fake_logins "
                "(login text PRIMARY KEY, principal_id uuid NOT NULL UNIQUE, kind text NOT NULL)"
            )
        )


def random_phone() -> str:
    """A valid mainland mobile number, in national form."""
    return "139" + f"{secrets.randbelow(10**8):08d}"


def random_email() -> str:
    return f"User.{secrets.token_hex(4)}@Example.COM"


_RIC_SEQUENCE = itertools.count(secrets.randbelow(1000))


def make_ric(birth: date, region: str = "110101") -> str:
    """A resident ID number with a correct GB 11643 check digit, never the same twice in a test run
    (up to 1,000 per birth date): customers sharing a database must not share an ID number."""
    body = f"{region}{birth:%Y%m%d}{next(_RIC_SEQUENCE) % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def customer(customer_id: uuid.UUID) -> Principal:
    return Principal(customer_id, PrincipalKind.CUSTOMER)


def staff(*roles: StaffRole) -> Principal:
    return Principal(uuid.uuid4(), PrincipalKind.STAFF, roles=frozenset(roles))


ADDRESS = Address(country="cn", region="北京市", city="北京市", lines=("东城区  东长安街 1 号",), postal_code="100006")


def submission(birth: date = date(1990, 5, 17), *, name: str = "张伟", id_number: str | None = None) -> KycSubmission:
    return KycSubmission(
        legal_name=name,
        date_of_birth=birth,
        id_type=IdType.PRC_RESIDENT_ID,
        id_number=id_number or make_ric(birth),
        address=ADDRESS,
    )


async def last_code(db: Database, recipient: str) -> str:
    async with db.connect() as conn:
        payload = (
            await conn.execute(
                text(
                    "SELECT payload FROM platform.outbox WHERE topic = 'notifications.requested' "
                    "AND payload->>'recipient' = :r ORDER BY seq DESC LIMIT 1"
                ),
                {"r": recipient},
            )
        ).scalar_one()
    return str(payload["params"]["code"])


async def register(
    service: CustomerService, db: Database, phone: str | None = None, *, password: str = PASSWORD
) -> CustomerProfile:
    started = await service.start_registration(ContactKind.PHONE, phone or random_phone())
    async with db.connect() as conn:
        address = (
            await conn.execute(
                text("SELECT address FROM customers.verifications WHERE id = :id"), {"id": started.verification_id}
            )
        ).scalar_one()
    code = await last_code(db, address)
    return await service.complete_registration(
        started.verification_id, code, password=password, accepted_terms=True, terms_version=TERMS
    )


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
