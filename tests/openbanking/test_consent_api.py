"""The v4.0 account-access consent API: every response body validated against the pinned OBIE files
(``OBReadConsentResponse1``, ``OBErrorResponse1``) with zero schema errors; the standard error codes;
``x-fapi-interaction-id``; and who may call what."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from tests.banking.http_helpers import Bank, all_rows, scalar

from .helpers import AISP, PERMISSIONS, Partner, customer_with_mfa, grant, open_bank

SPECS = Path(__file__).resolve().parents[2] / "specs" / "obie-v4.0"
URN = "urn:obie-ais"


@cache
def _registry() -> Registry[Any]:
    document = yaml.safe_load((SPECS / "account-info-openapi.yaml").read_text(encoding="utf-8"))
    return Registry().with_resource(URN, Resource.from_contents(document, default_specification=DRAFT4))


def schema_errors(body: Any, schema: str) -> list[str]:
    """Every way ``body`` breaks ``#/components/schemas/<schema>`` of the pinned v4.0 AIS file."""
    validator = OAS30Validator({"$ref": f"{URN}#/components/schemas/{schema}"}, registry=_registry())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def test_the_validator_finds_errors_in_a_wrong_body() -> None:
    assert schema_errors({"Data": {"Status": "Authorised"}}, "OBReadConsentResponse1")
    assert schema_errors({"Errors": []}, "OBErrorResponse1")
    assert schema_errors({"Errors": [{"ErrorCode": "UK.OBIE.Field.Missing"}]}, "OBErrorResponse1")


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.72") as opened:
        yield opened


@pytest.fixture(scope="module")
def partner(bank: Bank) -> Partner:
    return Partner.register(bank)


@pytest.fixture(scope="module")
def token(partner: Partner) -> str:
    return partner.client_credentials_token()


def call(bank: Bank, method: str, path: str, token: str | None, **kwargs: Any) -> Any:
    headers = {"x-fapi-interaction-id": "93bac548-d2de-4546-b106-880a5018460d"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return bank.client.request(method, path, headers=headers, **kwargs)


def test_create_get_and_delete_answer_v4_bodies(bank: Bank, partner: Partner, token: str) -> None:
    created = call(
        bank,
        "POST",
        f"{AISP}/account-access-consents",
        token,
        json={
            "Data": {
                "Permissions": PERMISSIONS,
                "ExpirationDateTime": "2099-12-31T23:59:59+00:00",
                "TransactionFromDateTime": "2026-01-01T00:00:00+08:00",
                "TransactionToDateTime": "2026-12-31T23:59:59+08:00",
            },
            "Risk": {},
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-fapi-interaction-id"] == "93bac548-d2de-4546-b106-880a5018460d"
    body = created.json()
    assert schema_errors(body, "OBReadConsentResponse1") == []
    consent_id = body["Data"]["ConsentId"]
    assert body["Data"]["Status"] == "AWAU"
    assert body["Data"]["TransactionFromDateTime"] == "2025-12-31T16:00:00+00:00"  # the same moment, in UTC
    assert body["Links"]["Self"].endswith(f"/account-access-consents/{consent_id}")

    fetched = call(bank, "GET", f"{AISP}/account-access-consents/{consent_id}", token)
    assert fetched.status_code == 200
    assert schema_errors(fetched.json(), "OBReadConsentResponse1") == []
    assert fetched.json()["Data"] == body["Data"]

    deleted = call(bank, "DELETE", f"{AISP}/account-access-consents/{consent_id}", token)
    assert deleted.status_code == 204
    assert deleted.content == b""
    after = call(bank, "GET", f"{AISP}/account-access-consents/{consent_id}", token).json()
    assert after["Data"]["Status"] == "CANC"
    assert schema_errors(after, "OBReadConsentResponse1") == []


def test_an_interaction_id_is_created_when_the_partner_sends_none(bank: Bank, token: str) -> None:
    response = bank.client.post(
        f"{AISP}/account-access-consents",
        json={"Data": {"Permissions": ["ReadBalances"]}, "Risk": {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201
    assert uuid.UUID(response.headers["x-fapi-interaction-id"])


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ({"Risk": {}}, 400, "U004", "Data"),
        ({"Data": {}, "Risk": {}}, 400, "U004", "Data.Permissions"),
        ({"Data": {"Permissions": ["ReadEverything"]}, "Risk": {}}, 400, "U002", "Data.Permissions"),
        ({"Data": {"Permissions": []}, "Risk": {}}, 400, "U002", "Data.Permissions"),
        ({"Data": {"Permissions": ["ReadTransactionsDebits"]}, "Risk": {}}, 400, "U002", "Data.Permissions"),
        (
            {"Data": {"Permissions": ["ReadBalances"], "ExpirationDateTime": "2001-01-01T00:00:00Z"}, "Risk": {}},
            400,
            "U003",
            "Data.ExpirationDateTime",
        ),
        (
            {"Data": {"Permissions": ["ReadBalances"], "ExpirationDateTime": "tomorrow"}, "Risk": {}},
            400,
            "U003",
            "Data.ExpirationDateTime",
        ),
        (
            {
                "Data": {
                    "Permissions": ["ReadBalances"],
                    "TransactionFromDateTime": "2026-02-01T00:00:00Z",
                    "TransactionToDateTime": "2026-01-01T00:00:00Z",
                },
                "Risk": {},
            },
            400,
            "U003",
            "Data.TransactionFromDateTime",
        ),
        ({"Data": {"Permissions": ["ReadBalances"], "Extra": 1}, "Risk": {}}, 400, "U005", "Data.Extra"),
        ({"Data": {"Permissions": ["ReadBalances"]}}, 400, "U004", "Risk"),
    ],
)
def test_bad_consent_requests_get_ob_error_bodies_and_write_nothing(
    bank: Bank, partner: Partner, token: str, body: Any, status: int, code: str, path: str
) -> None:
    before = scalar(bank.url, "SELECT count(*) FROM openbanking.consents WHERE client_id = %s", partner.client_id)
    response = call(bank, "POST", f"{AISP}/account-access-consents", token, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert schema_errors(error, "OBErrorResponse1") == []
    assert (error["Errors"][0]["ErrorCode"], error["Errors"][0]["Path"]) == (code, path)
    assert response.headers["x-fapi-interaction-id"] == "93bac548-d2de-4546-b106-880a5018460d"
    after = scalar(bank.url, "SELECT count(*) FROM openbanking.consents WHERE client_id = %s", partner.client_id)
    assert after == before


def test_malformed_json_and_wrong_media_type_are_refused(bank: Bank, token: str) -> None:
    broken = bank.client.post(
        f"{AISP}/account-access-consents",
        content=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["Errors"][0]["ErrorCode"] == "U010"
    assert schema_errors(broken.json(), "OBErrorResponse1") == []
    form = bank.client.post(
        f"{AISP}/account-access-consents",
        content=b"a=b",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    assert schema_errors(form.json(), "OBErrorResponse1") == []


def test_who_may_call_the_consent_api(bank: Bank, partner: Partner, token: str) -> None:
    consent_id = partner.create_consent(token)["Data"]["ConsentId"]
    url = f"{AISP}/account-access-consents/{consent_id}"
    # No token, an unknown token, a customer's web-app token: 401 in the OB shape.
    for credentials in (None, "sbat_unknown", "not-a-token"):
        response = call(bank, "GET", url, credentials)
        assert response.status_code == 401
        assert schema_errors(response.json(), "OBErrorResponse1") == []
    # Another partner's client-credentials token: not found (nothing about the consent is revealed).
    other = Partner.register(bank)
    foreign = call(bank, "GET", url, other.client_credentials_token())
    assert foreign.status_code == 404
    assert consent_id not in foreign.text
    assert schema_errors(foreign.json(), "OBErrorResponse1") == []
    assert call(bank, "DELETE", url, other.client_credentials_token()).status_code == 404
    assert scalar(bank.url, "SELECT status FROM openbanking.consents WHERE id = %s", consent_id) == "AWAU"
    # A customer-bound token (authorization code grant) cannot manage consents.
    who = customer_with_mfa(bank)
    granted = grant(bank, who, partner)
    bound = call(bank, "GET", url, granted.tokens["access_token"])
    assert bound.status_code == 403
    assert bound.json()["Errors"][0]["ErrorCode"] == "U008"
    assert schema_errors(bound.json(), "OBErrorResponse1") == []


def test_open_banking_routes_keep_out_of_the_platform_openapi_document() -> None:
    """They follow the RFCs' and OBIE's contracts (form bodies, OAuth and OB error shapes), so the
    access matrix and the fuzzer of the platform document do not cover them: these tests do."""
    from smartbank.openbanking.api import router

    paths = create_app(Settings(env="test")).openapi()["paths"]
    served = {getattr(route, "path", "") for route in router.routes}
    assert not served & set(paths)
    assert not [p for p in paths if p.startswith(("/oauth2", "/open-banking", "/.well-known"))]
    assert {
        "/oauth2/token",
        "/oauth2/par",
        "/oauth2/authorize",
        "/oauth2/revoke",
        "/oauth2/introspect",
        "/oauth2/register",
        "/oauth2/jwks",
        "/.well-known/oauth-authorization-server",
        f"{AISP}/account-access-consents",
    } <= served


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/par", "/oauth2/revoke", "/oauth2/introspect"])
def test_back_channel_endpoints_refuse_an_unauthenticated_client(bank: Bank, path: str) -> None:
    before = all_rows(bank.url, "SELECT count(*) FROM openbanking.tokens")
    response = bank.client.post(path, data={"grant_type": "client_credentials", "token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert all_rows(bank.url, "SELECT count(*) FROM openbanking.tokens") == before
