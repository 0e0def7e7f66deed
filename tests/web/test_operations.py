"""Operations endpoints and the HTTP plumbing every route shares."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartbank.platform.embedded_pg import with_database
from smartbank.platform.migrate import MIGRATIONS_DIR, head_revision, upgrade
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..conftest import INTERNAL

LEDGER_PATHS = {
    "/v1/ledger/accounts": {"post"},
    "/v1/ledger/accounts/{account_id}": {"get"},
    "/v1/ledger/accounts/{account_id}/balances": {"get"},
    "/v1/ledger/accounts/{account_id}/status": {"post"},
    "/v1/ledger/accounts/{account_id}/transfers": {"get"},
    "/v1/ledger/transfers": {"post"},
    "/v1/ledger/transfer-batches": {"post"},
    "/v1/ledger/transfers/{transfer_id}": {"get"},
    "/v1/ledger/transfers/{pending_id}/post": {"post"},
    "/v1/ledger/transfers/{pending_id}/void": {"post"},
}


@pytest.fixture(scope="module")
def client(settings: Settings, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database_url=database_url), headers=INTERNAL) as test_client:
        yield test_client


@pytest.fixture
def scratch_database(pg_server: Any) -> Iterator[str]:
    """An empty database (no migration run), dropped at the end."""
    name = f"smartbank_test_bare_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_server.admin_url, name)
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)
    assert "Traceback" not in response.text


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_head_migration(client: TestClient) -> None:
    head = head_revision()
    versions = MIGRATIONS_DIR / "versions"
    assert head == max(path.stem for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "migration": head}


def test_readyz_is_503_on_a_database_never_migrated(settings: Settings, scratch_database: str) -> None:
    with TestClient(create_app(settings, database_url=scratch_database)) as bare:
        response = bare.get("/readyz")
        assert bare.get("/healthz").status_code == 200  # alive, just not ready
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "migration": None,
        "expected": head_revision(),
    }


def test_readyz_is_503_on_a_database_behind_head(settings: Settings, scratch_database: str) -> None:
    upgrade(scratch_database, "0001_platform")
    with TestClient(create_app(settings, database_url=scratch_database)) as behind:
        response = behind.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "migration": "0001_platform",
        "expected": head_revision(),
    }

    upgrade(scratch_database)
    with TestClient(create_app(settings, database_url=scratch_database)) as current:
        ready = current.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migration"] == head_revision()


def _count(metrics: str, method: str, route: str, status: int) -> float:
    pattern = (
        rf'^smartbank_http_request_seconds_count\{{method="{method}",route="{re.escape(route)}",'
        rf'status="{status}"\}} (\S+)$'
    )
    match = re.search(pattern, metrics, re.MULTILINE)
    return 0.0 if match is None else float(match.group(1))


def test_metrics_time_every_request_by_route_and_status(client: TestClient) -> None:
    before = client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    assert "# TYPE smartbank_http_request_seconds histogram" in before.text
    transfer_route = "/v1/ledger/transfers/{transfer_id}"
    healthz = _count(before.text, "GET", "/healthz", 200)
    missing = _count(before.text, "GET", transfer_route, 404)
    unmatched = _count(before.text, "GET", "unmatched", 404)

    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get(f"/v1/ledger/transfers/{uuid.uuid4()}").status_code == 404
    assert client.get("/no/such/route").status_code == 404

    after = client.get("/metrics").text
    assert _count(after, "GET", "/healthz", 200) == healthz + 3
    assert _count(after, "GET", transfer_route, 404) == missing + 1
    assert _count(after, "GET", "unmatched", 404) == unmatched + 1
    assert "smartbank_ledger_transfers_total" in after


def test_openapi_lists_the_ledger_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    ledger = {path: set(methods) for path, methods in paths.items() if path.startswith("/v1/ledger")}
    assert ledger == LEDGER_PATHS
    assert {"/healthz", "/readyz"} <= set(paths)
    assert "/metrics" not in paths
    create = paths["/v1/ledger/transfers"]["post"]
    assert set(create["responses"]) == {"200", "201", "401", "403", "404", "409", "422", "default"}
    # Every error response is the one error envelope, including the catch-all for unlisted statuses.
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    assert all(
        create["responses"][status]["content"] == error_ref for status in ("401", "403", "404", "409", "422", "default")
    )
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["TransferIn"]["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/healthz", "/v1/ledger/transfers/nope", "/no/such/route"])
def test_request_id_is_echoed(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"X-Request-ID": "req-42.abc"})
    assert response.headers["x-request-id"] == "req-42.abc"


@pytest.mark.parametrize(
    "sent",
    [pytest.param(None, id="absent"), pytest.param("", id="empty"), pytest.param("x" * 65, id="too-long")],
)
def test_request_id_is_made_when_missing_or_unusable(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = client.get("/healthz", headers=headers).headers["x-request-id"]
    second = client.get("/healthz", headers=headers).headers["x-request-id"]
    assert str(uuid.UUID(first)) == first
    assert first != second
    assert first != sent


def test_request_id_at_the_length_limit_is_kept(client: TestClient) -> None:
    sent = "r" * 64
    assert client.get("/healthz", headers={"X-Request-ID": sent}).headers["x-request-id"] == sent


def test_unknown_route_is_404_not_found(client: TestClient) -> None:
    for response in (client.get("/no/such/route"), client.post("/v1/ledger/nothing", json={})):
        assert_error(response, 404, "not_found")
        assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/healthz"),
        ("POST", "/readyz"),
        ("PUT", "/v1/ledger/transfers"),
        ("GET", "/v1/ledger/accounts"),
        ("DELETE", "/v1/ledger/accounts/0193a1f0-7c2e-7000-8000-000000000001"),
        ("PATCH", "/v1/ledger/transfers/0193a1f0-7c2e-7000-8000-000000000001"),
    ],
)
def test_wrong_method_is_405_method_not_allowed(client: TestClient, method: str, path: str) -> None:
    assert_error(client.request(method, path), 405, "method_not_allowed")


def test_405_names_the_allowed_methods(client: TestClient) -> None:
    response = client.delete("/v1/ledger/transfers")
    assert response.status_code == 405
    assert response.headers.get("allow") == "POST"


def test_405_names_every_method_of_a_path_served_by_several_routes(client: TestClient) -> None:
    response = client.request("PUT", "/v1/me/mfa")  # GET (status) and POST (enrol) are separate routes
    assert response.status_code == 405
    assert response.headers.get("allow") == "GET, HEAD, POST"


def test_a_domain_refusal_that_says_when_to_retry_sets_retry_after() -> None:
    from fastapi import FastAPI

    from smartbank.kernel.errors import DomainError, ErrorCode
    from smartbank.web.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/limited")
    async def limited() -> None:
        raise DomainError(ErrorCode.RATE_LIMITED, "wait a little", retry_after_s=42)

    @app.get("/conflict")
    async def conflict() -> None:
        raise DomainError(ErrorCode.CONFLICT, "no waiting helps", retry_after_s=42)

    with TestClient(app) as bare:
        response = bare.get("/limited")
        assert (response.status_code, response.headers.get("retry-after")) == (429, "42")
        assert response.json()["error"]["details"] == {"retry_after_s": 42}
        assert "retry-after" not in bare.get("/conflict").headers
