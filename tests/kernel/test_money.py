"""Money: integer minor units, strict parsing, ISO 4217 exponents."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartbank.kernel.errors import DomainError
from smartbank.kernel.money import MAX_AMOUNT_MINOR, Money, active_currencies, currency_exponent


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("CNY", 2), ("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_exponents_follow_iso_4217(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


def test_unknown_and_non_money_codes_are_refused() -> None:
    for code in ("XXX", "XAU", "ABC", "cny", ""):
        with pytest.raises(DomainError) as err:
            currency_exponent(code)
        assert err.value.code == "invalid_currency"
    assert "CNY" in active_currencies()
    assert len(active_currencies()) > 150


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.30", "CNY", 1230),
        ("12.3", "CNY", 1230),
        ("12", "CNY", 1200),
        ("0.01", "CNY", 1),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("-5.5", "CNY", -550),
    ],
)
def test_parse(text: str, currency: str, minor: int) -> None:
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("12.345", "CNY", "too_many_decimals"),
        ("1.5", "JPY", "too_many_decimals"),
        ("1.2345", "KWD", "too_many_decimals"),
        ("1e3", "CNY", "invalid_amount"),
        ("01.00", "CNY", "invalid_amount"),
        ("", "CNY", "invalid_amount"),
        ("1,00", "CNY", "invalid_amount"),
        ("NaN", "CNY", "invalid_amount"),
        ("1.", "CNY", "invalid_amount"),
    ],
)
def test_parse_never_rounds_or_guesses(text: str, currency: str, code: str) -> None:
    with pytest.raises(DomainError) as err:
        Money.parse(text, currency)
    assert err.value.code == code


def test_floats_and_bools_never_become_money() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "CNY")
    with pytest.raises(TypeError):
        Money(100, "CNY") * 1.5  # type: ignore[operator]


def test_arithmetic_refuses_mixed_currencies() -> None:
    with pytest.raises(DomainError) as err:
        Money(1, "CNY") + Money(1, "USD")
    assert err.value.code == "currency_mismatch"
    assert Money(150, "CNY") - Money(50, "CNY") == Money(100, "CNY")
    assert Money(3, "CNY") * 4 == Money(12, "CNY")


def test_range_is_63_bits() -> None:
    Money(MAX_AMOUNT_MINOR, "CNY")
    with pytest.raises(DomainError) as err:
        Money(MAX_AMOUNT_MINOR + 1, "CNY")
    assert err.value.code == "amount_too_large"


@given(minor=st.integers(min_value=-(10**15), max_value=10**15), currency=st.sampled_from(["CNY", "JPY", "KWD"]))
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert Money.parse(money.format(), currency) == money
