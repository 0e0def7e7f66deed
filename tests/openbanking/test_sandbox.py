"""The sandbox: ``smartbank openbanking sandbox`` registers a sample partner app, and the example script
``examples/openbanking_flow.py`` runs the whole flow with it (the browser part played by the test)."""

from __future__ import annotations

import importlib.util
import json
import re
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartbank.cli import app
from smartbank.platform.settings import Settings, get_settings
from tests.banking.http_helpers import Bank, ledger_posted, onboard

from .helpers import customer_with_mfa, decide, open_bank, sign_in

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openbanking_flow.py"


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.94") as opened:
        yield opened


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("openbanking_flow", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sandbox_app_runs_the_whole_flow_with_the_example_script(
    bank: Bank, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", bank.url)
    get_settings.cache_clear()
    config = tmp_path / "partner.json"
    try:
        result = CliRunner().invoke(
            app, ["openbanking", "sandbox", "--config", str(config), "--redirect-uri", "https://partner.example/cb"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    written = json.loads(config.read_text(encoding="utf-8"))
    assert written["client_id"] in result.stdout and "examples/openbanking_flow.py" in result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "d" in written["private_jwk"]

    who = customer_with_mfa(bank)
    payee = onboard(bank)
    before = ledger_posted(bank.url, who.customer.account_id)

    printed: list[str] = []

    def browser(prompt: str) -> str:
        """The customer: opens the printed authorize URL, logs in, allows with MFA; answers where it landed."""
        printed.append(capsys.readouterr().out)
        url = re.findall(r"(http\S+/oauth2/authorize\?\S+)", printed[-1])[-1]
        screen = bank.client.get(url, follow_redirects=False)
        assert screen.status_code == 303, screen.text
        sign_in(bank, who, "/app/")
        answer = decide(bank, who, screen.headers["location"])
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"])

    monkeypatch.setattr("builtins.input", browser)
    monkeypatch.setattr(
        sys,
        "argv",
        ["openbanking_flow.py", "--config", str(config), "--pay-to", payee.account_number, "--amount", "2.50"],
    )
    example = _example()
    # The test bank's clock runs ahead of the wall clock (each MFA code moves it on a step): the
    # script's assertions and signatures are dated by it, as a partner's would be by the real time.
    wall = example.time.time
    monkeypatch.setattr(example.time, "time", lambda: max(wall(), bank.clock.now().timestamp()))
    example.main(bank.client)
    out = "".join(printed) + capsys.readouterr().out
    assert f"account {who.customer.account_number}: ITBD 1000.00 CNY, ITAV 1000.00 CNY" in out
    assert re.search(r"payment dp-\S+: ACSC", out), out
    assert ledger_posted(bank.url, who.customer.account_id) == before - 250
