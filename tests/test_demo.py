"""The demo bank: a small one seeded through the services on a fresh database, then checked from the
outside (its tables, the ledger and audit checks, and the HTTP API as a customer sees it)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import psycopg
import pyotp
import pytest
from fastapi.testclient import TestClient
from stdnum.cn import ric
from typer.testing import CliRunner

from smartbank.cli import app
from smartbank.demo import (
    APPLICANTS,
    BUSINESSES,
    CUSTOMER_PASSWORD,
    STAFF_LOGINS,
    STAFF_PASSWORD,
    DemoIncomplete,
    Outcome,
    Plan,
    make_plan,
    sample_logins,
    seed,
)
from smartbank.kernel.clock import SystemClock
from smartbank.ledger.service import LedgerService
from smartbank.platform import audit
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings, get_settings
from smartbank.web.app import create_app

CUSTOMERS = 12
MONTHS = 2
SEED = 7
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Seeded:
    url: str
    plan: Plan
    first: Outcome


def _run(
    settings: Settings, url: str, seed_value: int = SEED, customers: int = CUSTOMERS, months: int = MONTHS
) -> Outcome:
    return asyncio.run(seed(settings, url, customers=customers, months=months, seed_value=seed_value, now=lambda: NOW))


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())


def _one(url: str, sql: str, *params: Any) -> Any:
    return _rows(url, sql, *params)[0][0]


COUNTS = {
    "customers": "SELECT count(*) FROM customers.customers",
    "principals": "SELECT count(*) FROM identity.principals",
    "accounts": "SELECT count(*) FROM banking.accounts",
    "payees": "SELECT count(*) FROM banking.payees",
    "payments": "SELECT count(*) FROM banking.payments",
    "entries": "SELECT count(*) FROM banking.entries",
    "transfers": "SELECT count(*) FROM ledger.transfers",
    "audit": "SELECT count(*) FROM platform.audit_log",
    "outbox": "SELECT count(*) FROM platform.outbox",
}


def _counts(url: str) -> dict[str, int]:
    return {name: int(_one(url, sql)) for name, sql in COUNTS.items()}


@pytest.fixture(scope="module")
def seeded(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Seeded]:
    url = fresh_database()
    outcome = _run(settings, url)
    yield Seeded(url, make_plan(CUSTOMERS, MONTHS, SEED, NOW), outcome)


def test_the_plan_is_the_seed_s_alone() -> None:
    first, again, other = (make_plan(CUSTOMERS, MONTHS, s, NOW) for s in (SEED, SEED, SEED + 1))
    assert first == again
    assert [p.contact for p in first.people] != [p.contact for p in other.people]


def test_counts_people_and_documents(seeded: Seeded) -> None:
    url = seeded.url
    assert seeded.first.created
    total = CUSTOMERS + len(BUSINESSES) + APPLICANTS
    assert seeded.first.customers == total
    statuses = dict(_rows(url, "SELECT kyc_status, count(*) FROM customers.customers GROUP BY 1"))
    assert statuses == {"verified": CUSTOMERS + len(BUSINESSES), "pending": APPLICANTS}
    scripts = dict(_rows(url, "SELECT name_script, count(*) FROM customers.customers GROUP BY 1"))
    assert scripts.get("chinese", 0) > 0 and scripts.get("latin", 0) > 0, scripts
    people = _rows(url, "SELECT phone, email, id_type, id_number, date_of_birth, legal_name FROM customers.customers")
    for phone, email, id_type, id_number, birth, name in people:
        assert (phone is None) != (email is None), name
        if phone is not None:
            number = phonenumbers.parse(phone)
            assert phonenumbers.is_valid_number(number), phone
            assert phonenumbers.region_code_for_number(number) == "CN", phone
            assert phonenumbers.number_type(number) is phonenumbers.PhoneNumberType.MOBILE, phone
        else:
            assert email.endswith("@example.com"), email
        if id_type == "prc_resident_id":
            assert ric.is_valid(id_number), id_number
            assert ric.get_birth_date(id_number) == birth, (id_number, birth)
        else:
            assert id_type == "passport"
    # Every verified customer has the current account opened on approval; some a savings account.
    accounts = dict(_rows(url, "SELECT product, count(*) FROM banking.accounts GROUP BY 1"))
    assert accounts["current"] == CUSTOMERS + len(BUSINESSES)
    assert accounts.get("savings", 0) == sum(1 for p in seeded.plan.people if p.savings) > 0
    staff = _rows(url, "SELECT login, roles FROM identity.principals WHERE kind = 'staff' ORDER BY login")
    assert sorted((login, roles[0]) for login, roles in staff) == sorted(
        (login, role.value) for role, login in STAFF_LOGINS.items()
    )


def test_history_spans_the_months_and_every_movement_completed(seeded: Seeded) -> None:
    url = seeded.url
    statuses = dict(_rows(url, "SELECT status, count(*) FROM banking.payments GROUP BY 1"))
    assert statuses == {"completed": seeded.plan.movements}
    kinds = dict(_rows(url, "SELECT kind, count(*) FROM banking.payments GROUP BY 1"))
    assert set(kinds) == {"transfer", "cash_deposit"}
    first, last = _rows(url, "SELECT min(posted_at), max(posted_at) FROM banking.entries")[0]
    assert first >= seeded.plan.start and last <= NOW
    assert last - first > timedelta(days=30 * MONTHS - 10)
    months = _one(
        url, "SELECT count(DISTINCT date_trunc('month', posted_at AT TIME ZONE 'Asia/Shanghai')) FROM banking.entries"
    )
    assert months >= MONTHS + 1
    # Each payment's ledger transfer was posted at the time the payment was made (the demo's clock).
    skew = _one(
        url,
        "SELECT max(abs(extract(epoch FROM t.created_at - p.created_at))) FROM banking.payments p "
        "JOIN ledger.transfers t ON t.id = p.transfer_id",
    )
    assert skew == 0
    references = {r for (r,) in _rows(url, "SELECT DISTINCT split_part(description, ' ', 1) FROM banking.entries")}
    assert {"Salary", "Rent", "Electricity", "Opening"} <= references


def test_ledger_and_audit_checks_pass(seeded: Seeded, settings: Settings) -> None:
    async def check() -> tuple[list[str], audit.VerifyReport]:
        db = Database(create_engine(seeded.url, settings))
        try:
            return await LedgerService(db, SystemClock()).verify(), await audit.verify(db)
        finally:
            await db.dispose()

    problems, report = asyncio.run(check())
    assert problems == []
    assert report.ok and report.rows > 0, report.problems


def test_a_second_run_adds_nothing(seeded: Seeded, settings: Settings) -> None:
    before = _counts(seeded.url)
    again = _run(settings, seeded.url)
    assert not again.created
    assert _counts(seeded.url) == before
    # Other sizes of the same seed find the same demo there.
    assert not _run(settings, seeded.url, customers=CUSTOMERS + 5, months=MONTHS + 1).created
    assert _counts(seeded.url) == before


def test_another_seed_on_a_seeded_bank_refuses_and_writes_nothing(seeded: Seeded, settings: Settings) -> None:
    before = _counts(seeded.url)
    with pytest.raises(DemoIncomplete, match="staff login"):
        _run(settings, seeded.url, seed_value=SEED + 1)
    assert _counts(seeded.url) == before


def test_production_refuses(settings: Settings) -> None:
    with pytest.raises(DemoIncomplete, match="production"):
        asyncio.run(seed(settings.model_copy(update={"env": "production"}), "postgresql://unused/none"))


def test_a_demo_customer_and_staff_log_in_over_http(seeded: Seeded, settings: Settings) -> None:
    person = sample_logins(seeded.plan)[0]
    assert person.chinese
    with TestClient(create_app(settings, database_url=seeded.url), base_url="https://testserver") as client:
        response = client.post(
            "/v1/auth/login", json={"login": person.login, "password": CUSTOMER_PASSWORD, "client": "token"}
        )
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        accounts = client.get("/v1/accounts", headers=headers).json()["items"]
        assert {a["product"] for a in accounts} == ({"current", "savings"} if person.savings else {"current"})
        current = next(a for a in accounts if a["product"] == "current")
        entries = client.get(
            f"/v1/accounts/{current['id']}/transactions", params={"limit": 100}, headers=headers
        ).json()
        items = entries["items"]
        assert items, entries
        assert entries["next_cursor"] is None  # two months fit in a page: the entries add up to the balance
        assert sum(int(e["amount_minor"]) for e in items) == current["posted_minor"] > 0
        assert any(e["description"].startswith("Salary") for e in items)
        staff = client.post(
            "/v1/auth/login",
            json={"login": STAFF_LOGINS[next(iter(STAFF_LOGINS))], "password": STAFF_PASSWORD, "client": "token"},
        )
        assert staff.status_code == 200 and staff.json()["status"] == "authenticated", staff.text


def test_identity_documents_match_birth_dates_in_the_plan() -> None:
    plan = make_plan(60, 1, SEED, NOW)
    today = NOW.date()
    for p in (*plan.people, *plan.applicants):
        assert p.birth <= date(today.year - 18, today.month, min(today.day, 28))
        if p.chinese:
            assert ric.get_birth_date(p.id_number) == p.birth


def test_with_staff_mfa_required_demo_staff_are_enrolled_and_pass_mfa(
    fresh_database: Callable[[], str], settings: Settings
) -> None:
    url = fresh_database()
    strict = settings.model_copy(update={"staff_mfa_required": True})
    outcome = asyncio.run(seed(strict, url, customers=2, months=1, seed_value=SEED, now=lambda: NOW))
    assert [s.login for s in outcome.staff] == list(STAFF_LOGINS.values())
    assert all(s.totp_secret for s in outcome.staff)
    admin = outcome.staff[0]
    assert admin.totp_secret is not None
    with TestClient(create_app(strict, database_url=url), base_url="https://testserver") as client:
        body = {"login": admin.login, "password": STAFF_PASSWORD, "client": "token"}
        first = client.post("/v1/auth/login", json=body).json()
        assert first["status"] == "mfa_required", first
        code = pyotp.TOTP(admin.totp_secret).now()
        done = client.post("/v1/auth/mfa/verify", json={"challenge": first["mfa_challenge"], "code": code})
        assert done.status_code == 200 and done.json()["status"] == "authenticated", done.text


@pytest.fixture
def cli_url(fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    url = fresh_database()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SMARTBANK_DATA_DIR", str(tmp_path))  # the sandbox app's key file goes there
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_the_command_seeds_once_and_prints_the_logins(cli_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--customers", "3", "--months", "1", "--seed", "11"])
    assert first.exit_code == 0, first.output
    assert "demo bank seeded" in first.output
    for login in STAFF_LOGINS.values():
        assert login in first.output
    assert CUSTOMER_PASSWORD in first.output and STAFF_PASSWORD in first.output
    assert "/app/" in first.output and "/staff/" in first.output and "/docs" in first.output
    customers = _one(cli_url, "SELECT count(*) FROM customers.customers")
    assert customers == 3 + len(BUSINESSES) + APPLICANTS

    # A sample open-banking partner app comes with the demo: registered once, its key file kept.
    key_file = Path(os.environ["SMARTBANK_DATA_DIR"]) / "sandbox-partner.json"
    partner = json.loads(key_file.read_text())
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert partner["client_id"] in first.output and "examples/openbanking_flow.py" in first.output
    assert _one(cli_url, "SELECT count(*) FROM openbanking.clients") == 1

    again = runner.invoke(app, ["demo", "--customers", "3", "--months", "1", "--seed", "11"])
    assert again.exit_code == 0, again.output
    assert "already seeded" in again.output
    assert _one(cli_url, "SELECT count(*) FROM customers.customers") == customers
    assert partner["client_id"] in again.output
    assert _one(cli_url, "SELECT count(*) FROM openbanking.clients") == 1

    monkeypatch.setenv("SMARTBANK_ENV", "production")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["demo"])
    assert refused.exit_code == 1 and "production" in refused.output
