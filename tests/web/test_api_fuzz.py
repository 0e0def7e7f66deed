"""The API fuzzed from its own OpenAPI document (schemathesis): no 5xx, every response as documented.

Runs in-process against a migrated database; the number of examples per operation is bounded so
that CI stays fast (``SMARTBANK_FUZZ_EXAMPLES`` raises it for a longer local run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.python.asgi import ASGIClient, get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..conftest import INTERNAL

EXAMPLES = int(os.environ.get("SMARTBANK_FUZZ_EXAMPLES", "25"))

# The document is built without a database; requests go to an app with one (the fixture below).
schema = schemathesis.openapi.from_dict(create_app(Settings(env="test")).openapi())


@pytest.fixture(scope="module")
def api(settings: Settings, database_url: str) -> Iterator[ASGIClient]:
    with get_client(create_app(settings, database_url=database_url)) as client:
        yield client
    shutdown_lifespans()  # stop the app (its database pools) before the database is dropped


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case: schemathesis.Case, api: ASGIClient) -> None:
    # Not "positive_data_acceptance": some schema-valid requests are refused by rules a schema cannot
    # state (a cursor this API never gave out, timeout_s without pending), and the fuzzer compares
    # 64-bit bounds as floats, so it takes 2**63 + 191 for a valid amount.
    # The internal ledger API is fuzzed as an internal caller; everything else as an anonymous one.
    headers = INTERNAL if case.path.startswith("/v1/ledger/") else None
    case.call_and_validate(session=api, headers=headers, excluded_checks=[positive_data_acceptance])
