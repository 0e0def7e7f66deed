"""Who is calling, and what they may do. Plain Python: no database, no web framework.

Every other domain sees the caller as a :class:`Principal`. Customers are checked by ownership (a
customer's id is the id of their principal); staff by the permissions of their roles; everyone else
is denied by default.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from smartbank.identity.errors import IdentityErrorCode
from smartbank.kernel.errors import DomainError


class PrincipalKind(StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"
    MERCHANT = "merchant"


class StaffRole(StrEnum):
    ADMIN = "admin"
    TELLER = "teller"
    RISK_ANALYST = "risk_analyst"
    CRM_AGENT = "crm_agent"
    LENDING_OFFICER = "lending_officer"


class Permission(StrEnum):
    """What a staff member may do. Values are part of the API: never rename one."""

    CUSTOMERS_READ = "customers:read"
    KYC_DECIDE = "kyc:decide"
    TIERS_SET = "tiers:set"
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_FREEZE = "accounts:freeze"
    TELLER_CASH = "teller:cash"
    PAYMENTS_READ = "payments:read"
    AUDIT_READ = "audit:read"
    STAFF_MANAGE = "staff:manage"
    RISK_REVIEW = "risk:review"
    LENDING_DECIDE = "lending:decide"
    LEDGER_OPERATE = "ledger:operate"  # the internal ledger API: accounts and transfers of any owner


ROLE_PERMISSIONS: Final[dict[StaffRole, frozenset[Permission]]] = {
    StaffRole.ADMIN: frozenset(Permission),
    StaffRole.TELLER: frozenset(
        {Permission.CUSTOMERS_READ, Permission.ACCOUNTS_READ, Permission.TELLER_CASH, Permission.PAYMENTS_READ}
    ),
    StaffRole.RISK_ANALYST: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.ACCOUNTS_READ,
            Permission.ACCOUNTS_FREEZE,
            Permission.PAYMENTS_READ,
            Permission.AUDIT_READ,
            Permission.RISK_REVIEW,
        }
    ),
    StaffRole.CRM_AGENT: frozenset(
        {Permission.CUSTOMERS_READ, Permission.KYC_DECIDE, Permission.TIERS_SET, Permission.ACCOUNTS_READ}
    ),
    StaffRole.LENDING_OFFICER: frozenset(
        {Permission.CUSTOMERS_READ, Permission.ACCOUNTS_READ, Permission.PAYMENTS_READ, Permission.LENDING_DECIDE}
    ),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    id: uuid.UUID
    kind: PrincipalKind
    roles: frozenset[StaffRole] = frozenset()
    #: The web session or token family the request came with (None for internal callers).
    session_id: uuid.UUID | None = None
    #: When this session last passed an MFA challenge (for step-up); None if never.
    mfa_verified_at: datetime | None = None

    @property
    def is_customer(self) -> bool:
        return self.kind is PrincipalKind.CUSTOMER

    @property
    def is_staff(self) -> bool:
        return self.kind is PrincipalKind.STAFF

    @property
    def permissions(self) -> frozenset[Permission]:
        if not self.is_staff:
            return frozenset()
        return frozenset().union(*(ROLE_PERMISSIONS[role] for role in self.roles))

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def owns(self, customer_id: uuid.UUID) -> bool:
        """A customer owns what belongs to their customer id (which is their principal id)."""
        return self.is_customer and self.id == customer_id

    def mfa_fresh(self, now: datetime, max_age: timedelta) -> bool:
        """Whether an MFA challenge was passed recently enough for a step-up action."""
        return self.mfa_verified_at is not None and now - self.mfa_verified_at <= max_age


# -- logins and passwords --------------------------------------------------------------------------

MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 128
MAX_LOGIN_LENGTH: Final = 254
#: A few of the most used passwords that pass the length rule; a real deployment adds a breach list.
_COMMON_PASSWORDS: Final = frozenset(
    {"123456789012", "password1234", "qwertyuiopas", "111111111111", "passwordpassword", "iloveyou1234"}
)


def normalise_login(login: str) -> str:
    """The stored form of a login: e-mail lower-cased; phone digits kept with their leading ``+``;
    a mainland mobile number typed without a country code (11 digits from 1) read as ``+86``, as
    the customers domain reads it at registration.

    The customers domain validates logins fully (E.164, e-mail syntax); this only makes lookups
    agree with what it stored.
    """
    value = login.strip()
    if "@" in value:
        return value.lower()
    if value.startswith("+"):
        return "+" + "".join(ch for ch in value[1:] if ch not in " -().")
    digits = "".join(ch for ch in value if ch not in " -().")
    if len(digits) == 11 and digits.isascii() and digits.isdigit() and digits.startswith("1"):
        return "+86" + digits
    return value.lower()


def login_problems(login: str) -> list[str]:
    problems = []
    if not 3 <= len(login) <= MAX_LOGIN_LENGTH:
        problems.append(f"a login has 3 to {MAX_LOGIN_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in login):
        problems.append("a login has no spaces or control characters")
    return problems


def password_problems(password: str, login: str) -> list[str]:
    """Why a new password is refused (empty when it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"at most {MAX_PASSWORD_LENGTH} characters")
    folded = password.strip().casefold()
    if folded == login.casefold() or folded == login.split("@")[0].casefold():
        problems.append("must not be the login")
    if folded in _COMMON_PASSWORDS or len(set(password)) < 4:
        problems.append("too common or too repetitive")
    return problems


# -- lockout ----------------------------------------------------------------------------------------

LOCKOUT_THRESHOLD: Final = 5
LOCKOUT_BASE: Final = timedelta(minutes=1)
LOCKOUT_MAX: Final = timedelta(hours=1)


def lockout_for(failed_logins: int) -> timedelta | None:
    """How long an account is locked after this many consecutive failures (None: not locked).

    The fifth failure locks for one minute; each further failure doubles it, up to one hour.
    """
    if failed_logins < LOCKOUT_THRESHOLD:
        return None
    doublings = min(failed_logins - LOCKOUT_THRESHOLD, 12)
    locked: timedelta = min(LOCKOUT_BASE * (1 << doublings), LOCKOUT_MAX)
    return locked


# -- step-up ----------------------------------------------------------------------------------------

#: How recent an MFA must be for a step-up action (new payee, large payment, disabling MFA).
STEP_UP_MAX_AGE: Final = timedelta(minutes=5)


def require_step_up(principal: Principal, now: datetime, max_age: timedelta = STEP_UP_MAX_AGE) -> None:
    """Raise ``step_up_required`` (403) unless the principal's session passed MFA within ``max_age``."""
    if not principal.mfa_fresh(now, max_age):
        raise DomainError(
            IdentityErrorCode.STEP_UP_REQUIRED,
            "this action needs a fresh MFA: pass POST /v1/auth/step-up first",
            max_age_s=int(max_age.total_seconds()),
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request came from, for audit rows and rate limits."""

    ip: str | None = None
    device: str | None = None
    request_id: str | None = None
