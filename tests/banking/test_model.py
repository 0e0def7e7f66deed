"""Pure banking rules: account numbers, IBAN form, limits, step-up, amounts, statements."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schwifty import IBAN

from smartbank.banking.model import (
    Entry,
    HistoryFilter,
    PaymentRequest,
    account_number_from_iban,
    banking_code_for_ledger,
    build_statement,
    check_account_number,
    check_daily_limit,
    day_bounds,
    decode_cursor,
    encode_cursor,
    format_minor,
    iban_for,
    is_valid_account_number,
    local_day,
    make_account_number,
    step_up_reason,
)
from smartbank.kernel.errors import DomainError

branches = st.integers(0, 9999).map(lambda n: f"{n:04d}")
serials = st.integers(1, 10**10 - 1)


def test_account_number_has_branch_serial_and_mod97_check_digits() -> None:
    number = make_account_number("0001", 1)
    # check digits: 98 - (0001000000000100 mod 97) = 98 - 53 = 45
    assert number == "0001000000000145"
    assert int(number) % 97 == 1
    assert check_account_number("0001 0000 0000 0145") == number


def test_invalid_account_numbers_are_refused_with_their_code() -> None:
    good = make_account_number("0002", 123456)
    bad_check = good[:14] + f"{(int(good[14:]) + 1) % 100:02d}"
    for text in ("", "123", good + "0", good[:-1], "abcd" + good[4:], bad_check, "０" * 16):
        with pytest.raises(DomainError) as caught:
            check_account_number(text)
        assert caught.value.code == "invalid_account_number"
        assert caught.value.http_status == 422


@given(branches, serials)
def test_property_every_generated_number_is_valid(branch: str, serial: int) -> None:
    number = make_account_number(branch, serial)
    assert len(number) == 16 and number.startswith(branch)
    assert is_valid_account_number(number)


@given(branches, serials, st.integers(0, 15), st.integers(1, 9))
def test_property_any_single_digit_error_is_caught(branch: str, serial: int, position: int, delta: int) -> None:
    number = make_account_number(branch, serial)
    digit = (int(number[position]) + delta) % 10
    changed = number[:position] + str(digit) + number[position + 1 :]
    assert not is_valid_account_number(changed)


@given(branches, serials, st.integers(0, 14))
def test_property_any_adjacent_transposition_is_caught(branch: str, serial: int, position: int) -> None:
    number = make_account_number(branch, serial)
    a, b = number[position], number[position + 1]
    if a == b:
        return
    swapped = number[:position] + b + a + number[position + 2 :]
    assert not is_valid_account_number(swapped)


def test_iban_form_in_a_configured_country_round_trips() -> None:
    number = make_account_number("0001", 42)
    iban = iban_for(number, "PL", "10901014")
    parsed = IBAN(iban)
    assert (parsed.country_code, parsed.bank_code, str(parsed.account_code)) == ("PL", "10901014", number)
    assert len(iban) == 28
    assert account_number_from_iban(iban, "PL", "10901014") == number
    with pytest.raises(DomainError) as caught:
        account_number_from_iban(iban[:-1] + str((int(iban[-1]) + 1) % 10), "PL", "10901014")
    assert caught.value.code == "invalid_iban"
    with pytest.raises(DomainError) as caught:
        iban_for(number, "DE", "37040044")  # a German BBAN has room for 10 digits only
    assert caught.value.code == "invalid_iban"


def test_amounts_are_formatted_with_the_currency_exponent() -> None:
    assert format_minor(123_456, "CNY") == "1234.56"
    assert format_minor(-5, "CNY") == "-0.05"
    assert format_minor(1234, "JPY") == "1234"
    assert format_minor(1_234_567, "KWD") == "1234.567"


def test_step_up_is_needed_above_the_threshold_or_for_a_payee_younger_than_a_day() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    assert step_up_reason(500_000, 500_000, None, now) is None
    assert step_up_reason(500_001, 500_000, None, now) == "amount_above_threshold"
    assert step_up_reason(100, 500_000, now - timedelta(hours=23, minutes=59), now) == "new_payee"
    assert step_up_reason(100, 500_000, now - timedelta(hours=24), now) is None


def test_daily_limit_allows_up_to_and_including_the_limit() -> None:
    check_daily_limit(900, 100, 1000, "standard")
    with pytest.raises(DomainError) as caught:
        check_daily_limit(900, 101, 1000, "standard")
    assert caught.value.code == "daily_limit_exceeded"
    assert caught.value.details == {"limit_minor": 1000, "used_minor": 900, "tier": "standard"}


def test_the_limit_day_follows_the_bank_time_zone() -> None:
    assert local_day(datetime(2026, 3, 1, 15, 59, tzinfo=UTC), "Asia/Shanghai") == date(2026, 3, 1)
    assert local_day(datetime(2026, 3, 1, 16, 0, tzinfo=UTC), "Asia/Shanghai") == date(2026, 3, 2)
    start, end = day_bounds(date(2026, 3, 1), date(2026, 3, 1), "Asia/Shanghai")
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        datetime(2026, 2, 28, 16, tzinfo=UTC),
        datetime(2026, 3, 1, 16, tzinfo=UTC),
    )


def test_ledger_codes_map_to_banking_codes() -> None:
    assert banking_code_for_ledger("exceeds_credits") == "insufficient_funds"
    assert banking_code_for_ledger("debit_account_frozen") == "account_frozen"
    assert banking_code_for_ledger("credit_account_frozen") == "account_frozen"
    assert banking_code_for_ledger("credit_account_closed") == "account_closed"
    assert banking_code_for_ledger("overflows_credits") == "overflows_credits"


def test_payment_request_shape_and_fingerprint() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    request = PaymentRequest(a, 100, "CNY", to_account_id=b, reference="rent")
    request.validate()
    assert request.fingerprint() == PaymentRequest(a, 100, "CNY", to_account_id=b, reference=" rent ").fingerprint()
    assert request.fingerprint() != PaymentRequest(a, 101, "CNY", to_account_id=b, reference="rent").fingerprint()
    for bad, code in (
        (PaymentRequest(a, 100, "CNY"), "invalid_payment"),
        (PaymentRequest(a, 100, "CNY", to_account_id=a), "accounts_must_be_different"),
        (PaymentRequest(a, 0, "CNY", to_account_id=b), "amount_must_be_positive"),
        (PaymentRequest(a, 100, "XXX", to_account_id=b), "invalid_currency"),
        (PaymentRequest(a, 100, "CNY", to_account_id=b, reference="x" * 141), "invalid_payment"),
    ):
        with pytest.raises(DomainError) as caught:
            bad.validate()
        assert caught.value.code == code


def test_cursor_round_trips_and_refuses_forgeries() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    for forged in ("", "abc", encode_cursor(1)[:-1] + "!"):
        with pytest.raises(DomainError) as caught:
            decode_cursor(forged)
        assert caught.value.code == "invalid_cursor"


def test_history_filter_validation() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    HistoryFilter(since=now, until=now + timedelta(days=1), min_amount_minor=1, max_amount_minor=2).validate()
    for bad in (
        HistoryFilter(since=now, until=now),
        HistoryFilter(min_amount_minor=5, max_amount_minor=4),
        HistoryFilter(text="x" * 101),
        HistoryFilter(since=datetime(2026, 3, 2)),
    ):
        with pytest.raises(DomainError):
            bad.validate()


def test_statement_running_balance_and_closing() -> None:
    account = uuid.uuid4()
    at = datetime(2026, 3, 2, tzinfo=UTC)
    entries = [
        Entry(i, account, uuid.uuid4(), amount, "CNY", at, None, None, "", None, None)
        for i, amount in enumerate((10_000, -2_550, -1), start=1)
    ]
    statement = build_statement(
        account_id=account,
        account_number=make_account_number("0001", 7),
        currency="CNY",
        first_day=date(2026, 3, 1),
        last_day=date(2026, 3, 31),
        opening_minor=500,
        entries=entries,
        generated_at=at,
    )
    assert [line.balance_minor for line in statement.lines] == [10_500, 7_950, 7_949]
    assert statement.closing_minor == 7_949
