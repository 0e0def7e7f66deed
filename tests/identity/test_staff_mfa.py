"""With ``staff_mfa_required``, staff routes need a session that passed MFA; enrolment stays reachable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from smartbank.identity.model import Permission, Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from smartbank.web.deps import require_permission
from tests.identity.helpers import PASSWORD, code_now, create_principal_sync


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="module")
def client(database_url: str, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(Settings(env="test", staff_mfa_required=True), database_url=database_url, clock=clock)

    @app.get("/test/audit-readers")
    async def audit_readers(principal: Principal = Depends(require_permission(Permission.AUDIT_READ))) -> str:
        return str(principal.id)

    with TestClient(app, base_url="https://testserver", client=("198.51.100.23", 40000)) as test_client:
        yield test_client


def test_staff_without_mfa_are_refused_until_they_enrol_and_pass_it(
    client: TestClient, database_url: str, settings: Settings, clock: FrozenClock
) -> None:
    staff_id, staff_login = create_principal_sync(
        database_url, settings, clock, kind=PrincipalKind.STAFF, roles=frozenset({StaffRole.RISK_ANALYST})
    )
    request_id = "req-staff-login-1"
    first = client.post(
        "/v1/auth/login",
        json={"login": staff_login, "password": PASSWORD, "client": "token"},
        headers={"X-Request-ID": request_id},
    ).json()
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT host(ip), device, request_id FROM platform.audit_log"
            " WHERE actor_id = %s AND action = 'identity.login'",
            (staff_id,),
        ).fetchall()
    assert audited == [("198.51.100.23", "testclient", request_id)]
    token = {"Authorization": f"Bearer {first['access_token']}"}
    refused = client.get("/test/audit-readers", headers=token)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "mfa_required")

    secret = client.post("/v1/me/mfa", headers=token).json()["secret"]
    assert client.post("/v1/me/mfa/confirm", json={"code": code_now(secret, clock)}, headers=token).status_code == 200
    # Confirming counts as passing MFA for this session.
    assert client.get("/test/audit-readers", headers=token).json() == str(staff_id)

    clock.advance(timedelta(seconds=30))
    challenge = client.post("/v1/auth/login", json={"login": staff_login, "password": PASSWORD, "client": "token"})
    assert challenge.json()["status"] == "mfa_required"
    verified = client.post(
        "/v1/auth/mfa/verify", json={"challenge": challenge.json()["mfa_challenge"], "code": code_now(secret, clock)}
    ).json()
    fresh = {"Authorization": f"Bearer {verified['access_token']}"}
    assert client.get("/test/audit-readers", headers=fresh).json() == str(staff_id)
