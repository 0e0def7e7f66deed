"""Money as integer minor units with an ISO 4217 currency.

No float ever holds money. Parsing a decimal string with more fractional digits than the currency's
exponent allows is an error, never a rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Final

import iso4217

from smartbank.kernel.errors import DomainError, ErrorCode

#: Largest amount a single transfer or balance column can hold (PostgreSQL bigint).
MAX_AMOUNT_MINOR: Final = 2**63 - 1

_DECIMAL_RE: Final = re.compile(r"^(?P<sign>-)?(?P<int>0|[1-9][0-9]*)(?:\.(?P<frac>[0-9]+))?$")

#: Codes in the ISO 4217 list that are not currencies a bank account can hold: precious metals,
#: SDR, bond-market units, the testing code and "no currency".
_NON_MONEY: Final = frozenset(
    {"XAU", "XAG", "XPD", "XPT", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA", "XTS", "XXX"}
)


@cache
def _table() -> dict[str, int]:
    table: dict[str, int] = {}
    for currency in iso4217.Currency:
        exponent = currency.exponent
        if exponent is None or currency.code in _NON_MONEY:
            continue
        table[currency.code] = int(exponent)
    return table


def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of an active ISO 4217 currency (CNY 2, JPY 0, KWD 3)."""
    try:
        return _table()[code]
    except KeyError:
        raise DomainError(
            ErrorCode.INVALID_CURRENCY, f"{code!r} is not an active ISO 4217 currency", currency=code
        ) from None


def is_currency(code: str) -> bool:
    return code in _table()


def active_currencies() -> frozenset[str]:
    return frozenset(_table())


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in minor units of one currency. Arithmetic across currencies is an error."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:  # bool and float are refused
            raise TypeError("Money.amount_minor must be an int")
        currency_exponent(self.currency)
        if abs(self.amount_minor) > MAX_AMOUNT_MINOR:
            raise DomainError(ErrorCode.AMOUNT_TOO_LARGE, "amount does not fit in 63 bits")

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a decimal string such as ``"12.30"`` in ``currency``; never rounds."""
        exponent = currency_exponent(currency)
        match = _DECIMAL_RE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise DomainError(ErrorCode.INVALID_AMOUNT, f"{text!r} is not a decimal amount", amount=str(text))
        frac = match.group("frac") or ""
        if len(frac) > exponent:
            raise DomainError(
                ErrorCode.TOO_MANY_DECIMALS,
                f"{currency} allows {exponent} decimal places, got {len(frac)}",
                currency=currency,
                allowed=exponent,
            )
        minor = int(match.group("int")) * 10**exponent + (int(frac.ljust(exponent, "0")) if exponent else 0)
        if match.group("sign"):
            minor = -minor
        return cls(minor, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-currency_exponent(self.currency))

    def format(self) -> str:
        """The plain decimal form, with exactly the currency's number of decimals."""
        exponent = currency_exponent(self.currency)
        sign = "-" if self.amount_minor < 0 else ""
        units, minor = divmod(abs(self.amount_minor), 10**exponent)
        return f"{sign}{units}.{minor:0{exponent}d}" if exponent else f"{sign}{units}"

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("Money arithmetic needs Money on both sides")
        if other.currency != self.currency:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH,
                f"cannot combine {self.currency} with {other.currency}",
                left=self.currency,
                right=other.currency,
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def __mul__(self, other: object) -> Money:
        if type(other) is not int:
            raise TypeError("Money can only be multiplied by an int; floats never touch money")
        return Money(self.amount_minor * other, self.currency)

    __rmul__ = __mul__
