"""Payments through HTTP: end to end between two customers, idempotency under parallel retries, limits,
step-up, frozen accounts, and the Idempotency-Key header's rules.

The app runs on a frozen clock that jumps an hour before each test, so the rate-limit windows of one
test never reach the next. Customers are onboarded through the services; everything under test goes
through HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from smartbank.identity.model import StaffRole
from smartbank.platform.settings import Settings

from .http_helpers import (
    Bank,
    Customer,
    add_payee,
    all_rows,
    bearer,
    code_now,
    error,
    ledger_posted,
    login,
    onboard,
    open_bank,
    scalar,
    staff_login,
    wait_for,
)

PAYMENTS = "/v1/payments"
CLIENT_IP = "203.0.113.10"


@pytest.fixture(scope="module")
def bank(banking_url: str, settings: Settings) -> Iterator[Bank]:
    with open_bank(banking_url, settings, client_ip=CLIENT_IP) as opened:
        yield opened


@pytest.fixture(autouse=True)
def fresh_window(bank: Bank) -> None:
    bank.clock.advance(timedelta(hours=1))


def payments_of(bank: Bank, customer: Customer) -> int:
    return int(
        scalar(
            bank.url, "SELECT count(*) FROM banking.payments WHERE customer_id = %s AND kind = 'transfer'", customer.id
        )
    )


def transfers_from(bank: Bank, account_id: uuid.UUID) -> int:
    return int(scalar(bank.url, "SELECT count(*) FROM ledger.transfers WHERE debit_account_id = %s", account_id))


def pair(bank: Bank, *, fund_minor: int = 1_000_000) -> tuple[Customer, Customer, uuid.UUID]:
    """Alice (funded) with Bob as a payee added more than 24 hours ago, so no step-up is needed."""
    alice = onboard(bank, fund_minor=fund_minor, name="李伟")
    bob = onboard(bank, name="王芳")
    payee_id = add_payee(bank, alice, bob, "Wang Fang")
    bank.clock.advance(timedelta(hours=25))
    return alice, bob, payee_id


def pay(bank: Bank, token: str, key: str, **body: Any) -> Any:
    return bank.client.post(
        PAYMENTS, json={"currency": "CNY", **body}, headers={**bearer(token), "Idempotency-Key": key}
    )


def history(bank: Bank, token: str, account_id: uuid.UUID, **params: Any) -> list[dict[str, Any]]:
    response = bank.client.get(f"/v1/accounts/{account_id}/transactions", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_payment_between_two_customers_moves_exact_amounts_and_shows_in_both_histories(bank: Bank) -> None:
    alice, bob, payee_id = pair(bank)
    alice_token, bob_token = login(bank, alice.login), login(bank, bob.login)

    response = pay(
        bank,
        alice_token,
        "rent-2026-03",
        from_account_id=str(alice.account_id),
        to_payee_id=str(payee_id),
        amount_minor=12550,
        reference="rent March",
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert {k: payment[k] for k in ("kind", "status", "amount_minor", "amount", "currency", "reference")} == {
        "kind": "transfer",
        "status": "completed",
        "amount_minor": 12550,
        "amount": "125.50",
        "currency": "CNY",
        "reference": "rent March",
    }
    assert payment["account_id"] == str(alice.account_id)
    assert payment["counterparty_account_id"] == str(bob.account_id)
    assert payment["payee_id"] == str(payee_id)
    assert payment["failure_code"] is None and payment["step_up"] is False

    # Balances, exact on both sides, through the API and in the ledger.
    mine = bank.client.get("/v1/accounts", headers=bearer(alice_token)).json()["items"]
    assert [(a["id"], a["posted_minor"], a["available_minor"], a["posted"]) for a in mine] == [
        (str(alice.account_id), 987_450, 987_450, "9874.50")
    ]
    theirs = bank.client.get(f"/v1/accounts/{bob.account_id}", headers=bearer(bob_token)).json()
    assert (theirs["posted_minor"], theirs["available_minor"], theirs["number"]) == (12_550, 12_550, bob.account_number)
    assert ledger_posted(bank.url, alice.account_id) == 987_450
    assert ledger_posted(bank.url, bob.account_id) == 12_550

    # History on both sides once the relay has projected the transfer.
    transfer_id = payment["transfer_id"]
    wait_for(lambda: any(e["id"] == transfer_id for e in history(bank, bob_token, bob.account_id)))
    wait_for(lambda: any(e["id"] == transfer_id for e in history(bank, alice_token, alice.account_id)))
    out = next(e for e in history(bank, alice_token, alice.account_id) if e["id"] == transfer_id)
    assert (out["amount_minor"], out["amount"], out["counterparty_number"], out["counterparty_name"]) == (
        -12550,
        "-125.50",
        bob.account_number,
        "Wang Fang",
    )
    assert (out["description"], out["payment_id"], out["kind"]) == ("rent March", payment["id"], "transfer")
    arrived = history(bank, bob_token, bob.account_id)
    assert [(e["id"], e["amount_minor"], e["counterparty_number"], e["counterparty_name"]) for e in arrived] == [
        (transfer_id, 12550, alice.account_number, None)
    ]

    # The payment reads back as it was answered; the payer sees it behind the transaction, the payee does not.
    assert bank.client.get(f"{PAYMENTS}/{payment['id']}", headers=bearer(alice_token)).json() == payment
    detail = bank.client.get(
        f"/v1/accounts/{alice.account_id}/transactions/{transfer_id}", headers=bearer(alice_token)
    ).json()
    assert (detail["transfer_code"], detail["payment"]) == (100, payment)
    seen_by_bob = bank.client.get(
        f"/v1/accounts/{bob.account_id}/transactions/{transfer_id}", headers=bearer(bob_token)
    ).json()
    assert (seen_by_bob["amount_minor"], seen_by_bob["payment"]) == (12550, None)


def test_twenty_parallel_submissions_with_one_key_make_one_transfer_and_twenty_identical_bodies(bank: Bank) -> None:
    alice, bob, payee_id = pair(bank)
    token = login(bank, alice.login)
    body = {"from_account_id": str(alice.account_id), "to_payee_id": str(payee_id), "amount_minor": 4321}

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: pay(bank, token, "parallel-key-1", **body), range(20)))

    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    bodies = {r.content for r in responses}
    assert len(bodies) == 1
    assert responses[0].json()["status"] == "completed"
    assert payments_of(bank, alice) == 1
    assert transfers_from(bank, alice.account_id) == 1
    assert ledger_posted(bank.url, alice.account_id) == 1_000_000 - 4321
    assert ledger_posted(bank.url, bob.account_id) == 4321


def test_the_same_key_with_another_body_is_409_and_writes_nothing(bank: Bank) -> None:
    alice, bob, payee_id = pair(bank)
    token = login(bank, alice.login)
    first = pay(
        bank, token, "key-A", from_account_id=str(alice.account_id), to_payee_id=str(payee_id), amount_minor=100
    )
    assert first.status_code == 201
    again = pay(
        bank, token, "key-A", from_account_id=str(alice.account_id), to_payee_id=str(payee_id), amount_minor=101
    )
    assert error(again) == (409, "idempotency_key_reused")
    assert payments_of(bank, alice) == 1
    assert ledger_posted(bank.url, alice.account_id) == 1_000_000 - 100
    assert ledger_posted(bank.url, bob.account_id) == 100
    # The original request with its key still answers as it first did.
    replay = pay(
        bank, token, "key-A", from_account_id=str(alice.account_id), to_payee_id=str(payee_id), amount_minor=100
    )
    assert (replay.status_code, replay.content) == (201, first.content)


def test_a_payment_over_the_daily_limit_is_refused_with_its_code_and_posts_nothing(bank: Bank) -> None:
    # The basic tier: 5,000.00 a payment, 20,000.00 a day; 2,000.00 needs no step-up (only above it).
    alice, bob, payee_id = pair(bank, fund_minor=3_000_000)
    token = login(bank, alice.login)
    for n in range(10):
        ok = pay(
            bank,
            token,
            f"day-{n}",
            from_account_id=str(alice.account_id),
            to_payee_id=str(payee_id),
            amount_minor=200_000,
        )
        assert ok.status_code == 201, ok.text

    refused = pay(
        bank, token, "day-over", from_account_id=str(alice.account_id), to_payee_id=str(payee_id), amount_minor=1
    )
    assert error(refused) == (409, "daily_limit_exceeded")
    assert refused.json()["error"]["details"] == {"limit_minor": 2_000_000, "used_minor": 2_000_000, "tier": "basic"}
    assert payments_of(bank, alice) == 10
    assert transfers_from(bank, alice.account_id) == 10
    assert ledger_posted(bank.url, alice.account_id) == 1_000_000
    assert ledger_posted(bank.url, bob.account_id) == 2_000_000
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM platform.audit_log WHERE actor_id = %s AND action = 'banking.transfer_submitted'",
            alice.id,
        )
        == 10
    )


def test_step_up_is_required_for_a_new_payee_then_a_totp_step_up_lets_the_payment_through(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=100_000, name="李伟")
    bob = onboard(bank, name="王芳")
    token = login(bank, alice.login)
    enrolment = bank.client.post("/v1/me/mfa", headers=bearer(token))
    assert enrolment.status_code == 201
    secret = enrolment.json()["secret"]
    confirmed = bank.client.post(
        "/v1/me/mfa/confirm", json={"code": code_now(secret, bank.clock)}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.text
    bank.clock.advance(timedelta(minutes=6))  # the MFA of the enrolment is no longer fresh

    added = bank.client.post(
        "/v1/payees", json={"name": "Wang Fang", "account_number": bob.account_number}, headers=bearer(token)
    )
    assert added.status_code == 201, added.text
    payee_id = added.json()["id"]
    body = {"from_account_id": str(alice.account_id), "to_payee_id": payee_id, "amount_minor": 2000}

    refused = pay(bank, token, "new-payee-1", **body)
    assert error(refused) == (403, "step_up_required")
    assert refused.json()["error"]["details"] == {"reason": "new_payee"}
    assert payments_of(bank, alice) == 0
    assert ledger_posted(bank.url, bob.account_id) == 0

    stepped = bank.client.post("/v1/auth/step-up", json={"code": code_now(secret, bank.clock)}, headers=bearer(token))
    assert stepped.status_code == 200, stepped.text
    token = stepped.json()["access_token"]

    accepted = pay(bank, token, "new-payee-1", **body)
    assert accepted.status_code == 201, accepted.text
    assert (accepted.json()["status"], accepted.json()["step_up"]) == ("completed", True)
    assert ledger_posted(bank.url, bob.account_id) == 2000


def test_a_frozen_account_refuses_payments_with_account_frozen_until_unfrozen(bank: Bank) -> None:
    alice, bob, payee_id = pair(bank)
    token = login(bank, alice.login)
    analyst_id, staff_token = staff_login(bank, StaffRole.RISK_ANALYST)
    body = {"from_account_id": str(alice.account_id), "to_payee_id": str(payee_id), "amount_minor": 700}

    frozen = bank.client.post(
        f"/v1/staff/accounts/{alice.account_id}/freeze",
        json={"reason": "suspected account takeover"},
        headers=bearer(staff_token),
    )
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["status"] == "frozen"
    assert all_rows(
        bank.url,
        "SELECT action, host(ip), details->>'reason' FROM platform.audit_log WHERE actor_id = %s AND subject_id = %s",
        analyst_id,
        str(alice.account_id),
    ) == [("banking.account_frozen", CLIENT_IP, "suspected account takeover")]

    refused = pay(bank, token, "frozen-1", **body)
    assert error(refused) == (409, "account_frozen")
    assert refused.json()["error"]["details"] == {"side": "debit"}
    assert payments_of(bank, alice) == 0
    assert ledger_posted(bank.url, alice.account_id) == 1_000_000

    unfrozen = bank.client.post(
        f"/v1/staff/accounts/{alice.account_id}/unfreeze",
        json={"reason": "customer confirmed by phone"},
        headers=bearer(staff_token),
    )
    assert unfrozen.json()["status"] == "open"
    assert pay(bank, token, "frozen-2", **body).status_code == 201
    assert ledger_posted(bank.url, bob.account_id) == 700


@pytest.mark.parametrize(
    ("headers", "loc"),
    [({}, "Idempotency-Key"), ({"Idempotency-Key": "k" * 101}, "Idempotency-Key"), ({"Idempotency-Key": "clé"}, None)],
    ids=["missing", "too-long", "not-ascii"],
)
def test_a_missing_or_malformed_idempotency_key_is_422_and_writes_nothing(
    bank: Bank, headers: dict[str, str], loc: str | None
) -> None:
    alice, _, payee_id = pair(bank)
    token = login(bank, alice.login)
    body = {
        "from_account_id": str(alice.account_id),
        "to_payee_id": str(payee_id),
        "amount_minor": 100,
        "currency": "CNY",
    }
    encoded = {k: v.encode() for k, v in headers.items()}  # send non-ASCII bytes as they are
    response = bank.client.post(PAYMENTS, json=body, headers={**bearer(token), **encoded})
    assert error(response) == (422, "validation_error")
    if loc is not None:
        assert [e["loc"] for e in response.json()["error"]["details"]["errors"]] == [["header", loc]]
    assert payments_of(bank, alice) == 0


def test_insufficient_funds_is_409_and_the_failed_payment_is_answered_again_on_replay(bank: Bank) -> None:
    alice, bob, payee_id = pair(bank, fund_minor=1000)
    token = login(bank, alice.login)
    body = {"from_account_id": str(alice.account_id), "to_payee_id": str(payee_id), "amount_minor": 1001}
    refused = pay(bank, token, "too-much", **body)
    assert error(refused) == (409, "insufficient_funds")
    payment_id = refused.json()["error"]["details"]["payment_id"]
    again = pay(bank, token, "too-much", **body)
    assert (again.status_code, again.content) == (409, refused.content)
    failed = bank.client.get(f"{PAYMENTS}/{payment_id}", headers=bearer(token)).json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_funds")
    assert ledger_posted(bank.url, alice.account_id) == 1000
    assert ledger_posted(bank.url, bob.account_id) == 0
