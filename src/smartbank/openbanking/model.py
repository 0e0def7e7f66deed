"""Open-banking rules in plain Python: permissions, consent statuses, redirect URIs, PKCE, lifetimes.

No database and no web framework here (import-linter checks it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

#: An authorization code lives at most this long (the brief and FAPI: ≤ 60 s).
CODE_TTL: Final = timedelta(seconds=60)
#: A pushed authorization request's ``request_uri`` lives this long (RFC 9126 suggests 5-600 s).
PAR_TTL: Final = timedelta(seconds=90)
#: A front-channel authorization request waits this long for the customer to decide.
INTERACTION_TTL: Final = timedelta(minutes=10)
ACCESS_TOKEN_TTL: Final = timedelta(minutes=5)
REFRESH_TOKEN_TTL: Final = timedelta(days=90)
MAX_REDIRECT_URIS: Final = 10
MAX_URI_CHARS: Final = 500
MAX_STATE_CHARS: Final = 500
#: PKCE verifiers (RFC 7636 §4.1): 43-128 characters of the unreserved set.
VERIFIER_PATTERN: Final = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE_PATTERN: Final = re.compile(r"^[A-Za-z0-9\-_]{43}$")
#: The scopes this server knows: ``accounts`` (AISP), ``payments`` (PISP), ``fundsconfirmations``
#: (confirmation of funds). ``openid`` is accepted and ignored.
SCOPES: Final = frozenset({"accounts", "payments", "fundsconfirmations", "openid"})
RESOURCE_SCOPES: Final = frozenset({"accounts", "payments", "fundsconfirmations"})
SIGNING_ALGORITHMS: Final = ("PS256", "ES256")


class Environment(StrEnum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class AuthMethod(StrEnum):
    PRIVATE_KEY_JWT = "private_key_jwt"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name


class ConsentStatus(StrEnum):
    """v4.0 consent statuses (ISO 20022 codes). ``COND`` (consumed) is a payment consent that was used."""

    AWAITING_AUTHORISATION = "AWAU"
    AUTHORISED = "AUTH"
    REJECTED = "RJCT"
    EXPIRED = "EXPD"
    CANCELLED = "CANC"
    CONSUMED = "COND"


class ConsentKind(StrEnum):
    """What a consent lets a partner do; each kind is used with its own scope."""

    ACCOUNT_ACCESS = "account_access"
    DOMESTIC_PAYMENT = "domestic_payment"
    FUNDS_CONFIRMATION = "funds_confirmation"

    @property
    def scope(self) -> str:
        return {"account_access": "accounts", "domestic_payment": "payments"}.get(self.value, "fundsconfirmations")

    @property
    def id_prefix(self) -> str:
        return {"account_access": "aac", "domestic_payment": "pdc"}.get(self.value, "fcc")


class AccountPermission(StrEnum):
    """Account-access permissions of the v4.0 ``OBReadConsent1`` (the ones this bank grants)."""

    READ_ACCOUNTS_BASIC = "ReadAccountsBasic"
    READ_ACCOUNTS_DETAIL = "ReadAccountsDetail"
    READ_BALANCES = "ReadBalances"
    READ_TRANSACTIONS_BASIC = "ReadTransactionsBasic"
    READ_TRANSACTIONS_DETAIL = "ReadTransactionsDetail"
    READ_TRANSACTIONS_CREDITS = "ReadTransactionsCredits"
    READ_TRANSACTIONS_DEBITS = "ReadTransactionsDebits"


TRANSACTION_PERMISSIONS: Final = frozenset(
    {
        AccountPermission.READ_TRANSACTIONS_BASIC,
        AccountPermission.READ_TRANSACTIONS_DETAIL,
        AccountPermission.READ_TRANSACTIONS_CREDITS,
        AccountPermission.READ_TRANSACTIONS_DEBITS,
    }
)


def permission_problems(requested: list[str]) -> list[str]:
    """Why a list of permissions cannot be granted (empty when it can).

    v4.0 rules: at least one, no duplicates, only known codes; a transaction detail permission needs
    ReadTransactionsBasic or Detail with Credits/Debits, i.e. Credits/Debits need Basic or Detail.
    """
    problems: list[str] = []
    if not requested:
        return ["at least one permission is required"]
    if len(set(requested)) != len(requested):
        problems.append("a permission is listed twice")
    known = {p.value for p in AccountPermission}
    unknown = sorted(set(requested) - known)
    if unknown:
        problems.append(f"not offered by this bank: {', '.join(unknown)}")
    chosen = set(requested)
    credits_or_debits = {"ReadTransactionsCredits", "ReadTransactionsDebits"} & chosen
    if credits_or_debits and not {"ReadTransactionsBasic", "ReadTransactionsDetail"} & chosen:
        problems.append("ReadTransactionsCredits/Debits need ReadTransactionsBasic or ReadTransactionsDetail")
    return problems


def consent_window_problems(
    now: datetime, expires_at: datetime | None, from_: datetime | None, to: datetime | None
) -> list[tuple[str, str]]:
    """(path, problem) pairs for an account-access consent's dates."""
    problems: list[tuple[str, str]] = []
    if expires_at is not None and expires_at <= now:
        problems.append(("Data.ExpirationDateTime", "the expiry must be in the future"))
    if from_ is not None and to is not None and from_ > to:
        problems.append(("Data.TransactionFromDateTime", "the range starts after it ends"))
    return problems


def status_now(status: ConsentStatus, expires_at: datetime | None, now: datetime) -> ConsentStatus:
    """A consent's status as of ``now``: an awaiting or authorised consent past its expiry is EXPD."""
    if (
        status in (ConsentStatus.AWAITING_AUTHORISATION, ConsentStatus.AUTHORISED)
        and expires_at is not None
        and expires_at <= now
    ):
        return ConsentStatus.EXPIRED
    return status


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be registered as a redirect URI (None when it can).

    Absolute, no fragment, https; plain http only to the loopback host (``localhost``, 127.0.0.1, ::1)
    for native and development clients (RFC 8252 §7.3).
    """
    if len(uri) > MAX_URI_CHARS or not uri.isprintable() or any(ch.isspace() for ch in uri):
        return "too long or not printable"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "not a URL"
    if parts.fragment or "#" in uri:
        return "a redirect URI has no fragment"
    if not parts.hostname or parts.username or parts.password:
        return "a redirect URI names a host and no user"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _loopback(parts.hostname):
        return None
    return "https only (plain http only to localhost or 127.0.0.1)"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scopes_of(scope: str | None) -> list[str]:
    return sorted(set((scope or "").split()))


# -- what an account-access consent shows (AISP) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the permissions of an account-access consent let a partner see."""

    accounts: bool
    account_identification: bool
    balances: bool
    credits: bool
    debits: bool
    transaction_detail: bool

    @classmethod
    def of(cls, permissions: Iterable[str]) -> AccountView:
        chosen = set(permissions)
        transactions = bool({"ReadTransactionsBasic", "ReadTransactionsDetail"} & chosen)
        return cls(
            accounts=bool({"ReadAccountsBasic", "ReadAccountsDetail"} & chosen),
            account_identification="ReadAccountsDetail" in chosen,
            balances="ReadBalances" in chosen,
            # Credits or Debits decide the direction; Basic or Detail must come with one of them.
            credits=transactions and "ReadTransactionsCredits" in chosen,
            debits=transactions and "ReadTransactionsDebits" in chosen,
            transaction_detail="ReadTransactionsDetail" in chosen,
        )

    @property
    def transactions(self) -> bool:
        return self.credits or self.debits

    @property
    def direction(self) -> str | None:
        """The history filter's direction: ``in`` (credits only), ``out`` (debits only), None (both)."""
        if self.credits and self.debits:
            return None
        return "in" if self.credits else "out"


def booking_window(
    consent_from: datetime | None,
    consent_to: datetime | None,
    asked_from: datetime | None,
    asked_to: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    """The booking-time window [from, to] of a transaction listing: what was asked, within the consent's range."""
    start = max((t for t in (consent_from, asked_from) if t is not None), default=None)
    end = min((t for t in (consent_to, asked_to) if t is not None), default=None)
    return start, end


# -- payments (PISP) and event notifications --------------------------------------------------------------


class PaymentStatus(StrEnum):
    """v4.0 statuses of a domestic payment this bank answers (``ExternalPaymentTransactionStatus1Code``)."""

    RECEIVED = "RCVD"
    PENDING = "PDNG"
    SETTLEMENT_COMPLETED = "ACSC"


#: Account identification schemes this bank reads and writes.
SCHEME_BBAN: Final = "UK.OBIE.BBAN"
SCHEME_IBAN: Final = "UK.OBIE.IBAN"
ACCOUNT_SCHEMES: Final = (SCHEME_BBAN, SCHEME_IBAN)
#: A payment or webhook idempotency key: 1-40 printable ASCII characters (the OBIE profile's limit).
MAX_IDEMPOTENCY_KEY_CHARS: Final = 40
#: Webhook deliveries: at most this many tries, waiting 30 s, 1 min, 2 min, ... (capped at an hour).
MAX_DELIVERY_ATTEMPTS: Final = 10
FIRST_RETRY: Final = timedelta(seconds=30)
MAX_RETRY: Final = timedelta(hours=1)


def check_idempotency_key(key: str | None) -> str | None:
    """Why an ``x-idempotency-key`` is not acceptable (None when it is)."""
    if key is None or not key:
        return "x-idempotency-key is required"
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isascii() or not key.isprintable() or key.strip() != key:
        return f"x-idempotency-key is 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"
    return None


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed delivery (1-based): doubling, capped."""
    delay: timedelta = FIRST_RETRY * (2 ** max(0, min(attempts - 1, 16)))
    return min(delay, MAX_RETRY)


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to ``address`` (an IP literal), None when it may.

    Production partners are reached only at public (globally routable) addresses: never loopback,
    private, link-local, multicast, reserved or unspecified ones. Sandbox partners may use any.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if allow_private:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private:
        return f"{ip} is not a public address"
    return None


def notification_uri_problem(uri: str, *, sandbox: bool) -> str | None:
    """Why ``uri`` cannot receive event notifications: https (http only for sandbox apps), a host, no fragment."""
    if len(uri) > MAX_URI_CHARS or not uri.isprintable() or any(ch.isspace() for ch in uri):
        return "too long or not printable"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a URL"
    if parts.fragment or "#" in uri or not parts.hostname or parts.username or parts.password:
        return "an absolute URL with a host, no user and no fragment"
    if parts.scheme == "https" or (sandbox and parts.scheme == "http"):
        return None
    return "https only (plain http only for sandbox apps)"
