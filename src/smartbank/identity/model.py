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
