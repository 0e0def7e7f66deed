"""The API fuzzed from its own OpenAPI document (schemathesis): no 5xx, every response as documented.

Every operation is fuzzed three times: as an anonymous caller, as a logged-in customer and as a
logged-in staff administrator (the internal ledger API always as an internal caller). Runs in-process
against a database of its own; the number of examples per operation is bounded so that CI stays
fast (``SMARTBANK_FUZZ_EXAMPLES`` raises it for a longer local run).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.python.asgi import ASGIClient, get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from smartbank.identity.model import PrincipalKind, StaffRole
from smartbank.kernel.clock import SystemClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..conftest import INTERNAL
from ..identity.helpers import PASSWORD, create_principal_sync

EXAMPLES = int(os.environ.get("SMARTBANK_FUZZ_EXAMPLES", "25"))

# The document is built without a database; requests go to an app with one (the fixture below).
schema = schemathesis.openapi.from_dict(create_app(Settings(env="test")).openapi())


CALLERS = ("anonymous", "customer", "staff")


@pytest.fixture(scope="module")
def database(fresh_database: Callable[[], str]) -> str:
    return fresh_database()  # its own rate-limit counters, untouched by the session's other logins


@pytest.fixture(scope="module")
def api(settings: Settings, database: str) -> Iterator[ASGIClient]:
    # Money-movement limits high enough that the fuzzer's volume of calls never meets them: a 429
    # would hide how the operation itself answers.
    generous = settings.model_copy(
        update={"money_move_per_ip_per_min": 1_000_000, "money_move_per_principal_per_min": 1_000_000}
    )
    with get_client(create_app(generous, database_url=database)) as client:
        yield client
    shutdown_lifespans()  # stop the app (its database pools) before the database is dropped


@pytest.fixture(scope="module")
def credentials(api: ASGIClient, settings: Settings, database: str) -> dict[str, dict[str, str]]:
    headers: dict[str, dict[str, str]] = {}
    for caller, kind, roles in (
        ("customer", PrincipalKind.CUSTOMER, frozenset[StaffRole]()),
        ("staff", PrincipalKind.STAFF, frozenset({StaffRole.ADMIN})),
    ):
        _, login = create_principal_sync(database, settings, SystemClock(), kind=kind, roles=roles)
        response = api.post("/v1/auth/login", json={"login": login, "password": PASSWORD, "client": "token"})
        assert response.status_code == 200, response.text
        headers[caller] = {"Authorization": f"Bearer {response.json()['access_token']}"}
    return headers


@pytest.mark.parametrize("caller", CALLERS)
@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(
    case: schemathesis.Case, api: ASGIClient, credentials: dict[str, dict[str, str]], caller: str
) -> None:
    # Not "positive_data_acceptance": some schema-valid requests are refused by rules a schema cannot
    # state (a cursor this API never gave out, timeout_s without pending), and the fuzzer compares
    # 64-bit bounds as floats, so it takes 2**63 + 191 for a valid amount.
    # The internal ledger API is fuzzed as an internal caller. Logging out would end the caller's
    # session for the rest of the run, so that one operation is always called anonymously.
    headers: dict[str, str] | None = None
    if case.path.startswith("/v1/ledger/"):
        headers = INTERNAL
    elif caller != "anonymous" and case.path != "/v1/auth/logout":
        headers = credentials[caller]
    case.call_and_validate(session=api, headers=headers, excluded_checks=[positive_data_acceptance])
