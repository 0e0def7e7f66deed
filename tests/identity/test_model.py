from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from smartbank.identity.model import Permission, Principal, PrincipalKind, StaffRole

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_customer_owns_only_their_own_id_and_has_no_permissions() -> None:
    me = uuid.uuid4()
    customer = Principal(me, PrincipalKind.CUSTOMER, roles=frozenset({StaffRole.ADMIN}))
    assert customer.owns(me)
    assert not customer.owns(uuid.uuid4())
    assert customer.permissions == frozenset()  # roles on a customer grant nothing
    assert not customer.can(Permission.CUSTOMERS_READ)


def test_staff_permissions_are_the_union_of_their_roles() -> None:
    staff = Principal(uuid.uuid4(), PrincipalKind.STAFF, roles=frozenset({StaffRole.TELLER, StaffRole.CRM_AGENT}))
    assert staff.can(Permission.TELLER_CASH)
    assert staff.can(Permission.KYC_DECIDE)
    assert not staff.can(Permission.STAFF_MANAGE)
    assert not staff.owns(staff.id)  # staff reach customer data through permissions, never ownership


def test_admin_has_every_permission_and_no_role_means_none() -> None:
    admin = Principal(uuid.uuid4(), PrincipalKind.STAFF, roles=frozenset({StaffRole.ADMIN}))
    assert admin.permissions == frozenset(Permission)
    assert Principal(uuid.uuid4(), PrincipalKind.STAFF).permissions == frozenset()


def test_mfa_freshness_for_step_up() -> None:
    fresh = Principal(uuid.uuid4(), PrincipalKind.CUSTOMER, mfa_verified_at=NOW - timedelta(minutes=4))
    assert fresh.mfa_fresh(NOW, timedelta(minutes=5))
    assert not fresh.mfa_fresh(NOW, timedelta(minutes=3))
    assert not Principal(uuid.uuid4(), PrincipalKind.CUSTOMER).mfa_fresh(NOW, timedelta(hours=1))
