"""``smartbank staff create``: a staff login with roles and a one-time password."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from smartbank.cli import app
from smartbank.platform import audit
from smartbank.platform.settings import get_settings


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
    audit._keys.clear()


def test_staff_create_prints_a_one_time_password_that_logs_in(cli_database: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["staff", "create", "--login", "Teller.One@Bank.example", "--role", "teller", "--role", "crm_agent"]
    )
    assert result.exit_code == 0, result.output
    password = result.stdout.strip().splitlines()[-1]
    assert len(password) >= 20
    with psycopg.connect(cli_database) as conn:
        row = conn.execute(
            "SELECT kind, roles, password_hash LIKE '$argon2id$v=19$m=47104,%%' FROM identity.principals"
            " WHERE login = 'teller.one@bank.example'"
        ).fetchone()
        actions = conn.execute(
            "SELECT action FROM platform.audit_log WHERE subject_id = ("
            " SELECT id::text FROM identity.principals WHERE login = 'teller.one@bank.example') ORDER BY seq"
        ).fetchall()
    assert row == ("staff", ["crm_agent", "teller"], True)
    assert actions == [("identity.principal_created",), ("identity.staff_created",)]
    assert password not in str(actions)

    again = runner.invoke(app, ["staff", "create", "--login", "teller.one@bank.example", "--role", "admin"])
    assert again.exit_code == 1 and "login_taken" in again.output
    unknown = runner.invoke(app, ["staff", "create", "--login", "x@bank.example", "--role", "janitor"])
    assert unknown.exit_code == 1 and "validation_error" in unknown.output


def test_staff_create_reads_a_password_from_stdin_and_applies_the_policy(cli_database: str) -> None:
    runner = CliRunner()
    weak = runner.invoke(
        app, ["staff", "create", "--login", "ops@bank.example", "--role", "admin", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code == 1 and "weak_password" in weak.output
    ok = runner.invoke(
        app,
        ["staff", "create", "--login", "ops@bank.example", "--role", "admin", "--password-stdin"],
        input="violet-harbour-lantern-42\n",
    )
    assert ok.exit_code == 0, ok.output
    assert "violet-harbour-lantern-42" not in ok.output
