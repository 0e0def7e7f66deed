"""The money-movement budget through HTTP: its per-principal limit comes from settings, a refused
request writes nothing, and an anonymous caller is refused by authentication before it is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from smartbank.platform.settings import Settings

from .http_helpers import Bank, add_payee, bearer, error, ledger_posted, login, onboard, open_bank, scalar


@pytest.fixture(scope="module")
def bank(banking_url: str, settings: Settings) -> Iterator[Bank]:
    tight = settings.model_copy(update={"money_move_per_principal_per_min": 2})
    with open_bank(banking_url, tight) as opened:
        yield opened


def test_the_per_principal_money_movement_limit_comes_from_settings_and_a_refusal_writes_nothing(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=10_000)
    bob = onboard(bank)
    payee_id = add_payee(bank, alice, bob)
    bank.clock.advance(timedelta(hours=25))
    token = login(bank, alice.login)
    body = {
        "from_account_id": str(alice.account_id),
        "to_payee_id": str(payee_id),
        "currency": "CNY",
        "amount_minor": 10,
    }

    def pay(key: str) -> Any:
        return bank.client.post("/v1/payments", json=body, headers={**bearer(token), "Idempotency-Key": key})

    assert [pay(f"rl-{n}").status_code for n in range(2)] == [201, 201]
    refused = pay("rl-2")
    assert error(refused) == (429, "rate_limited")
    assert refused.headers["retry-after"] == str(60 - bank.clock.now().second % 60)
    assert refused.json()["error"]["details"]["scope"] == "money.move"
    assert scalar(bank.url, "SELECT count(*) FROM banking.payments WHERE idempotency_key = 'rl-2'") == 0
    assert ledger_posted(bank.url, bob.account_id) == 20

    # A minute later the budget is back.
    bank.clock.advance(timedelta(minutes=1))
    assert pay("rl-2").status_code == 201


def test_an_anonymous_payment_is_401_and_not_counted(bank: Bank) -> None:
    bank.clock.advance(timedelta(hours=1))
    for n in range(3):
        response = bank.client.post("/v1/payments", json={}, headers={"Idempotency-Key": f"anon-{n}"})
        assert error(response) == (401, "unauthenticated")
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM identity.rate_counters WHERE scope = 'money.move' AND window_start > %s",
            bank.clock.now() - timedelta(minutes=1),
        )
        == 0
    )
