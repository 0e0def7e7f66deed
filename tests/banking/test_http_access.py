"""Who may do what through the banking HTTP API: another customer's objects are not found (and the
answer is the one a missing id gets), customers are refused on staff routes, staff act by permission,
and a teller's cash deposit moves the balance and is audited with the request's address.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from smartbank.identity.model import StaffRole
from smartbank.platform.settings import Settings

from .http_helpers import (
    Bank,
    add_payee,
    all_rows,
    bearer,
    error,
    ledger_posted,
    login,
    onboard,
    open_bank,
    scalar,
    staff_login,
    wait_for,
)

CLIENT_IP = "203.0.113.20"


@pytest.fixture(scope="module")
def bank(banking_url: str, settings: Settings) -> Iterator[Bank]:
    with open_bank(banking_url, settings, client_ip=CLIENT_IP) as opened:
        yield opened


@pytest.fixture(autouse=True)
def fresh_window(bank: Bank) -> None:
    bank.clock.advance(timedelta(hours=1))


def written(bank: Bank) -> tuple[int, int, int, int]:
    """Counts of everything a banking request may write."""
    return (
        int(scalar(bank.url, "SELECT count(*) FROM banking.payments")),
        int(scalar(bank.url, "SELECT count(*) FROM banking.payees WHERE deleted_at IS NULL")),
        int(scalar(bank.url, "SELECT count(*) FROM ledger.transfers")),
        int(scalar(bank.url, "SELECT count(*) FROM platform.audit_log")),
    )


def without_ids(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json()


def test_another_customers_account_transactions_payee_and_payment_are_404_like_a_missing_id(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=50_000, name="李伟")
    bob = onboard(bank, fund_minor=80_000, name="王芳")
    carol = onboard(bank, name="张敏")
    bob_payee = add_payee(bank, bob, carol, "Zhang Min")
    bank.clock.advance(timedelta(hours=25))
    alice_token, bob_token = login(bank, alice.login), login(bank, bob.login)
    paid = bank.client.post(
        "/v1/payments",
        json={
            "from_account_id": str(bob.account_id),
            "to_payee_id": str(bob_payee),
            "amount_minor": 900,
            "currency": "CNY",
        },
        headers={**bearer(bob_token), "Idempotency-Key": "bob-1"},
    )
    assert paid.status_code == 201
    payment = paid.json()
    wait_for(
        lambda: (
            bank.client.get(f"/v1/accounts/{bob.account_id}/transactions", headers=bearer(bob_token)).json()["items"]
            != []
        )
    )
    missing = uuid.uuid4()
    as_alice = bearer(alice_token)

    def pair_of(path_with_bob: str, path_with_missing: str) -> None:
        theirs = bank.client.get(path_with_bob, headers=as_alice)
        nothing = bank.client.get(path_with_missing, headers=as_alice)
        assert error(theirs) == (404, "not_found"), path_with_bob
        assert theirs.json() == nothing.json(), path_with_bob

    pair_of(f"/v1/accounts/{bob.account_id}", f"/v1/accounts/{missing}")
    pair_of(f"/v1/accounts/{bob.account_id}/transactions", f"/v1/accounts/{missing}/transactions")
    pair_of(
        f"/v1/accounts/{bob.account_id}/transactions/{payment['transfer_id']}",
        f"/v1/accounts/{missing}/transactions/{payment['transfer_id']}",
    )
    pair_of(
        f"/v1/accounts/{bob.account_id}/statement?from=2026-03-01&to=2026-03-31",
        f"/v1/accounts/{missing}/statement?from=2026-03-01&to=2026-03-31",
    )
    pair_of(f"/v1/payments/{payment['id']}", f"/v1/payments/{missing}")
    # Alice's own account with Bob's transaction id: not found either.
    pair_of(
        f"/v1/accounts/{alice.account_id}/transactions/{payment['transfer_id']}",
        f"/v1/accounts/{alice.account_id}/transactions/{missing}",
    )
    assert bank.client.get("/v1/payees", headers=as_alice).json() == {"items": []}

    before = written(bank)
    theirs = bank.client.delete(f"/v1/payees/{bob_payee}", headers=as_alice)
    nothing = bank.client.delete(f"/v1/payees/{missing}", headers=as_alice)
    assert error(theirs) == (404, "not_found") and theirs.json() == nothing.json()
    for i, body in enumerate(
        [
            {"from_account_id": str(bob.account_id), "to_account_id": str(alice.account_id)},  # from Bob's account
            {"from_account_id": str(alice.account_id), "to_payee_id": str(bob_payee)},  # to Bob's payee
            {"from_account_id": str(alice.account_id), "to_account_id": str(bob.account_id)},  # to Bob's account
        ]
    ):
        refused = bank.client.post(
            "/v1/payments",
            json={**body, "amount_minor": 100, "currency": "CNY"},
            headers={**as_alice, "Idempotency-Key": f"probe-{i}"},
        )
        assert error(refused) == (404, "not_found"), body
    assert written(bank) == before
    assert ledger_posted(bank.url, bob.account_id) == 80_000 - 900


STAFF_ROUTES = [
    ("get", "/v1/staff/customers/{customer}/accounts", None),
    ("post", "/v1/staff/accounts/{account}/freeze", {"reason": "because"}),
    ("post", "/v1/staff/accounts/{account}/unfreeze", {"reason": "because"}),
    (
        "post",
        "/v1/staff/teller/deposits",
        {"account_id": "{account}", "branch_code": "0001", "amount_minor": 100, "currency": "CNY"},
    ),
    (
        "post",
        "/v1/staff/teller/withdrawals",
        {"account_id": "{account}", "branch_code": "0001", "amount_minor": 100, "currency": "CNY"},
    ),
]


def _call(bank: Bank, token: str, method: str, path: str, body: Any, **ids: str) -> Any:
    path = path.format(**ids)
    if body is not None:
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    headers = {**bearer(token), "Idempotency-Key": f"staff-{uuid.uuid4()}"}
    return bank.client.request(method, path, json=body, headers=headers)


def test_a_customer_on_any_staff_route_is_403_and_writes_nothing(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=10_000)
    token = login(bank, alice.login)
    before = written(bank)
    for method, path, body in STAFF_ROUTES:
        response = _call(bank, token, method, path, body, customer=str(alice.id), account=str(alice.account_id))
        assert error(response) == (403, "forbidden"), path
    assert written(bank) == before
    assert bank.client.get(f"/v1/accounts/{alice.account_id}", headers=bearer(token)).json()["status"] == "open"


def test_staff_routes_need_their_permission(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=10_000)
    _, crm_token = staff_login(bank, StaffRole.CRM_AGENT)  # accounts:read only
    _, teller_token = staff_login(bank, StaffRole.TELLER)  # accounts:read, teller:cash
    ids = {"customer": str(alice.id), "account": str(alice.account_id)}
    before = written(bank)
    for method, path, body in STAFF_ROUTES[1:]:
        assert error(_call(bank, crm_token, method, path, body, **ids)) == (403, "forbidden"), path
    for method, path, body in STAFF_ROUTES[1:3]:
        assert error(_call(bank, teller_token, method, path, body, **ids)) == (403, "forbidden"), path
    assert written(bank) == before
    listed = _call(bank, crm_token, *STAFF_ROUTES[0], **ids)
    assert listed.status_code == 200
    assert [(a["id"], a["posted_minor"]) for a in listed.json()["items"]] == [(str(alice.account_id), 10_000)]


def test_a_teller_deposit_through_the_staff_api_moves_the_balance_and_writes_an_audit_row(bank: Bank) -> None:
    alice = onboard(bank, fund_minor=10_000)
    teller_id, token = staff_login(bank, StaffRole.TELLER)
    body = {
        "account_id": str(alice.account_id),
        "branch_code": "0002",
        "amount_minor": 250_075,
        "currency": "CNY",
        "reference": "cash at counter 3",
    }
    headers = {**bearer(token), "Idempotency-Key": "counter-3-0001"}
    response = bank.client.post("/v1/staff/teller/deposits", json=body, headers=headers)
    assert response.status_code == 201, response.text
    deposit = response.json()
    assert {k: deposit[k] for k in ("kind", "status", "branch_code", "amount_minor", "amount", "reference")} == {
        "kind": "cash_deposit",
        "status": "completed",
        "branch_code": "0002",
        "amount_minor": 250_075,
        "amount": "2500.75",
        "reference": "cash at counter 3",
    }
    # A retry with the key gives the same answer and moves nothing more.
    again = bank.client.post("/v1/staff/teller/deposits", json=body, headers=headers)
    assert (again.status_code, again.content) == (201, response.content)

    accounts = bank.client.get(f"/v1/staff/customers/{alice.id}/accounts", headers=bearer(token)).json()["items"]
    assert [(a["id"], a["posted_minor"], a["available_minor"]) for a in accounts] == [
        (str(alice.account_id), 260_075, 260_075)
    ]
    assert ledger_posted(bank.url, alice.account_id) == 260_075
    audit = all_rows(
        bank.url,
        "SELECT action, outcome, host(ip), request_id IS NOT NULL, details->>'amount_minor', details->>'branch_code'"
        " FROM platform.audit_log WHERE actor_id = %s AND subject_id = %s ORDER BY seq",
        teller_id,
        deposit["id"],
    )
    assert audit == [
        ("banking.cash_deposit_submitted", "success", CLIENT_IP, True, "250075", "0002"),
        ("banking.cash_deposit_completed", "success", CLIENT_IP, True, "250075", "0002"),
    ]

    # A withdrawal past the balance is refused and moves nothing.
    refused = bank.client.post(
        "/v1/staff/teller/withdrawals",
        json={**body, "amount_minor": 260_076},
        headers={**bearer(token), "Idempotency-Key": "counter-3-0002"},
    )
    assert error(refused) == (409, "insufficient_funds")
    assert ledger_posted(bank.url, alice.account_id) == 260_075


def test_payees_are_added_listed_and_deleted_with_their_rules(bank: Bank) -> None:
    alice = onboard(bank)
    bob = onboard(bank)
    token = login(bank, alice.login)
    spaced = " ".join(bob.account_number[i : i + 4] for i in range(0, 16, 4))
    added = bank.client.post("/v1/payees", json={"name": "Wang Fang", "account_number": spaced}, headers=bearer(token))
    assert added.status_code == 201, added.text
    payee = added.json()
    assert (payee["name"], payee["account_number"], payee["created_at"]) == (
        "Wang Fang",
        bob.account_number,
        bank.clock.now().isoformat().replace("+00:00", "Z"),
    )
    twice = bank.client.post(
        "/v1/payees", json={"name": "W", "account_number": bob.account_number}, headers=bearer(token)
    )
    assert error(twice) == (409, "payee_already_exists")
    wrong_digit = bob.account_number[:-1] + str((int(bob.account_number[-1]) + 1) % 10)
    bad = bank.client.post("/v1/payees", json={"name": "W", "account_number": wrong_digit}, headers=bearer(token))
    assert error(bad) == (422, "invalid_account_number")
    assert [p["id"] for p in bank.client.get("/v1/payees", headers=bearer(token)).json()["items"]] == [payee["id"]]

    deleted = bank.client.delete(f"/v1/payees/{payee['id']}", headers=bearer(token))
    assert deleted.status_code == 204
    assert bank.client.get("/v1/payees", headers=bearer(token)).json() == {"items": []}
    assert (
        scalar(
            bank.url,
            "SELECT host(ip) FROM platform.audit_log WHERE action = 'banking.payee_deleted' AND subject_id = %s",
            payee["id"],
        )
        == CLIENT_IP
    )
