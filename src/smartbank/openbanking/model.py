"""Open-banking rules in plain Python: permissions, consent statuses, redirect URIs, PKCE, lifetimes.

No database and no web framework here (import-linter checks it).
"""

from __future__ import annotations

import ipaddress
import re
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
#: The scopes this server knows: ``accounts`` (AISP). ``openid`` is accepted and ignored.
SCOPES: Final = frozenset({"accounts", "openid"})
SIGNING_ALGORITHMS: Final = ("PS256", "ES256")


class Environment(StrEnum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class AuthMethod(StrEnum):
    PRIVATE_KEY_JWT = "private_key_jwt"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name


class ConsentStatus(StrEnum):
    """v4.0 consent statuses (ISO 20022 codes)."""

    AWAITING_AUTHORISATION = "AWAU"
    AUTHORISED = "AUTH"
    REJECTED = "RJCT"
    EXPIRED = "EXPD"
    CANCELLED = "CANC"


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
