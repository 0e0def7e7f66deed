"""The ledger HTTP API end to end (TestClient, real PostgreSQL).

Every refused request is checked for its exact status and error code, for the error shape, and for
leaving the database exactly as it was (transfer, account, hold and outbox counts and the balances
of the accounts it names).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartbank.identity.model import PrincipalKind, StaffRole
from smartbank.kernel.clock import SystemClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app

from ..conftest import INTERNAL, INTERNAL_TOKEN
from ..identity.helpers import PASSWORD, create_principal_sync

TRANSFERS = "/v1/ledger/transfers"
BATCH = "/v1/ledger/transfer-batches"
ACCOUNTS = "/v1/ledger/accounts"


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(settings: Settings, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database_url=database_url), headers=INTERNAL) as test_client:
        yield test_client


def new() -> str:
    return str(uuid.uuid4())


def snapshot(database_url: str, accounts: tuple[str, ...]) -> dict[str, Any]:
    """Everything a refused request must leave untouched."""
    with psycopg.connect(database_url) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return row[0]

        balances = conn.execute(
            "SELECT id::text, debits_pending, debits_posted, credits_pending, credits_posted, status"
            " FROM ledger.accounts WHERE id = ANY(%s::uuid[]) ORDER BY id",
            ([uuid.UUID(a) for a in accounts],),
        ).fetchall()
        return {
            "transfers": one("SELECT count(*) FROM ledger.transfers"),
            "max_seq": one("SELECT coalesce(max(seq), 0) FROM ledger.transfers"),
            "accounts": one("SELECT count(*) FROM ledger.accounts"),
            "holds": one("SELECT count(*) FROM ledger.open_holds"),
            "outbox": one("SELECT count(*) FROM platform.outbox"),
            "balances": balances,
        }


@contextmanager
def unchanged(database_url: str, *accounts: str) -> Iterator[None]:
    before = snapshot(database_url, accounts)
    yield
    assert snapshot(database_url, accounts) == before


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape, the exact status and code, and no trace of the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    for leak in ("Traceback", 'File "', "site-packages", "psycopg", "sqlalchemy", "Error("):
        assert leak not in response.text
    return error


def validation_errors(response: Any) -> list[tuple[list[str], str]]:
    error = assert_error(response, 422, "validation_error")
    return [(e["loc"], e["type"]) for e in error["details"]["errors"]]


def open_account(client: TestClient, *, currency: str = "CNY", kind: str = "liability", **fields: Any) -> str:
    account_id = new()
    response = client.post(ACCOUNTS, json={"id": account_id, "currency": currency, "kind": kind, "code": 100, **fields})
    assert response.status_code == 201, response.text
    return account_id


def transfer_body(debit: str, credit: str, amount: Any = 100, **fields: Any) -> dict[str, Any]:
    return {
        "id": new(),
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount_minor": amount,
        "currency": "CNY",
        "code": 1,
        **fields,
    }


def move(client: TestClient, debit: str, credit: str, amount: int) -> dict[str, Any]:
    response = client.post(TRANSFERS, json=transfer_body(debit, credit, amount))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def parties(client: TestClient) -> tuple[str, str, str]:
    """A bank funding account, Alice (no overdraft, 1,000 funded) and Bob."""
    bank = open_account(client, kind="asset")
    alice = open_account(client, debits_must_not_exceed_credits=True)
    bob = open_account(client)
    move(client, bank, alice, 1_000)
    return bank, alice, bob


def balances(client: TestClient, account: str) -> dict[str, int]:
    response = client.get(f"{ACCOUNTS}/{account}/balances")
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


# -- amounts ---------------------------------------------------------------------------------------

BAD_AMOUNTS = [
    pytest.param(0, "greater_than", id="zero"),
    pytest.param(-1, "greater_than", id="negative"),
    pytest.param(-(2**63), "greater_than", id="min-bigint"),
    pytest.param(1.5, "int_type", id="fraction"),
    pytest.param(100.0, "int_type", id="float-integral"),
    pytest.param("100", "int_type", id="string"),
    pytest.param(True, "int_type", id="bool"),
    pytest.param(None, "int_type", id="null"),
    pytest.param(2**63, "less_than_equal", id="2^63"),
    pytest.param(2**64, "less_than_equal", id="2^64"),
    pytest.param(10**40, "less_than_equal", id="10^40"),
]


@pytest.mark.parametrize(("amount", "error_type"), BAD_AMOUNTS)
def test_transfer_with_bad_amount_is_refused_and_writes_nothing(
    client: TestClient, database_url: str, parties: tuple[str, str, str], amount: Any, error_type: str
) -> None:
    bank, alice, _ = parties
    with unchanged(database_url, bank, alice):
        response = client.post(TRANSFERS, json=transfer_body(bank, alice, amount))
    assert validation_errors(response) == [(["body", "amount_minor"], error_type)]


@pytest.mark.parametrize(("amount", "error_type"), BAD_AMOUNTS)
def test_batch_item_with_bad_amount_refuses_the_whole_batch(
    client: TestClient, database_url: str, parties: tuple[str, str, str], amount: Any, error_type: str
) -> None:
    bank, alice, bob = parties
    good = transfer_body(bank, bob, 5)
    with unchanged(database_url, bank, alice, bob):
        response = client.post(BATCH, json={"transfers": [good, transfer_body(bank, alice, amount)], "atomic": False})
    assert validation_errors(response) == [(["body", "transfers", "1", "amount_minor"], error_type)]


@pytest.mark.parametrize(("amount", "error_type"), [p for p in BAD_AMOUNTS if p.id != "null"])
def test_post_pending_with_bad_amount_is_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str], amount: Any, error_type: str
) -> None:
    _, alice, bob = parties
    hold = transfer_body(alice, bob, 300, pending=True)
    assert client.post(TRANSFERS, json=hold).status_code == 201
    with unchanged(database_url, alice, bob):
        response = client.post(f"{TRANSFERS}/{hold['id']}/post", json={"id": new(), "amount_minor": amount})
    assert validation_errors(response) == [(["body", "amount_minor"], error_type)]


def test_largest_amount_is_accepted_and_one_more_overflows(
    fresh_database: Callable[[], str], settings: Settings
) -> None:
    # A database of its own: a balance at 2^63 - 1 would break every later test sharing the funding side.
    url = fresh_database()
    with TestClient(create_app(settings, database_url=url), headers=INTERNAL) as own:
        bank = open_account(own, kind="asset")
        alice = open_account(own)
        top = own.post(TRANSFERS, json=transfer_body(bank, alice, 2**63 - 1))
        assert top.status_code == 201, top.text
        assert top.json()["amount_minor"] == 2**63 - 1
        assert balances(own, alice)["posted_minor"] == 2**63 - 1
        with unchanged(url, bank, alice):
            response = own.post(TRANSFERS, json=transfer_body(bank, alice, 1))
        assert_error(response, 422, "overflows_debits")


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        pytest.param("limit_minor", -1, "greater_than_equal", id="limit-negative"),
        pytest.param("limit_minor", 2**63, "less_than_equal", id="limit-2^63"),
        pytest.param("limit_minor", 1.5, "int_type", id="limit-fraction"),
        pytest.param("code", 0, "greater_than_equal", id="code-zero"),
        pytest.param("code", 65536, "less_than_equal", id="code-too-big"),
        pytest.param("code", "100", "int_type", id="code-string"),
        pytest.param("kind", "bank", "enum", id="kind-unknown"),
        pytest.param("currency", "cny", "string_pattern_mismatch", id="currency-lowercase"),
        pytest.param("currency", "CNYX", "string_pattern_mismatch", id="currency-4-letters"),
        pytest.param("debits_must_not_exceed_credits", "yes", "bool_type", id="flag-string"),
        pytest.param("balance", 100, "extra_forbidden", id="unknown-field"),
    ],
)
def test_account_with_bad_field_is_refused(
    client: TestClient, database_url: str, field: str, value: Any, error_type: str
) -> None:
    body = {"id": new(), "currency": "CNY", "kind": "liability", "code": 100, field: value}
    with unchanged(database_url, body["id"]):
        response = client.post(ACCOUNTS, json=body)
    assert validation_errors(response) == [(["body", field], error_type)]
    assert_error(client.get(f"{ACCOUNTS}/{body['id']}"), 404, "account_not_found")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"currency": "ZZZ"}, "invalid_currency", id="not-iso"),
        pytest.param({"currency": "XAU"}, "invalid_currency", id="metal"),
        pytest.param(
            {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True},
            "validation_error",
            id="both-flags",
        ),
        pytest.param({"limit_minor": 5}, "validation_error", id="limit-without-flag"),
    ],
)
def test_account_refused_by_domain_rules(
    client: TestClient, database_url: str, fields: dict[str, Any], code: str
) -> None:
    body = {"id": new(), "currency": "CNY", "kind": "liability", "code": 100, **fields}
    with unchanged(database_url, body["id"]):
        response = client.post(ACCOUNTS, json=body)
    assert_error(response, 422, code)


# -- malformed and oversized bodies --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"id": ', id="truncated"),
        pytest.param(b'{"amount_minor": 1,}', id="trailing-comma"),
        pytest.param(b"{'amount_minor': 1}", id="single-quotes"),
        pytest.param(b"amount_minor=1", id="form-encoded"),
    ],
)
@pytest.mark.parametrize("path", [TRANSFERS, BATCH, ACCOUNTS])
def test_malformed_json_is_400(client: TestClient, database_url: str, path: str, raw: bytes) -> None:
    with unchanged(database_url):
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
    error = assert_error(response, 400, "malformed_json")
    assert error["details"] == {}


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        pytest.param(b"", "missing", id="empty"),
        pytest.param(b"[]", "model_attributes_type", id="array"),
        pytest.param(b'"transfer"', "model_attributes_type", id="string"),
        pytest.param(b"null", "model_attributes_type", id="null"),
    ],
)
def test_json_that_is_not_an_object_is_422(client: TestClient, database_url: str, raw: bytes, error_type: str) -> None:
    with unchanged(database_url):
        response = client.post(TRANSFERS, content=raw, headers={"content-type": "application/json"})
    assert validation_errors(response) == [(["body"], error_type)]


@pytest.fixture(scope="module")
def small_client(database_url: str) -> Iterator[TestClient]:
    limited = Settings(
        env="test", db_pool_size=2, db_pool_overflow=0, max_body_bytes=4096, internal_token=INTERNAL_TOKEN
    )
    with TestClient(create_app(limited, database_url=database_url), headers=INTERNAL) as test_client:
        yield test_client


def padded_transfer(debit: str, credit: str, size: int) -> bytes:
    """A valid transfer whose JSON is exactly ``size`` bytes (padded with insignificant whitespace)."""
    raw = json.dumps(transfer_body(debit, credit, 7, metadata={"note": "padded"})).encode()
    assert len(raw) < size
    padded = raw[:-1] + b" " * (size - len(raw)) + b"}"
    assert len(padded) == size
    return padded


def test_body_over_the_limit_is_413_and_writes_nothing(small_client: TestClient, database_url: str) -> None:
    bank = open_account(small_client, kind="asset")
    alice = open_account(small_client)
    at_limit = small_client.post(
        TRANSFERS, content=padded_transfer(bank, alice, 4096), headers={"content-type": "application/json"}
    )
    assert at_limit.status_code == 201, at_limit.text

    with unchanged(database_url, bank, alice):
        response = small_client.post(
            TRANSFERS, content=padded_transfer(bank, alice, 4097), headers={"content-type": "application/json"}
        )
        batch = small_client.post(
            BATCH, json={"transfers": [transfer_body(bank, alice, 1, metadata={"n": "x" * 5000})]}
        )
        lying = small_client.post(
            TRANSFERS, content=b"{}", headers={"content-type": "application/json", "content-length": "nonsense"}
        )
    for refused in (response, batch, lying):
        error = assert_error(refused, 413, "payload_too_large")
        assert error["details"] == {"max_bytes": 4096}


def test_chunked_body_over_the_limit_is_413(small_client: TestClient, database_url: str) -> None:
    bank = open_account(small_client, kind="asset")
    alice = open_account(small_client)
    raw = padded_transfer(bank, alice, 4097)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield raw[:2000]
        yield raw[2000:]

    with unchanged(database_url, bank, alice):
        response = small_client.post(TRANSFERS, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="too-deep"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b'{"id": "\xc3\x28"}', id="invalid-utf8-in-string"),
    ],
)
def test_undecodable_json_is_malformed(client: TestClient, database_url: str, raw: bytes) -> None:
    with unchanged(database_url):
        response = client.post(TRANSFERS, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "malformed_json")


# -- metadata --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        pytest.param({f"k{i}": i for i in range(33)}, "metadata_too_large", id="33-keys"),
        pytest.param({"note": "x" * 2100}, "metadata_too_large", id="over-2KiB"),
        pytest.param({"note": "界" * 700}, "metadata_too_large", id="over-2KiB-utf8"),
        # PostgreSQL's jsonb cannot hold U+0000: refused up front, not a 500 from the database.
        pytest.param({"\u0000": None}, "invalid_transfer", id="nul-in-a-key"),
        pytest.param({"note": "a\u0000b"}, "invalid_transfer", id="nul-in-a-value"),
        pytest.param({"lines": [{"text": "\u0000"}]}, "invalid_transfer", id="nul-nested"),
    ],
)
def test_bad_metadata_is_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str], metadata: dict[str, Any], code: str
) -> None:
    bank, alice, bob = parties
    hold = transfer_body(alice, bob, 10, pending=True)
    assert client.post(TRANSFERS, json=hold).status_code == 201
    with unchanged(database_url, bank, alice, bob):
        single = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, metadata=metadata))
        batch = client.post(
            BATCH, json={"transfers": [transfer_body(bank, bob, 5), transfer_body(bank, alice, 5, metadata=metadata)]}
        )
    assert assert_error(single, 422, code)["details"]["field"] == "metadata"
    assert assert_error(batch, 422, code)["details"]["index"] == 1
    with unchanged(database_url, alice, bob):
        post = client.post(f"{TRANSFERS}/{hold['id']}/post", json={"id": new(), "metadata": metadata})
        void = client.post(f"{TRANSFERS}/{hold['id']}/void", json={"id": new(), "metadata": metadata})
    assert_error(post, 422, code)
    assert_error(void, 422, code)


def test_metadata_at_the_limits_is_accepted(client: TestClient, parties: tuple[str, str, str]) -> None:
    bank, alice, _ = parties
    keys = {f"k{i}": i for i in range(32)}
    assert client.post(TRANSFERS, json=transfer_body(bank, alice, 5, metadata=keys)).json()["metadata"] == keys
    note = {"note": "x" * (2048 - len('{"note":""}'))}
    response = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, metadata=note))
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == note


# -- refusals by ledger rules ----------------------------------------------------------------------


def test_unknown_accounts_are_404(client: TestClient, database_url: str, parties: tuple[str, str, str]) -> None:
    bank, alice, _ = parties
    ghost = new()
    with unchanged(database_url, bank, alice):
        debit = client.post(TRANSFERS, json=transfer_body(ghost, alice, 5))
        credit = client.post(TRANSFERS, json=transfer_body(bank, ghost, 5))
        both = client.post(TRANSFERS, json=transfer_body(ghost, new(), 5))
    assert_error(debit, 404, "debit_account_not_found")
    assert_error(credit, 404, "credit_account_not_found")
    assert_error(both, 404, "debit_account_not_found")
    assert_error(client.get(f"{ACCOUNTS}/{ghost}"), 404, "account_not_found")
    assert_error(client.get(f"{ACCOUNTS}/{ghost}/balances"), 404, "account_not_found")
    assert_error(client.get(f"{ACCOUNTS}/{ghost}/transfers"), 404, "account_not_found")
    assert_error(client.post(f"{ACCOUNTS}/{ghost}/status", json={"status": "frozen"}), 404, "account_not_found")
    assert_error(client.get(f"{TRANSFERS}/{ghost}"), 404, "transfer_not_found")


def test_currency_mismatch_is_422(client: TestClient, database_url: str, parties: tuple[str, str, str]) -> None:
    bank, alice, _ = parties
    dollars = open_account(client, currency="USD")
    with unchanged(database_url, bank, alice, dollars):
        wrong_transfer_currency = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, currency="USD"))
        wrong_account_currency = client.post(TRANSFERS, json=transfer_body(bank, dollars, 5))
    assert_error(wrong_transfer_currency, 422, "currency_mismatch")
    assert_error(wrong_account_currency, 422, "currency_mismatch")


@pytest.mark.parametrize(
    ("currency", "status", "code"),
    [
        pytest.param("ZZZ", 422, "invalid_currency", id="not-iso"),
        pytest.param("XTS", 422, "invalid_currency", id="testing-code"),
        pytest.param("cny", 422, "validation_error", id="lowercase"),
        pytest.param("CN", 422, "validation_error", id="two-letters"),
        pytest.param("", 422, "validation_error", id="empty"),
        pytest.param(156, 422, "validation_error", id="numeric"),
    ],
)
def test_invalid_currency_code_is_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str], currency: Any, status: int, code: str
) -> None:
    bank, alice, _ = parties
    with unchanged(database_url, bank, alice):
        response = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, currency=currency))
    assert_error(response, status, code)


def test_insufficient_funds_is_409(client: TestClient, database_url: str, parties: tuple[str, str, str]) -> None:
    _, alice, bob = parties
    with unchanged(database_url, alice, bob):
        response = client.post(TRANSFERS, json=transfer_body(alice, bob, 1_001))
    assert_error(response, 409, "exceeds_credits")
    exact = client.post(TRANSFERS, json=transfer_body(alice, bob, 1_000))
    assert exact.status_code == 201, exact.text
    assert balances(client, alice)["available_minor"] == 0
    with unchanged(database_url, alice, bob):
        assert_error(client.post(TRANSFERS, json=transfer_body(alice, bob, 1)), 409, "exceeds_credits")


def test_same_account_on_both_sides_is_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    _, alice, _ = parties
    with unchanged(database_url, alice):
        response = client.post(TRANSFERS, json=transfer_body(alice, alice, 5))
    assert_error(response, 422, "accounts_must_be_different")


@pytest.mark.parametrize(
    ("fields", "loc", "error_type"),
    [
        pytest.param({"fee": 1}, ["body", "fee"], "extra_forbidden", id="extra"),
        pytest.param({"type": "posted"}, ["body", "type"], "extra_forbidden", id="internal-field"),
        pytest.param({"linked": True}, ["body", "linked"], "extra_forbidden", id="linked"),
        pytest.param({"pending": "true"}, ["body", "pending"], "bool_type", id="pending-string"),
        pytest.param({"id": "not-a-uuid"}, ["body", "id"], "uuid_parsing", id="bad-id"),
        pytest.param({"code": 0}, ["body", "code"], "greater_than_equal", id="code-zero"),
        pytest.param({"pending": True, "timeout_s": 0}, ["body", "timeout_s"], "greater_than_equal", id="timeout-0"),
    ],
)
def test_unknown_or_mistyped_fields_are_refused(
    client: TestClient,
    database_url: str,
    parties: tuple[str, str, str],
    fields: dict[str, Any],
    loc: list[str],
    error_type: str,
) -> None:
    bank, alice, _ = parties
    with unchanged(database_url, bank, alice):
        response = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, **fields))
    assert validation_errors(response) == [(loc, error_type)]


def test_unknown_fields_are_refused_on_every_route(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, bob = parties
    hold = transfer_body(alice, bob, 10, pending=True)
    assert client.post(TRANSFERS, json=hold).status_code == 201
    with unchanged(database_url, bank, alice, bob):
        batch_top = client.post(BATCH, json={"transfers": [transfer_body(bank, alice, 5)], "dry_run": True})
        batch_item = client.post(BATCH, json={"transfers": [transfer_body(bank, alice, 5, fee=1)]})
        post = client.post(f"{TRANSFERS}/{hold['id']}/post", json={"id": new(), "currency": "CNY"})
        void = client.post(f"{TRANSFERS}/{hold['id']}/void", json={"id": new(), "amount_minor": 5})
        status = client.post(f"{ACCOUNTS}/{bob}/status", json={"status": "frozen", "reason": "x"})
    assert validation_errors(batch_top) == [(["body", "dry_run"], "extra_forbidden")]
    assert validation_errors(batch_item) == [(["body", "transfers", "0", "fee"], "extra_forbidden")]
    assert validation_errors(post) == [(["body", "currency"], "extra_forbidden")]
    assert validation_errors(void) == [(["body", "amount_minor"], "extra_forbidden")]
    assert validation_errors(status) == [(["body", "reason"], "extra_forbidden")]


def test_timeout_on_a_posted_transfer_is_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, _ = parties
    with unchanged(database_url, bank, alice):
        response = client.post(TRANSFERS, json=transfer_body(bank, alice, 5, timeout_s=60))
    assert_error(response, 422, "invalid_transfer")


def test_same_id_with_different_fields_is_409(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, bob = parties
    original = transfer_body(bank, alice, 250, metadata={"ref": "a"})
    first = client.post(TRANSFERS, json=original)
    assert first.status_code == 201, first.text
    for change in ({"amount_minor": 251}, {"credit_account_id": bob}, {"metadata": {"ref": "b"}}, {"code": 2}):
        with unchanged(database_url, bank, alice, bob):
            response = client.post(TRANSFERS, json={**original, **change})
        assert_error(response, 409, "id_already_exists_with_different_fields")
    with unchanged(database_url, bank, alice, bob):
        replay = client.post(TRANSFERS, json=original)
    assert replay.status_code == 200
    assert replay.json() == first.json()


# -- batches ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("atomic", [True, False])
def test_duplicate_ids_in_a_batch_are_refused(
    client: TestClient, database_url: str, parties: tuple[str, str, str], atomic: bool
) -> None:
    bank, alice, bob = parties
    first = transfer_body(bank, alice, 5)
    second = transfer_body(bank, bob, 6)
    with unchanged(database_url, bank, alice, bob):
        response = client.post(
            BATCH, json={"transfers": [first, second, {**second, "id": first["id"]}], "atomic": atomic}
        )
    assert assert_error(response, 422, "duplicate_id_in_batch")["details"] == {"index": 2}


@pytest.mark.parametrize(
    ("size", "error_type"), [pytest.param(0, "too_short", id="empty"), pytest.param(1001, "too_long", id="1001")]
)
def test_batch_size_is_bounded(
    client: TestClient, database_url: str, parties: tuple[str, str, str], size: int, error_type: str
) -> None:
    bank, alice, _ = parties
    with unchanged(database_url, bank, alice):
        response = client.post(BATCH, json={"transfers": [transfer_body(bank, alice, 1) for _ in range(size)]})
    assert validation_errors(response) == [(["body", "transfers"], error_type)]


def test_batch_of_exactly_1000_is_accepted(client: TestClient, database_url: str) -> None:
    bank = open_account(client, kind="asset")
    alice = open_account(client)
    before = snapshot(database_url, (bank, alice))
    response = client.post(BATCH, json={"transfers": [transfer_body(bank, alice, 1) for _ in range(1000)]})
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1000
    assert response.json()["failed"] == 0
    after = snapshot(database_url, (bank, alice))
    assert after["transfers"] == before["transfers"] + 1000
    assert after["outbox"] == before["outbox"] + 1
    assert balances(client, alice)["posted_minor"] == 1000


def test_atomic_batch_failure_is_409_and_writes_nothing(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, bob = parties
    items = [transfer_body(bank, alice, 100), transfer_body(alice, bob, 1_101), transfer_body(bank, bob, 7)]
    with unchanged(database_url, bank, alice, bob):
        response = client.post(BATCH, json={"transfers": items})
    error = assert_error(response, 409, "exceeds_credits")
    assert error["details"]["index"] == 1
    results = error["details"]["results"]
    assert [(r["index"], r["id"], r["status"], r["code"]) for r in results] == [
        (0, items[0]["id"], "failed", "linked_event_failed"),
        (1, items[1]["id"], "failed", "exceeds_credits"),
        (2, items[2]["id"], "failed", "linked_event_failed"),
    ]
    for item in items:
        assert_error(client.get(f"{TRANSFERS}/{item['id']}"), 404, "transfer_not_found")
    # The same batch made valid is applied whole.
    items[1]["amount_minor"] = 1_100
    applied = client.post(BATCH, json={"transfers": items})
    assert applied.status_code == 200, applied.text
    assert applied.json()["created"] == 3
    assert balances(client, alice)["posted_minor"] == 0
    assert balances(client, bob)["posted_minor"] == 1_107


def test_atomic_batch_reports_the_first_real_failure(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, _ = parties
    items = [transfer_body(bank, alice, 1), transfer_body(new(), alice, 1)]
    with unchanged(database_url, bank, alice):
        response = client.post(BATCH, json={"transfers": items, "atomic": True})
    assert assert_error(response, 404, "debit_account_not_found")["details"]["index"] == 1


def test_non_atomic_batch_reports_each_item(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, bob = parties
    items = [
        transfer_body(bank, alice, 100),
        transfer_body(alice, bob, 5_000),
        transfer_body(bank, bob, 7),
        transfer_body(new(), bob, 1),
        transfer_body(alice, bob, 1_100),
    ]
    before = snapshot(database_url, (bank, alice, bob))
    response = client.post(BATCH, json={"transfers": items, "atomic": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["index"], r["id"], r["status"], r["code"]) for r in body["results"]] == [
        (0, items[0]["id"], "created", None),
        (1, items[1]["id"], "failed", "exceeds_credits"),
        (2, items[2]["id"], "created", None),
        (3, items[3]["id"], "failed", "debit_account_not_found"),
        (4, items[4]["id"], "created", None),
    ]
    assert [r["amount_minor"] for r in body["results"]] == [100, None, 7, None, 1_100]
    assert (body["created"], body["failed"]) == (3, 2)
    after = snapshot(database_url, (bank, alice, bob))
    assert after["transfers"] == before["transfers"] + 3
    assert after["outbox"] == before["outbox"] + 1
    assert balances(client, alice)["posted_minor"] == 0
    assert balances(client, bob)["posted_minor"] == 1_107

    with unchanged(database_url, bank, alice, bob):
        replay = client.post(BATCH, json={"transfers": items, "atomic": False})
    assert replay.status_code == 200
    assert [(r["status"], r["code"]) for r in replay.json()["results"]] == [
        ("exists", None),
        ("failed", "exceeds_credits"),
        ("exists", None),
        ("failed", "debit_account_not_found"),
        ("exists", None),
    ]
    assert (replay.json()["created"], replay.json()["failed"]) == (0, 2)


# -- positive paths --------------------------------------------------------------------------------


def test_create_account_then_replay_then_conflict(client: TestClient, database_url: str) -> None:
    account_id = new()
    body: dict[str, Any] = {
        "id": account_id,
        "currency": "CNY",
        "kind": "liability",
        "code": 100,
        "owner_ref": "customer:42",
        "debits_must_not_exceed_credits": True,
        "limit_minor": 500,
    }
    created = client.post(ACCOUNTS, json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert {k: out[k] for k in body} == body
    assert out["status"] == "open"
    assert out["balances"] == {
        "debits_pending": 0,
        "debits_posted": 0,
        "credits_pending": 0,
        "credits_posted": 0,
        "posted_minor": 0,
        "pending_minor": 0,
        "available_minor": 0,
    }
    with unchanged(database_url, account_id):
        again = client.post(ACCOUNTS, json=body)
    assert again.status_code == 200
    assert again.json() == out
    for change in ({"owner_ref": "customer:43"}, {"limit_minor": 501}, {"kind": "asset"}, {"currency": "USD"}):
        with unchanged(database_url, account_id):
            response = client.post(ACCOUNTS, json={**body, **change})
        assert_error(response, 409, "account_exists_with_different_fields")
    fetched = client.get(f"{ACCOUNTS}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == out


def test_transfer_created_then_replayed_then_read(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, bob = parties
    body = transfer_body(alice, bob, 250, metadata={"reference": "invoice 7"})
    before = snapshot(database_url, (alice, bob))
    created = client.post(TRANSFERS, json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert {k: out[k] for k in ("id", "debit_account_id", "credit_account_id", "amount_minor", "currency", "code")} == {
        k: body[k] for k in ("id", "debit_account_id", "credit_account_id", "amount_minor", "currency", "code")
    }
    assert out["type"] == "posted"
    assert out["metadata"] == {"reference": "invoice 7"}
    assert out["pending_status"] is None
    after = snapshot(database_url, (alice, bob))
    assert after["transfers"] == before["transfers"] + 1
    assert after["outbox"] == before["outbox"] + 1

    with unchanged(database_url, bank, alice, bob):
        replay = client.post(TRANSFERS, json=body)
    assert replay.status_code == 200
    assert replay.json() == out
    fetched = client.get(f"{TRANSFERS}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == out

    assert balances(client, alice) == {
        "debits_pending": 0,
        "debits_posted": 250,
        "credits_pending": 0,
        "credits_posted": 1_000,
        "posted_minor": 750,
        "pending_minor": 0,
        "available_minor": 750,
    }
    assert balances(client, bob)["posted_minor"] == 250
    assert balances(client, bank)["posted_minor"] == 1_000  # an asset is debit-normal: funding Alice debited it


def test_pending_then_post_and_void(client: TestClient, database_url: str, parties: tuple[str, str, str]) -> None:
    _, alice, shop = parties
    hold = transfer_body(alice, shop, 800, pending=True, timeout_s=3600)
    created = client.post(TRANSFERS, json=hold)
    assert created.status_code == 201, created.text
    assert (created.json()["type"], created.json()["pending_status"]) == ("pending", "pending")
    assert created.json()["expires_at"] is not None
    alice_now = balances(client, alice)
    assert (alice_now["debits_pending"], alice_now["posted_minor"], alice_now["available_minor"]) == (800, 1_000, 200)
    with unchanged(database_url, alice, shop):
        assert_error(client.post(TRANSFERS, json=transfer_body(alice, shop, 201)), 409, "exceeds_credits")
        too_much = client.post(f"{TRANSFERS}/{hold['id']}/post", json={"id": new(), "amount_minor": 801})
        not_a_hold = client.post(f"{TRANSFERS}/{new()}/post", json={"id": new()})
    assert_error(too_much, 422, "exceeds_pending_transfer_amount")
    assert_error(not_a_hold, 404, "pending_transfer_not_found")

    post = {"id": new(), "amount_minor": 500, "metadata": {"capture": 1}}
    posted = client.post(f"{TRANSFERS}/{hold['id']}/post", json=post)
    assert posted.status_code == 201, posted.text
    out = posted.json()
    assert (out["id"], out["type"], out["pending_id"], out["amount_minor"]) == (
        post["id"],
        "post_pending",
        hold["id"],
        500,
    )
    assert (out["debit_account_id"], out["credit_account_id"], out["currency"]) == (alice, shop, "CNY")
    assert client.get(f"{TRANSFERS}/{hold['id']}").json()["pending_status"] == "posted"
    alice_now = balances(client, alice)
    assert (alice_now["debits_pending"], alice_now["posted_minor"], alice_now["available_minor"]) == (0, 500, 500)
    assert balances(client, shop)["posted_minor"] == 500

    with unchanged(database_url, alice, shop):
        replay = client.post(f"{TRANSFERS}/{hold['id']}/post", json=post)
        twice = client.post(f"{TRANSFERS}/{hold['id']}/post", json={"id": new()})
        void_after_post = client.post(f"{TRANSFERS}/{hold['id']}/void", json={"id": new()})
        post_a_post = client.post(f"{TRANSFERS}/{post['id']}/post", json={"id": new()})
    assert replay.status_code == 200
    assert replay.json() == out
    assert_error(twice, 409, "pending_transfer_already_posted")
    assert_error(void_after_post, 409, "pending_transfer_already_posted")
    assert_error(post_a_post, 422, "pending_transfer_not_pending")

    second = transfer_body(alice, shop, 300, pending=True)
    assert client.post(TRANSFERS, json=second).status_code == 201
    assert balances(client, alice)["available_minor"] == 200
    void = {"id": new()}
    voided = client.post(f"{TRANSFERS}/{second['id']}/void", json=void)
    assert voided.status_code == 201, voided.text
    assert (voided.json()["type"], voided.json()["pending_id"], voided.json()["amount_minor"]) == (
        "void_pending",
        second["id"],
        300,
    )
    assert client.get(f"{TRANSFERS}/{second['id']}").json()["pending_status"] == "voided"
    alice_now = balances(client, alice)
    assert (alice_now["debits_pending"], alice_now["posted_minor"], alice_now["available_minor"]) == (0, 500, 500)
    with unchanged(database_url, alice, shop):
        assert client.post(f"{TRANSFERS}/{second['id']}/void", json=void).status_code == 200
        assert_error(
            client.post(f"{TRANSFERS}/{second['id']}/void", json={"id": new()}), 409, "pending_transfer_already_voided"
        )
        assert_error(
            client.post(f"{TRANSFERS}/{second['id']}/post", json={"id": new()}), 409, "pending_transfer_already_voided"
        )


def test_account_status_blocks_transfers(client: TestClient, database_url: str, parties: tuple[str, str, str]) -> None:
    bank, alice, bob = parties
    frozen = client.post(f"{ACCOUNTS}/{bob}/status", json={"status": "frozen"})
    assert frozen.status_code == 200
    assert frozen.json()["status"] == "frozen"
    with unchanged(database_url, bank, alice, bob):
        assert_error(client.post(TRANSFERS, json=transfer_body(alice, bob, 5)), 409, "credit_account_frozen")
        assert_error(client.post(TRANSFERS, json=transfer_body(bob, alice, 5)), 409, "debit_account_frozen")
        assert_error(client.post(f"{ACCOUNTS}/{bob}/status", json={"status": "gone"}), 422, "validation_error")
    assert client.post(f"{ACCOUNTS}/{bob}/status", json={"status": "closed"}).json()["status"] == "closed"
    with unchanged(database_url, bank, alice, bob):
        reopen = client.post(f"{ACCOUNTS}/{bob}/status", json={"status": "open"})
        assert_error(client.post(TRANSFERS, json=transfer_body(alice, bob, 5)), 409, "credit_account_closed")
    assert assert_error(reopen, 409, "invalid_account_status_change")["details"] == {
        "current": "closed",
        "requested": "open",
    }


def test_account_transfers_pages_newest_first(client: TestClient, parties: tuple[str, str, str]) -> None:
    bank, alice, bob = parties
    ids = [move(client, bank, bob, amount)["id"] for amount in (1, 2, 3, 4, 5)]
    ids += [move(client, bob, alice, amount)["id"] for amount in (6, 7)]
    move(client, bank, alice, 8)  # not Bob's: never listed

    pages: list[list[str]] = []
    seqs: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"{ACCOUNTS}/{bob}/transfers", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([item["id"] for item in page["items"]])
        seqs += [item["seq"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == list(reversed(ids))
    assert seqs == sorted(seqs, reverse=True)

    whole = client.get(f"{ACCOUNTS}/{bob}/transfers", params={"limit": 7}).json()
    assert [i["id"] for i in whole["items"]] == list(reversed(ids))
    assert whole["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        pytest.param({"cursor": "bm9wZQ"}, "invalid_cursor", id="not-ours"),
        pytest.param({"cursor": "czA"}, "invalid_cursor", id="seq-zero"),
        pytest.param({"cursor": "cy0x"}, "invalid_cursor", id="seq-negative"),
        pytest.param({"cursor": "%%%"}, "invalid_cursor", id="not-base64"),
        pytest.param({"cursor": "c" * 65}, "validation_error", id="too-long"),
        pytest.param({"limit": 0}, "validation_error", id="limit-0"),
        pytest.param({"limit": 501}, "validation_error", id="limit-501"),
        pytest.param({"limit": "ten"}, "validation_error", id="limit-text"),
    ],
)
def test_bad_paging_parameters_are_422(
    client: TestClient, parties: tuple[str, str, str], params: dict[str, Any], code: str
) -> None:
    _, alice, _ = parties
    assert_error(client.get(f"{ACCOUNTS}/{alice}/transfers", params=params), 422, code)


def test_malformed_ids_in_paths_are_422(client: TestClient) -> None:
    assert validation_errors(client.get(f"{TRANSFERS}/42")) == [(["path", "transfer_id"], "uuid_parsing")]
    assert validation_errors(client.get(f"{ACCOUNTS}/nope")) == [(["path", "account_id"], "uuid_parsing")]
    assert validation_errors(client.post(f"{TRANSFERS}/nope/void", json={"id": new()})) == [
        (["path", "pending_id"], "uuid_parsing")
    ]


# -- access ----------------------------------------------------------------------------------------


def login_token(
    client: TestClient, settings: Settings, database_url: str, kind: PrincipalKind, roles: frozenset[StaffRole]
) -> str:
    """A fresh principal of this kind, logged in through the API: its bearer access token."""
    _, login = create_principal_sync(database_url, settings, SystemClock(), kind=kind, roles=roles)
    response = client.post(
        "/v1/auth/login", json={"login": login, "password": PASSWORD, "client": "token"}, headers={"Authorization": ""}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_the_ledger_api_takes_only_the_internal_token_or_staff_with_ledger_operate(
    client: TestClient, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, _ = parties
    body = transfer_body(bank, alice, 5)
    bare = {"Authorization": ""}  # the module's client sends the internal token unless told otherwise
    with unchanged(database_url, bank, alice):
        refused = [
            client.post(TRANSFERS, json=body, headers=bare),
            client.post(TRANSFERS, json=body, headers={"Authorization": "Bearer wrong"}),
            client.post(TRANSFERS, json=body, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}-and-more"}),
            client.post(TRANSFERS, json=body, headers={"Authorization": f"Basic {INTERNAL_TOKEN}"}),
            client.post(TRANSFERS, json=body, headers={"Authorization": INTERNAL_TOKEN}),
            client.post(ACCOUNTS, json={"id": new(), "currency": "CNY", "kind": "asset", "code": 1}, headers=bare),
            client.get(f"{ACCOUNTS}/{alice}", headers=bare),
            client.get(f"{TRANSFERS}/{new()}", headers=bare),
        ]
    for response in refused:
        assert_error(response, 401, "unauthenticated")
    for response in refused[1:5]:
        assert INTERNAL_TOKEN not in response.text

    allowed = client.post(TRANSFERS, json=body)
    assert allowed.status_code == 201, allowed.text
    lower = client.get(f"{TRANSFERS}/{body['id']}", headers={"authorization": f"bearer {INTERNAL_TOKEN}"})
    assert lower.status_code == 200
    # Operations endpoints stay open.
    assert client.get("/healthz", headers=bare).status_code == 200


def test_staff_need_ledger_operate_and_customers_are_refused(
    client: TestClient, settings: Settings, database_url: str, parties: tuple[str, str, str]
) -> None:
    bank, alice, _ = parties
    # Logins from an address of their own: the session's other tests spend the test client's login budget.
    with TestClient(create_app(settings, database_url=database_url), client=("203.0.113.77", 50000)) as own:
        tokens = {
            name: login_token(own, settings, database_url, kind, roles)
            for name, kind, roles in (
                ("customer", PrincipalKind.CUSTOMER, frozenset()),
                ("teller", PrincipalKind.STAFF, frozenset({StaffRole.TELLER})),
                ("admin", PrincipalKind.STAFF, frozenset({StaffRole.ADMIN})),
            )
        }
    body = transfer_body(bank, alice, 5)
    with unchanged(database_url, bank, alice):
        for name in ("customer", "teller"):
            bearer = {"Authorization": f"Bearer {tokens[name]}"}
            assert_error(client.post(TRANSFERS, json=body, headers=bearer), 403, "forbidden")
            assert_error(client.get(f"{ACCOUNTS}/{alice}", headers=bearer), 403, "forbidden")
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.post(TRANSFERS, json=body, headers=admin).status_code == 201
    assert client.get(f"{ACCOUNTS}/{alice}/balances", headers=admin).status_code == 200
