"""Pure ledger rules: no database."""

from __future__ import annotations

import importlib
import re
import uuid

import pytest

from smartbank.kernel.errors import DomainError
from smartbank.kernel.ids import new_id
from smartbank.ledger.errors import TRANSFER_MESSAGES, LedgerErrorCode
from smartbank.ledger.model import (
    AccountKind,
    AccountSpec,
    AccountStatus,
    Balances,
    TransferRequest,
    TransferType,
    allowed_status_change,
    validate_batch,
)


def _t(**kw: object) -> TransferRequest:
    base: dict[str, object] = dict(
        id=new_id(), debit_account_id=new_id(), credit_account_id=new_id(), amount_minor=100, currency="CNY", code=1
    )
    base.update(kw)
    return TransferRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"amount_minor": 0}, "amount_must_be_positive"),
        ({"amount_minor": -1}, "amount_must_be_positive"),
        ({"amount_minor": 2**63}, "amount_too_large"),
        ({"amount_minor": 1.5}, "invalid_amount"),
        ({"currency": "XXX"}, "invalid_currency"),
        ({"code": 0}, "invalid_transfer"),
        ({"timeout_s": 10}, "invalid_transfer"),
        ({"metadata": {f"k{i}": i for i in range(33)}}, "metadata_too_large"),
        ({"metadata": {"note": "x" * 3000}}, "metadata_too_large"),
        ({"pending_id": uuid.uuid4()}, "invalid_transfer"),
    ],
)
def test_invalid_requests_are_refused_with_their_code(fields: dict[str, object], code: str) -> None:
    with pytest.raises(DomainError) as err:
        _t(**fields).validate()
    assert err.value.code == code


def test_same_accounts_refused() -> None:
    account = new_id()
    with pytest.raises(DomainError) as err:
        _t(debit_account_id=account, credit_account_id=account).validate()
    assert err.value.code == "accounts_must_be_different"


def test_void_takes_no_amount_and_post_needs_a_pending_id() -> None:
    with pytest.raises(DomainError):
        TransferRequest(id=new_id(), type=TransferType.VOID_PENDING, pending_id=new_id(), amount_minor=5).validate()
    with pytest.raises(DomainError):
        TransferRequest(id=new_id(), type=TransferType.POST_PENDING).validate()


def test_fingerprint_covers_fields_but_not_linked() -> None:
    request = _t()
    from dataclasses import replace

    assert request.fingerprint() == replace(request, linked=True).fingerprint()
    assert request.fingerprint() != replace(request, amount_minor=101).fingerprint()
    assert request.fingerprint() != replace(request, metadata={"a": 1}).fingerprint()


def test_batch_rules() -> None:
    with pytest.raises(DomainError) as err:
        validate_batch([])
    assert err.value.code == "batch_empty"
    with pytest.raises(DomainError) as err:
        validate_batch([_t() for _ in range(1001)])
    assert err.value.code == "batch_too_large"
    same = _t()
    with pytest.raises(DomainError) as err:
        validate_batch([same, same])
    assert err.value.code == "duplicate_id_in_batch"
    from dataclasses import replace

    with pytest.raises(DomainError) as err:
        validate_batch([_t(), replace(_t(), linked=True)])
    assert err.value.code == "linked_event_chain_open"


def test_batch_reports_the_first_problem_in_batch_order() -> None:
    same = _t()
    with pytest.raises(DomainError) as err:
        validate_batch([same, _t(amount_minor=0), same])
    assert (err.value.code, err.value.details["index"]) == ("amount_must_be_positive", 1)
    with pytest.raises(DomainError) as err:
        validate_batch([same, same, _t(amount_minor=0)])
    assert (err.value.code, err.value.details["index"]) == ("duplicate_id_in_batch", 1)


@pytest.mark.parametrize("missing", ["debit_account_id", "credit_account_id", "amount_minor", "currency", "code"])
def test_a_new_transfer_names_the_field_it_lacks(missing: str) -> None:
    with pytest.raises(DomainError) as err:
        _t(**{missing: None}).validate()
    assert (err.value.code, err.value.details["field"]) == ("invalid_transfer", missing)


def test_fingerprint_is_stable_across_releases() -> None:
    """Stored with every transfer and compared on each retry: the same request must keep its hash."""
    request = TransferRequest(
        id=uuid.UUID(int=1),
        type=TransferType.PENDING,
        debit_account_id=uuid.UUID(int=2),
        credit_account_id=uuid.UUID(int=3),
        amount_minor=12345,
        currency="CNY",
        code=7,
        timeout_s=60,
        metadata={"b": 1, "a": "人"},
    )
    assert request.fingerprint().hex() == "cadaec47cf4bb98fc71e60bf514f41a28d372d369899880df96cf2e7a43868d8"


def test_balances_by_normal_side() -> None:
    b = Balances(debits_pending=30, debits_posted=100, credits_pending=5, credits_posted=500)
    assert (b.posted(AccountKind.LIABILITY), b.pending(AccountKind.LIABILITY), b.available(AccountKind.LIABILITY)) == (
        400,
        30,
        370,
    )
    assert (b.posted(AccountKind.ASSET), b.available(AccountKind.ASSET)) == (-400, -405)


def test_account_spec_rules() -> None:
    with pytest.raises(DomainError):
        AccountSpec(new_id(), "CNY", AccountKind.LIABILITY, 1, limit_minor=10).validate()
    with pytest.raises(DomainError):
        AccountSpec(
            new_id(),
            "CNY",
            AccountKind.LIABILITY,
            1,
            debits_must_not_exceed_credits=True,
            credits_must_not_exceed_debits=True,
        ).validate()


def test_status_changes() -> None:
    assert allowed_status_change(AccountStatus.OPEN, AccountStatus.FROZEN)
    assert allowed_status_change(AccountStatus.FROZEN, AccountStatus.OPEN)
    assert not allowed_status_change(AccountStatus.CLOSED, AccountStatus.OPEN)


def test_every_result_code_of_the_transfer_function_has_a_message() -> None:
    """An HTTP error for a refused transfer always says what went wrong, never a generic text."""
    migration = importlib.import_module("smartbank.migrations.versions.0002_ledger")
    quoted = set(re.findall(r"'([a-z_]+)'", migration.FUNCTION))
    codes = {code.value for code in LedgerErrorCode} & quoted
    assert len(codes) >= 25  # the function's vocabulary, found in its source
    assert codes <= set(TRANSFER_MESSAGES)
