"""Helpers for the banking HTTP tests: the app in a TestClient on a frozen clock, customers onboarded
through the real services (registration, KYC, the account opened on KYC, cash at a branch), logins
over HTTP.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from fastapi.testclient import TestClient
from stdnum.cn import ric

from smartbank.banking.model import CashRequest, PaymentKind
from smartbank.customers.model import Address, ContactKind, IdType, KycDecision, KycSubmission
from smartbank.identity.credentials import totp_code, totp_step
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.ids import new_id
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime, create_app

T = TypeVar("T")

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
PASSWORD = "violet-harbour-lantern-42"
ADDRESS = Address(
    country="CN", region="上海市", city="上海市", lines=("浦东新区 世纪大道 100 号",), postal_code="200120"
)


@dataclass
class Bank:
    """The app under test and its clock."""

    client: TestClient
    clock: FrozenClock
    url: str

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the app's event loop (the services' pools live there)."""
        assert self.client.portal is not None

        async def call() -> T:
            return await fn()

        return self.client.portal.call(call)


@contextlib.contextmanager
def open_bank(database_url: str, settings: Settings, *, client_ip: str = "203.0.113.1") -> Iterator[Bank]:
    """The app in a TestClient whose requests come from ``client_ip`` (so audit rows carry an address)."""
    clock = FrozenClock(START)
    app = create_app(settings, database_url=database_url, clock=clock)
    with TestClient(app, base_url="https://testserver", client=(client_ip, 50000)) as client:
        yield Bank(client, clock, database_url)


def scalar(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]


def all_rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def login(bank: Bank, login_name: str) -> str:
    """A bearer access token from a password login over HTTP (no MFA enrolled)."""
    response = bank.client.post("/v1/auth/login", json={"login": login_name, "password": PASSWORD, "client": "token"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "authenticated", body
    return str(body["access_token"])


def code_now(secret: str, clock: FrozenClock) -> str:
    return totp_code(secret, totp_step(clock.now()))


@dataclass
class Customer:
    id: uuid.UUID
    login: str
    account_id: uuid.UUID
    account_number: str

    @property
    def principal(self) -> Principal:
        return Principal(self.id, PrincipalKind.CUSTOMER)


_births = itertools.count()


def _submission(name: str) -> KycSubmission:
    # A birth date of its own for every customer of the process: ID numbers are unique per customer.
    birth = date(1950, 1, 1) + timedelta(days=next(_births))
    body = f"110101{birth:%Y%m%d}{secrets.randbelow(1000):03d}"
    return KycSubmission(
        legal_name=name,
        date_of_birth=birth,
        id_type=IdType.PRC_RESIDENT_ID,
        id_number=body + ric.calc_check_digit(body + "0"),
        address=ADDRESS,
    )


def teller() -> Principal:
    return Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.TELLER}))


def onboard(bank: Bank, *, fund_minor: int = 0, name: str = "王芳") -> Customer:
    """A registered customer with verified KYC, the CNY account opened on KYC, and cash paid in."""
    email = f"c-{secrets.token_hex(6)}@example.com"
    rt = bank.runtime
    started = bank.run(lambda: rt.customers.start_registration(ContactKind.EMAIL, email))
    code = scalar(
        bank.url,
        "SELECT payload->'params'->>'code' FROM platform.outbox WHERE topic = 'notifications.requested'"
        " AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
        email,
    )
    profile = bank.run(
        lambda: rt.customers.complete_registration(
            started.verification_id, code, password=PASSWORD, accepted_terms=True, terms_version="2026-03"
        )
    )
    me = Principal(profile.id, PrincipalKind.CUSTOMER)
    bank.run(lambda: rt.customers.submit_kyc(me, profile.id, _submission(name)))
    officer = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.CRM_AGENT}))
    bank.run(lambda: rt.customers.decide_kyc(officer, profile.id, KycDecision.VERIFY, "documents checked"))
    # The relay delivers customers.kyc_verified to banking, which opens the account.
    deadline = time.monotonic() + 10
    while not (accounts := bank.run(lambda: rt.banking.list_accounts(me, profile.id))):
        assert time.monotonic() < deadline, "no account was opened on KYC"
        rt.relay.kick()
        time.sleep(0.02)
    (account,) = accounts
    if fund_minor:
        request = CashRequest(PaymentKind.CASH_DEPOSIT, account.id, "0001", fund_minor, "CNY", "opening deposit")
        bank.run(lambda: rt.banking.teller_cash(teller(), f"fund-{account.id}", request))
    return Customer(profile.id, email, account.id, account.number)


def staff_login(bank: Bank, *roles: StaffRole) -> tuple[uuid.UUID, str]:
    """A staff member with these roles, logged in over HTTP: (id, bearer token)."""
    staff_id = new_id()
    login_name = f"staff-{secrets.token_hex(6)}@bank.example"
    rt = bank.runtime

    async def create() -> None:
        async with rt.db.transaction() as conn:
            await rt.identity.create_login(
                conn,
                principal_id=staff_id,
                kind=PrincipalKind.STAFF,
                login=login_name,
                password=PASSWORD,
                roles=frozenset(roles),
            )

    bank.run(create)
    return staff_id, login(bank, login_name)


def add_payee(bank: Bank, payer: Customer, payee: Customer, name: str = "王芳") -> uuid.UUID:
    """A payee added through the service (its 24-hour step-up period runs from the clock's now)."""
    rt = bank.runtime
    return bank.run(lambda: rt.banking.add_payee(payer.principal, name, payee.account_number)).id


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll briefly (the relay projects history one pass behind the ledger)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def ledger_posted(url: str, account_id: uuid.UUID) -> int:
    """The account's posted balance, read from the ledger's table."""
    return int(scalar(url, "SELECT credits_posted - debits_posted FROM ledger.accounts WHERE id = %s", account_id))
