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


def test_password_policy() -> None:
    from smartbank.identity.model import password_problems

    assert password_problems("violet-harbour-lantern-42", "li@example.com") == []
    assert password_problems("short", "li@example.com") == ["at least 12 characters"]
    assert password_problems("x" * 129 + "abcd", "li@example.com") == ["at most 128 characters"]
    assert password_problems("Li.Wei@Example.com", "li.wei@example.com") == ["must not be the login"]
    assert password_problems("li.wei.longname", "li.wei.longname@example.com") == ["must not be the login"]
    assert password_problems("abababababababab", "li@example.com") == ["too common or too repetitive"]


def test_lockout_backoff_doubles_from_the_fifth_failure_up_to_an_hour() -> None:
    from smartbank.identity.model import lockout_for

    assert [lockout_for(n) for n in range(5)] == [None] * 5
    assert [lockout_for(n) for n in (5, 6, 7, 8)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert lockout_for(11) == timedelta(hours=1)
    assert lockout_for(1000) == timedelta(hours=1)


def test_login_normalisation() -> None:
    from smartbank.identity.model import normalise_login

    assert normalise_login("  Li.Wei@Example.COM ") == "li.wei@example.com"
    assert normalise_login("+86 138-0013 8000") == "+8613800138000"
    # A mainland mobile number typed as at registration, without the country code.
    assert normalise_login("138 0013 8000") == normalise_login("13800138000") == "+8613800138000"
    assert normalise_login("0138001380") == "0138001380"  # anything else is left as typed
    assert normalise_login("Teller1") == "teller1"


def test_require_step_up_raises_a_403_code_unless_mfa_is_fresh() -> None:
    import pytest

    from smartbank.identity.model import require_step_up
    from smartbank.kernel.errors import DomainError

    stale = Principal(uuid.uuid4(), PrincipalKind.CUSTOMER, mfa_verified_at=NOW - timedelta(minutes=6))
    with pytest.raises(DomainError) as caught:
        require_step_up(stale, NOW)
    assert (caught.value.code, caught.value.http_status) == ("step_up_required", 403)
    with pytest.raises(DomainError):
        require_step_up(Principal(uuid.uuid4(), PrincipalKind.CUSTOMER), NOW)
    require_step_up(stale, NOW, timedelta(minutes=10))  # fresh enough for a longer window: no error
