"""The access-control matrix, generated from the OpenAPI document.

Every operation the app publishes is classified (public, internal, staff or customer) and checked:

- every non-public operation refuses an anonymous caller (401);
- every staff and internal operation refuses a customer (403);
- every customer operation, called by customer B on customer A's objects (A's ids in the path and in
  the request body), answers 403 or 404 and its body holds nothing of A's; called by B without A's
  objects, nothing of A's appears either.

A new operation is covered automatically; a new path parameter needs an owner factory in `owned`
below, or the matrix fails and says so.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartbank.identity.model import PrincipalKind, StaffRole
from smartbank.kernel.clock import SystemClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..customers.helpers import TERMS, make_ric, random_phone
from ..identity.helpers import PASSWORD, create_principal_sync

DOCUMENT = create_app(Settings(env="test")).openapi()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)

#: Operations anyone may call: health, the tiers on offer, registering, a forgotten password, logging
#: in, and finishing a login (challenge or refresh token).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/tiers"),
    ("POST", "/v1/registrations"),
    ("POST", "/v1/registrations/{verification_id}/resend"),
    ("POST", "/v1/registrations/{verification_id}/complete"),
    ("POST", "/v1/password-resets"),
    ("POST", "/v1/password-resets/{verification_id}/resend"),
    ("POST", "/v1/password-resets/{verification_id}/complete"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/mfa/verify"),
    ("POST", "/v1/auth/token/refresh"),
}
#: Run after every other customer operation: they end the caller's own session.
ENDS_SESSION = {("POST", "/v1/auth/logout")}


def kind_of(method: str, path: str) -> str:
    if (method, path) in PUBLIC:
        return "public"
    if path.startswith("/v1/ledger/"):
        return "internal"
    if path.startswith("/v1/staff/"):
        return "staff"
    return "customer"


@dataclass
class Customer:
    id: uuid.UUID
    login: str
    token: str
    #: What this customer owns, by the path parameter or body field that names it.
    owned: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def markers(self) -> set[str]:
        """Strings that would show that a response revealed something of this customer's."""
        return {str(self.id), self.login, *self.owned.values()}


def one(database_url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def register(client: TestClient, database_url: str) -> Customer:
    """A customer signed up through the API as a real one would: phone, code, password, login."""
    phone = random_phone()
    started = client.post("/v1/registrations", json={"kind": "phone", "contact": phone})
    assert started.status_code == 201, started.text
    verification_id = started.json()["verification_id"]
    address = one(database_url, "SELECT address FROM customers.verifications WHERE id = %s", verification_id)
    payload = one(
        database_url,
        "SELECT payload FROM platform.outbox WHERE topic = 'notifications.requested' "
        "AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
        address,
    )
    completed = client.post(
        f"/v1/registrations/{verification_id}/complete",
        json={
            "code": payload["params"]["code"],
            "password": PASSWORD,
            "accepted_terms": True,
            "terms_version": TERMS,
        },
    )
    assert completed.status_code == 201, completed.text
    response = client.post("/v1/auth/login", json={"login": address, "password": PASSWORD, "client": "token"})
    assert response.status_code == 200, response.text
    return Customer(uuid.UUID(completed.json()["customer"]["id"]), address, response.json()["access_token"])


@pytest.fixture(scope="module")
def client(settings: Settings, fresh_database: Callable[[], str]) -> Iterator[TestClient]:
    # A database and an address of its own: its registrations and logins spend nobody else's budget.
    database_url = fresh_database()
    with TestClient(create_app(settings, database_url=database_url), client=("203.0.113.61", 40000)) as test_client:
        test_client.database_url = database_url  # type: ignore[attr-defined]
        yield test_client


def wait_for(fetch: Callable[[], Any], what: str) -> Any:
    """Poll until the outbox relay has carried an event to its consumer (about a second)."""
    for _ in range(100):
        if found := fetch():
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def verified_account(client: TestClient, customer: Customer, staff: dict[str, str], birth: date) -> dict[str, Any]:
    """KYC submitted by the customer, approved by staff, and the CNY account banking then opens."""
    kyc = {
        "legal_name": "王芳",
        "date_of_birth": birth.isoformat(),
        "id_type": "prc_resident_id",
        "id_number": make_ric(birth),
        "address": {
            "country": "CN",
            "region": "北京市",
            "city": "北京市",
            "lines": ["东长安街 1 号"],
            "postal_code": "100006",
        },
    }
    assert client.put("/v1/me/kyc", json=kyc, headers=customer.headers).status_code == 200
    decision = client.post(
        f"/v1/staff/customers/{customer.id}/kyc-decision",
        json={"decision": "verify", "reason": "documents checked"},
        headers=staff,
    )
    assert decision.status_code == 200, decision.text
    accounts = wait_for(lambda: client.get("/v1/accounts", headers=customer.headers).json()["items"], "the account")
    return dict(accounts[0])


@pytest.fixture(scope="module")
def people(client: TestClient, settings: Settings) -> tuple[Customer, Customer]:
    """Customer A, the owner of every object the matrix aims at, and customer B, who must learn
    nothing of A's. A has a session, a contact change under way, a verified KYC profile, an account
    funded by a teller, a payee (B's account), a payment to B, the transactions it made and the
    notices it wrote."""
    database_url: str = client.database_url  # type: ignore[attr-defined]
    alice, bob = register(client, database_url), register(client, database_url)
    _, staff_login = create_principal_sync(
        database_url,
        settings,
        SystemClock(),
        kind=PrincipalKind.STAFF,
        roles=frozenset({StaffRole.CRM_AGENT, StaffRole.TELLER}),
    )
    signed_in = client.post("/v1/auth/login", json={"login": staff_login, "password": PASSWORD, "client": "token"})
    assert signed_in.status_code == 200, signed_in.text
    staff = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    sessions = client.get("/v1/me/sessions", headers=alice.headers).json()["items"]
    alice.owned["session_id"] = next(s["id"] for s in sessions if s["current"])
    change = client.post(
        "/v1/me/contact-changes", json={"kind": "email", "contact": "alice.new@example.com"}, headers=alice.headers
    )
    assert change.status_code == 201, change.text
    alice.owned["verification_id"] = change.json()["verification_id"]

    account = verified_account(client, alice, staff, date(1988, 3, 14))
    bobs = verified_account(client, bob, staff, date(1992, 7, 2))
    # Not the account number: it is what A gives to people who pay A (B may add it as a payee).
    alice.owned |= {"account_id": account["id"], "from_account_id": account["id"]}
    deposit = client.post(
        "/v1/staff/teller/deposits",
        json={
            "account_id": account["id"],
            "branch_code": "0001",
            "amount_minor": 500_000,
            "currency": "CNY",
            "reference": "opening deposit",
        },
        headers={**staff, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201, deposit.text
    payee = client.post("/v1/payees", json={"name": "Bob", "account_number": bobs["number"]}, headers=alice.headers)
    assert payee.status_code == 201, payee.text
    alice.owned |= {"payee_id": payee.json()["id"], "to_payee_id": payee.json()["id"]}
    with psycopg.connect(database_url, autocommit=True) as conn:  # a payee from last week: no step-up needed
        conn.execute(
            "UPDATE banking.payees SET created_at = created_at - interval '7 days' WHERE id = %s",
            (alice.owned["payee_id"],),
        )
    payment = client.post(
        "/v1/payments",
        json={
            "from_account_id": account["id"],
            "to_payee_id": alice.owned["payee_id"],
            "amount_minor": 12_345,
            "currency": "CNY",
            "reference": "matrix rent",
        },
        headers={**alice.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert payment.status_code == 201, payment.text
    alice.owned["payment_id"] = payment.json()["id"]
    history = wait_for(
        lambda: client.get(f"/v1/accounts/{account['id']}/transactions", headers=alice.headers).json()["items"][1:],
        "A's history",
    )
    alice.owned["transaction_id"] = history[0]["id"]
    # A's newest notice (the payment to B was sent): B may neither read it nor mark it read.
    inbox = client.get("/v1/me/notifications", headers=alice.headers).json()["items"]
    alice.owned["up_to"] = next(item["id"] for item in inbox if item["kind"] == "banking.payment_sent")
    return alice, bob


@pytest.fixture(scope="module")
def alice(people: tuple[Customer, Customer]) -> Customer:
    return people[0]


@pytest.fixture(scope="module")
def bob(people: tuple[Customer, Customer]) -> Customer:
    return people[1]


def example_body(method: str, path: str) -> Any:
    """The request body example the document gives for the operation (every body has one)."""
    body = DOCUMENT["paths"][path][method.lower()].get("requestBody")
    if body is None:
        return None
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema.get("examples") or body["content"]["application/json"].get("examples")
    assert examples, f"{method} {path}: the request body has no example in the OpenAPI document"
    first = examples[0] if isinstance(examples, list) else next(iter(examples.values()))["value"]
    return copy.deepcopy(first)


#: Values for required query parameters, by name (a new one fails the matrix until it is listed here).
QUERY_VALUES = {"from": "2026-01-01", "to": "2026-12-31"}


def parameters_of(method: str, path: str) -> tuple[dict[str, str], dict[str, str]]:
    """Required query parameters and headers: listed values, and a fresh key for each idempotency key."""
    query, headers = {}, {}
    for parameter in DOCUMENT["paths"][path][method.lower()].get("parameters", []):
        if not parameter.get("required") or parameter["in"] == "path":
            continue
        if parameter["in"] == "header" and parameter["name"].lower() == "idempotency-key":
            headers[parameter["name"]] = str(uuid.uuid4())
        elif parameter["in"] == "query" and parameter["name"] in QUERY_VALUES:
            query[parameter["name"]] = QUERY_VALUES[parameter["name"]]
        else:
            pytest.fail(f"{method} {path}: no value for required {parameter['in']} parameter {parameter['name']!r}")
    return query, headers


def call(client: TestClient, method: str, path: str, owner: Customer, auth: dict[str, str] | None) -> Any:
    """The operation aimed at the owner's objects, as the caller whose credentials are ``auth``."""
    url, body = aimed_at(owner, method, path)
    query, headers = parameters_of(method, path)
    return client.request(method, url, json=body, params=query, headers={**headers, **(auth or {})})


def aimed_at(owner: Customer, method: str, path: str) -> tuple[str, Any]:
    """The operation's URL and body with the owner's objects in every place that names one.

    Customer operations must find an object of the owner's for every path parameter. Staff and
    internal operations refuse customers before any lookup, so an unknown object does as well.
    """
    url = path
    for name in re.findall(r"{(\w+)}", path):
        if name in owner.owned:
            value = owner.owned[name]
        elif kind_of(method, path) == "customer":
            pytest.fail(f"{method} {path}: no owner factory for path parameter {name!r}; add one to the matrix")
        else:
            value = str(uuid.uuid4())
        url = url.replace(f"{{{name}}}", value)
    body = example_body(method, path)
    if isinstance(body, dict):
        for key in body:
            if key in owner.owned:
                body[key] = owner.owned[key]
    return url, body


def assert_learns_nothing(response: Any, owner: Customer, what: str) -> None:
    leaked = {marker for marker in owner.markers() if marker in response.text}
    assert not leaked, f"{what}: the response reveals {sorted(leaked)}: {response.text[:300]}"


def ids(operations: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for method, path in operations]


GUARDED = [op for op in OPERATIONS if kind_of(*op) != "public"]


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=ids(GUARDED))
def test_anonymous_callers_are_refused(client: TestClient, method: str, path: str, alice: Customer) -> None:
    response = call(client, method, path, alice, None)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


NOT_FOR_CUSTOMERS = [op for op in OPERATIONS if kind_of(*op) in {"staff", "internal"}]


@pytest.mark.parametrize(("method", "path"), NOT_FOR_CUSTOMERS, ids=ids(NOT_FOR_CUSTOMERS))
def test_customers_are_refused_on_staff_and_internal_routes(
    client: TestClient, method: str, path: str, alice: Customer, bob: Customer
) -> None:
    response = call(client, method, path, alice, bob.headers)
    assert response.status_code == 403, response.text
    assert_learns_nothing(response, alice, f"{method} {path}")


CUSTOMER_OPERATIONS = sorted(
    (op for op in OPERATIONS if kind_of(*op) == "customer"), key=lambda op: (op in ENDS_SESSION, op)
)


@pytest.mark.parametrize(("method", "path"), CUSTOMER_OPERATIONS, ids=ids(CUSTOMER_OPERATIONS))
def test_another_customers_token_gets_403_or_404_and_learns_nothing(
    client: TestClient, method: str, path: str, alice: Customer, bob: Customer
) -> None:
    response = call(client, method, path, alice, bob.headers)
    assert response.status_code < 500, response.text
    _, body = aimed_at(alice, method, path)
    names_an_object = isinstance(body, dict) and any(value in alice.owned.values() for value in body.values())
    if "{" in path or names_an_object:  # aimed at one of A's objects
        assert response.status_code in {403, 404}, response.text
    assert_learns_nothing(response, alice, f"{method} {path}")


def test_the_matrix_covers_every_published_operation() -> None:
    kinds = {op: kind_of(*op) for op in OPERATIONS}
    assert set(kinds.values()) <= {"public", "internal", "staff", "customer"}
    assert set(OPERATIONS) >= PUBLIC, "a public operation listed here is no longer published"
    assert len([op for op, kind in kinds.items() if kind == "customer"]) >= 20
