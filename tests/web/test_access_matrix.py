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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..customers.helpers import TERMS, random_phone
from ..identity.helpers import PASSWORD

DOCUMENT = create_app(Settings(env="test")).openapi()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)

#: Operations anyone may call: health, the tiers on offer, registering, logging in, and finishing a
#: login (challenge or refresh token).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/tiers"),
    ("POST", "/v1/registrations"),
    ("POST", "/v1/registrations/{verification_id}/resend"),
    ("POST", "/v1/registrations/{verification_id}/complete"),
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


@pytest.fixture(scope="module")
def alice(client: TestClient) -> Customer:
    """Customer A: the owner of every object the matrix aims at."""
    customer = register(client, client.database_url)  # type: ignore[attr-defined]
    sessions = client.get("/v1/me/sessions", headers=customer.headers).json()["items"]
    customer.owned["session_id"] = next(s["id"] for s in sessions if s["current"])
    change = client.post(
        "/v1/me/contact-changes", json={"kind": "email", "contact": "alice.new@example.com"}, headers=customer.headers
    )
    assert change.status_code == 201, change.text
    customer.owned["verification_id"] = change.json()["verification_id"]
    return customer


@pytest.fixture(scope="module")
def bob(client: TestClient) -> Customer:
    """Customer B: the caller who must learn nothing of A's."""
    return register(client, client.database_url)  # type: ignore[attr-defined]


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
    url, body = aimed_at(alice, method, path)
    response = client.request(method, url, json=body)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


NOT_FOR_CUSTOMERS = [op for op in OPERATIONS if kind_of(*op) in {"staff", "internal"}]


@pytest.mark.parametrize(("method", "path"), NOT_FOR_CUSTOMERS, ids=ids(NOT_FOR_CUSTOMERS))
def test_customers_are_refused_on_staff_and_internal_routes(
    client: TestClient, method: str, path: str, alice: Customer, bob: Customer
) -> None:
    url, body = aimed_at(alice, method, path)
    response = client.request(method, url, json=body, headers=bob.headers)
    assert response.status_code == 403, response.text
    assert_learns_nothing(response, alice, f"{method} {path}")


CUSTOMER_OPERATIONS = sorted(
    (op for op in OPERATIONS if kind_of(*op) == "customer"), key=lambda op: (op in ENDS_SESSION, op)
)


@pytest.mark.parametrize(("method", "path"), CUSTOMER_OPERATIONS, ids=ids(CUSTOMER_OPERATIONS))
def test_another_customers_token_gets_403_or_404_and_learns_nothing(
    client: TestClient, method: str, path: str, alice: Customer, bob: Customer
) -> None:
    url, body = aimed_at(alice, method, path)
    response = client.request(method, url, json=body, headers=bob.headers)
    assert response.status_code < 500, response.text
    if "{" in path:  # aimed at one of A's objects
        assert response.status_code in {403, 404}, response.text
    assert_learns_nothing(response, alice, f"{method} {path}")


def test_the_matrix_covers_every_published_operation() -> None:
    kinds = {op: kind_of(*op) for op in OPERATIONS}
    assert set(kinds.values()) <= {"public", "internal", "staff", "customer"}
    assert set(OPERATIONS) >= PUBLIC, "a public operation listed here is no longer published"
    assert len([op for op, kind in kinds.items() if kind == "customer"]) >= 9
