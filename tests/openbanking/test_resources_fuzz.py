"""The AISP, PISP and CBPII operations fuzzed from the standard's own documents (the pinned OBIE v4.0
files, the operations this bank serves): whatever a partner sends, no 5xx.

The partner is a sandbox app with a client secret (it signs nothing, so the fuzzer reaches the
handlers); its customer-granted tokens are written straight into the test database for consents
authorised by a customer, so that each operation is called with the kind of token it takes."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.python.asgi import ASGIClient, get_client, shutdown_lifespans

from smartbank.identity.credentials import token_hash
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

SPECS = Path(__file__).resolve().parents[2] / "specs" / "obie-v4.0"
# The PIS request schemas are large: hypothesis takes seconds per generated body, so fewer by default.
EXAMPLES = int(os.environ.get("SMARTBANK_FUZZ_EXAMPLES", "10"))
SEEN: list[tuple[str, str, int]] = []

SERVED = {
    "account-info-openapi.yaml": (
        "/open-banking/v4.0/aisp",
        {"/accounts", "/accounts/{AccountId}", "/accounts/{AccountId}/balances", "/accounts/{AccountId}/transactions"},
    ),
    "payment-initiation-openapi.yaml": (
        "/open-banking/v4.0/pisp",
        {
            "/domestic-payment-consents",
            "/domestic-payment-consents/{ConsentId}",
            "/domestic-payment-consents/{ConsentId}/funds-confirmation",
            "/domestic-payments",
            "/domestic-payments/{DomesticPaymentId}",
        },
    ),
    "confirmation-funds-openapi.yaml": (
        "/open-banking/v4.0/cbpii",
        {"/funds-confirmation-consents", "/funds-confirmation-consents/{ConsentId}", "/funds-confirmations"},
    ),
}


def _schema(name: str) -> Any:
    prefix, paths = SERVED[name]
    document = yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))
    document["paths"] = {p: v for p, v in document["paths"].items() if p in paths}
    document["servers"] = [{"url": prefix}]
    return schemathesis.openapi.from_dict(document)


ais = _schema("account-info-openapi.yaml")
pis = _schema("payment-initiation-openapi.yaml")
cof = _schema("confirmation-funds-openapi.yaml")


@pytest.fixture(scope="module")
def database(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture(scope="module")
def api(settings: Settings, database: str) -> Iterator[ASGIClient]:
    with get_client(create_app(settings, database_url=database)) as client:
        yield client
    shutdown_lifespans()


@pytest.fixture(scope="module")
def tokens(api: ASGIClient, database: str) -> dict[str, str]:
    """A client-credentials token, and a customer-granted token for each consent kind."""
    registered = api.post(
        "/oauth2/register",
        json={
            "client_name": "Fuzzer",
            "redirect_uris": ["https://fuzz.example/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert registered.status_code == 201, registered.text
    client_id, secret = registered.json()["client_id"], registered.json()["client_secret"]
    issued = api.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": "accounts payments fundsconfirmations",
            "client_id": client_id,
            "client_secret": secret,
        },
    )
    assert issued.status_code == 200, issued.text
    now = datetime.now(UTC)
    customer, account = uuid.uuid4(), uuid.uuid4()
    initiation = {
        "InstructionIdentification": "i1",
        "EndToEndIdentification": "e1",
        "InstructedAmount": {"Amount": "1.00", "Currency": "CNY"},
        "CreditorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": "0001000000000011", "Name": "A"},
    }
    granted = {"cc": issued.json()["access_token"]}
    with psycopg.connect(database) as conn:
        for kind, scope, permissions, details in (
            (
                "account_access",
                "accounts",
                [
                    "ReadAccountsDetail",
                    "ReadBalances",
                    "ReadTransactionsDetail",
                    "ReadTransactionsCredits",
                    "ReadTransactionsDebits",
                ],
                None,
            ),
            ("domestic_payment", "payments", [], {"Initiation": initiation, "Risk": {}}),
            (
                "funds_confirmation",
                "fundsconfirmations",
                [],
                {"DebtorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": "0001000000000011"}},
            ),
        ):
            consent_id = f"fz-{kind}-{secrets.token_hex(4)}"
            conn.execute(
                "INSERT INTO openbanking.consents (id, client_id, kind, status, permissions, customer_id, account_ids,"
                " created_at, status_updated_at, authorised_at, details, to_account_id)"
                " VALUES (%s, %s, %s, 'AUTH', %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    consent_id,
                    client_id,
                    kind,
                    permissions,
                    customer,
                    [account],
                    now,
                    now,
                    now,
                    json.dumps(details) if details else None,
                    uuid.uuid4() if kind == "domestic_payment" else None,
                ),
            )
            token = f"sbat_fuzz_{secrets.token_urlsafe(24)}"
            conn.execute(
                "INSERT INTO openbanking.tokens (token_hash, kind, grant_id, grant_type, client_id, consent_id,"
                " customer_id, scope, issued_at, expires_at) VALUES (%s, 'access', %s, 'authorization_code', %s, %s,"
                " %s, %s, %s, %s)",
                (
                    token_hash(token),
                    uuid.uuid4(),
                    client_id,
                    consent_id,
                    customer,
                    scope,
                    now,
                    now + timedelta(hours=2),
                ),
            )
            granted[kind] = token
    return granted


def _token(tokens: dict[str, str], path: str, method: str) -> str:
    if path.startswith("/accounts"):
        return tokens["account_access"]
    if path == "/domestic-payments" or path.endswith("/funds-confirmation"):
        return tokens["domestic_payment"]
    if path == "/funds-confirmations":
        return tokens["funds_confirmation"]
    return tokens["cc"]


def _call(case: schemathesis.Case, api: ASGIClient, tokens: dict[str, str]) -> None:
    response = case.call(session=api, headers={"Authorization": f"Bearer {_token(tokens, case.path, case.method)}"})
    SEEN.append((case.method.upper(), case.path, response.status_code))
    assert response.status_code < 500, response.text


def test_the_fuzzed_operations_are_the_ones_this_bank_serves() -> None:
    for schema, (_, paths) in zip((ais, pis, cof), SERVED.values(), strict=True):
        assert {op.ok().path for op in schema.get_all_operations()} == paths


@ais.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_aisp_never_answers_5xx(case: schemathesis.Case, api: ASGIClient, tokens: dict[str, str]) -> None:
    _call(case, api, tokens)


@pis.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_pisp_never_answers_5xx(case: schemathesis.Case, api: ASGIClient, tokens: dict[str, str]) -> None:
    _call(case, api, tokens)


@cof.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_cbpii_never_answers_5xx(case: schemathesis.Case, api: ASGIClient, tokens: dict[str, str]) -> None:
    _call(case, api, tokens)


def test_the_fuzzer_reached_the_handlers_behind_authentication() -> None:
    statuses = {(method, path): status for method, path, status in SEEN}
    assert statuses, "nothing was fuzzed"
    # Past the token check: bodies were read and judged (400), not refused at the door (401).
    assert any(s == 400 for (m, _), s in statuses.items() if m == "POST"), sorted(set(SEEN))
    assert any(s in (200, 201, 404) for s in statuses.values()), sorted(set(SEEN))
