"""The account-access consent API fuzzed from the standard's own document (the pinned OBIE v4.0
``account-info-openapi.yaml``, its consent operations): whatever a partner sends, no 5xx.

The platform's fuzzer (tests/web/test_api_fuzz.py) covers the platform's document; the open-banking
routes are not in it (docs/openbanking.md), so they are fuzzed from the OBIE file here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.python.asgi import ASGIClient, get_client, shutdown_lifespans

from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

SPECS = Path(__file__).resolve().parents[2] / "specs" / "obie-v4.0"
EXAMPLES = int(os.environ.get("SMARTBANK_FUZZ_EXAMPLES", "25"))
#: (method, status) of every fuzzed call, to show that the fuzzer got past authentication.
SEEN: list[tuple[str, int]] = []


def _document() -> dict[str, Any]:
    document = yaml.safe_load((SPECS / "account-info-openapi.yaml").read_text(encoding="utf-8"))
    document["paths"] = {p: v for p, v in document["paths"].items() if p.startswith("/account-access-consents")}
    document["servers"] = [{"url": "/open-banking/v4.0/aisp"}]
    return dict(document)


schema = schemathesis.openapi.from_dict(_document())


@pytest.fixture(scope="module")
def api(settings: Settings, fresh_database: Callable[[], str]) -> Iterator[ASGIClient]:
    with get_client(create_app(settings, database_url=fresh_database())) as client:
        yield client
    shutdown_lifespans()


@pytest.fixture(scope="module")
def token(api: ASGIClient) -> str:
    registered = api.post(
        "/oauth2/register",
        json={
            "client_name": "Fuzzer",
            "redirect_uris": ["https://fuzz.example/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    issued = api.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": "accounts",
            "client_id": body["client_id"],
            "client_secret": body["client_secret"],
        },
    )
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


def test_the_fuzzed_operations_are_the_consent_operations() -> None:
    operations = sorted((op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations())
    assert operations == [
        ("DELETE", "/account-access-consents/{ConsentId}"),
        ("GET", "/account-access-consents/{ConsentId}"),
        ("POST", "/account-access-consents"),
    ]


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_consent_api_never_answers_5xx(case: schemathesis.Case, api: ASGIClient, token: str) -> None:
    response = case.call(session=api, headers={"Authorization": f"Bearer {token}"})
    SEEN.append((case.method.upper(), response.status_code))
    assert response.status_code < 500, response.text


def test_the_fuzzer_reached_the_operations_behind_authentication() -> None:
    assert ("POST", 201) in SEEN, sorted(set(SEEN))
    assert any(method == "POST" and status == 400 for method, status in SEEN), sorted(set(SEEN))
