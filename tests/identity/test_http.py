"""The identity HTTP API end to end: cookies, CSRF, tokens, sessions, MFA, step-up, rate limits.

The app runs on a frozen clock that jumps to the next full hour before each test, so rate-limit windows and
lockouts of one test never reach the next (every TestClient request comes from the same address).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from smartbank.identity.model import Permission, Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from smartbank.web.deps import money_movement_limit, require_customer, require_permission
from tests.identity.helpers import PASSWORD, audit_rows, code_now, create_principal_sync, one

LOGIN = "/v1/auth/login"


@pytest.fixture(scope="module")
def app_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="module")
def client(settings: Settings, database_url: str, app_clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, database_url=database_url, clock=app_clock)

    # Routes guarded the way other domains guard theirs.
    @app.get("/test/tellers-only")
    async def tellers_only(principal: Principal = Depends(require_permission(Permission.TELLER_CASH))) -> str:
        return str(principal.id)

    @app.post("/test/pay", dependencies=[Depends(money_movement_limit)])
    async def pay(principal: Principal = Depends(require_customer)) -> str:
        return str(principal.id)

    @app.post("/test/customers-only")
    async def customers_only(principal: Principal = Depends(require_customer)) -> str:
        return str(principal.id)

    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def fresh_window(client: TestClient, app_clock: FrozenClock) -> None:
    app_clock.set((app_clock.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
    client.cookies.clear()


@pytest.fixture
def user(database_url: str, settings: Settings, app_clock: FrozenClock) -> tuple[uuid.UUID, str]:
    return create_principal_sync(database_url, settings, app_clock)


def login(client: TestClient, login: str, mode: str = "browser", password: str = PASSWORD) -> dict[str, Any]:
    response = client.post(LOGIN, json={"login": login, "password": password, "client": mode})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_browser_login_sets_secure_httponly_samesite_cookies(client: TestClient, user: tuple[uuid.UUID, str]) -> None:
    response = client.post(LOGIN, json={"login": user[1], "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    session = [p.strip().lower() for p in cookies["sb_session"].split(";")]
    assert {"httponly", "secure", "samesite=lax", "path=/", "max-age=43200"} <= set(session)
    csrf = [p.strip().lower() for p in cookies["sb_csrf"].split(";")]
    assert {"secure", "samesite=lax", "path=/"} <= set(csrf) and "httponly" not in csrf
    body = response.json()
    assert body["status"] == "authenticated" and body["csrf_token"] == client.cookies["sb_csrf"]
    assert body["access_token"] is None and body["refresh_token"] is None
    # The cookie alone authenticates safe requests.
    assert client.get("/v1/me/mfa").json() == {"enrolled": False, "enrolment_pending": False, "recovery_codes_left": 0}


def test_cookie_post_needs_the_csrf_token_and_bearer_needs_none(
    client: TestClient, user: tuple[uuid.UUID, str], database_url: str
) -> None:
    principal_id = user[0]
    body = login(client, user[1])
    refused = client.post("/v1/me/mfa")
    assert error(refused) == (403, "csrf_failed")
    assert error(client.post("/v1/me/mfa", headers={"X-CSRF-Token": "forged"})) == (403, "csrf_failed")
    assert one(database_url, "SELECT count(*) FROM identity.totp WHERE principal_id = %s", principal_id) == 0

    accepted = client.post("/v1/me/mfa", headers={"X-CSRF-Token": body["csrf_token"]})
    assert accepted.status_code == 201
    assert accepted.json()["otpauth_uri"].startswith("otpauth://totp/smartbank:")
    assert accepted.json()["qr_svg"].startswith("<svg")
    assert one(database_url, "SELECT count(*) FROM identity.totp WHERE principal_id = %s", principal_id) == 1

    client.cookies.clear()
    tokens = login(client, user[1], "token")
    assert not client.cookies  # token clients get no cookie
    again = client.post("/v1/me/mfa", headers=bearer(tokens["access_token"]))
    assert again.status_code == 201  # no CSRF header needed with a bearer token


def test_deny_by_default_401_without_credentials_403_without_permission(
    client: TestClient, user: tuple[uuid.UUID, str], database_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    assert error(client.get("/v1/me/sessions")) == (401, "unauthenticated")
    assert error(client.get("/v1/me/sessions", headers=bearer("not-a-jwt"))) == (401, "unauthenticated")
    assert error(client.get("/test/tellers-only")) == (401, "unauthenticated")

    customer = login(client, user[1], "token")["access_token"]
    assert error(client.get("/test/tellers-only", headers=bearer(customer))) == (403, "forbidden")
    assert client.post("/test/customers-only", headers=bearer(customer)).json() == str(user[0])

    _, crm_login = create_principal_sync(
        database_url, settings, app_clock, kind=PrincipalKind.STAFF, roles=frozenset({StaffRole.CRM_AGENT})
    )
    teller_id, teller_login = create_principal_sync(
        database_url, settings, app_clock, kind=PrincipalKind.STAFF, roles=frozenset({StaffRole.TELLER})
    )
    crm = login(client, crm_login, "token")["access_token"]
    teller = login(client, teller_login, "token")["access_token"]
    assert error(client.get("/test/tellers-only", headers=bearer(crm))) == (403, "forbidden")
    assert client.get("/test/tellers-only", headers=bearer(teller)).json() == str(teller_id)
    assert error(client.post("/test/customers-only", headers=bearer(teller))) == (403, "forbidden")


def test_session_list_and_end_one(client: TestClient, user: tuple[uuid.UUID, str], database_url: str) -> None:
    browser = login(client, user[1])
    cookie_jar = dict(client.cookies)
    client.cookies.clear()
    api = login(client, user[1], "token")
    listed = client.get("/v1/me/sessions", headers=bearer(api["access_token"]))
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [(i["id"], i["kind"], i["current"]) for i in items] == [
        (api["session_id"], "token", True),
        (browser["session_id"], "browser", False),
    ]
    assert items[0]["device"] == "testclient"

    ended = client.delete(f"/v1/me/sessions/{browser['session_id']}", headers=bearer(api["access_token"]))
    assert ended.status_code == 204
    client.cookies.update(cookie_jar)
    assert error(client.get("/v1/me/sessions")) == (401, "unauthenticated")
    client.cookies.clear()
    assert [i["id"] for i in client.get("/v1/me/sessions", headers=bearer(api["access_token"])).json()["items"]] == [
        api["session_id"]
    ]

    other_id, other_login = create_principal_sync(database_url, Settings(env="test"), FrozenClock())
    other = login(client, other_login, "token")
    refused = client.delete(f"/v1/me/sessions/{other['session_id']}", headers=bearer(api["access_token"]))
    assert error(refused) == (404, "session_not_found")
    assert client.get("/v1/me/sessions", headers=bearer(other["access_token"])).status_code == 200
    assert ("identity.session_ended", "success") in [(a, o) for a, o, _ in audit_rows(database_url, user[0])]
    assert other_id != user[0]


def test_logout_ends_the_session_and_clears_cookies(client: TestClient, user: tuple[uuid.UUID, str]) -> None:
    body = login(client, user[1])
    response = client.post("/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert response.status_code == 204
    assert any(
        c.startswith('sb_session=""') or "max-age=0" in c.lower() for c in response.headers.get_list("set-cookie")
    )
    client.cookies.clear()
    tokens = login(client, user[1], "token")
    assert client.post("/v1/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    assert error(client.get("/v1/me/sessions", headers=bearer(tokens["access_token"]))) == (401, "unauthenticated")


def test_refresh_rotation_and_reuse_revokes_every_token_of_the_family(
    client: TestClient, user: tuple[uuid.UUID, str], database_url: str
) -> None:
    first = login(client, user[1], "token")
    rotated = client.post("/v1/auth/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["expires_in"] == 600
    assert client.get("/v1/me/sessions", headers=bearer(second["access_token"])).status_code == 200

    reused = client.post("/v1/auth/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert error(reused) == (401, "refresh_token_reused")
    for access in (first["access_token"], second["access_token"]):
        assert error(client.get("/v1/me/sessions", headers=bearer(access))) == (401, "unauthenticated")
    latest = client.post("/v1/auth/token/refresh", json={"refresh_token": second["refresh_token"]})
    assert error(latest) == (401, "refresh_token_invalid")
    reuse_rows = [r for r in audit_rows(database_url, user[0]) if r[0] == "identity.refresh_token_reused"]
    assert len(reuse_rows) == 1 and reuse_rows[0][1] == "denied"
    assert reuse_rows[0][2]["session_id"] == first["session_id"]


def enrol(client: TestClient, access_token: str) -> tuple[str, list[str]]:
    started = client.post("/v1/me/mfa", headers=bearer(access_token))
    assert started.status_code == 201
    secret = started.json()["secret"]
    clock: FrozenClock = client.app.state.runtime.clock  # type: ignore[attr-defined]
    confirmed = client.post("/v1/me/mfa/confirm", json={"code": code_now(secret, clock)}, headers=bearer(access_token))
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(timedelta(seconds=30))
    return secret, confirmed.json()["recovery_codes"]


def test_step_up_required_then_satisfied_over_http(
    client: TestClient, user: tuple[uuid.UUID, str], app_clock: FrozenClock
) -> None:
    secret, _ = enrol(client, login(client, user[1], "token")["access_token"])
    challenge = login(client, user[1], "token")
    assert challenge["status"] == "mfa_required" and challenge["access_token"] is None
    verified = client.post(
        "/v1/auth/mfa/verify", json={"challenge": challenge["mfa_challenge"], "code": code_now(secret, app_clock)}
    )
    assert verified.status_code == 200
    access = verified.json()["access_token"]
    assert client.post("/v1/me/mfa/recovery-codes", headers=bearer(access)).status_code == 200  # fresh MFA

    app_clock.advance(timedelta(minutes=6))
    stale = client.post("/v1/me/mfa/recovery-codes", headers=bearer(access))
    assert error(stale) == (403, "step_up_required")
    wrong = client.post("/v1/auth/step-up", json={"code": "000000"}, headers=bearer(access))
    assert error(wrong) == (401, "invalid_mfa_code")
    stepped = client.post("/v1/auth/step-up", json={"code": code_now(secret, app_clock)}, headers=bearer(access))
    assert stepped.status_code == 200
    assert stepped.json()["access_token"] and stepped.json()["expires_in"] == 600
    codes = client.post("/v1/me/mfa/recovery-codes", headers=bearer(stepped.json()["access_token"]))
    assert codes.status_code == 200 and len(codes.json()["recovery_codes"]) == 10
    assert client.post("/v1/me/mfa/disable", headers=bearer(access)).status_code == 204


def test_login_rate_limit_answers_429_with_retry_after(client: TestClient, database_url: str) -> None:
    audits = one(database_url, "SELECT count(*) FROM platform.audit_log")
    for n in range(20):
        response = client.post(LOGIN, json={"login": f"nobody-{n}@example.com", "password": "whatever-it-is"})
        assert error(response) == (401, "invalid_credentials")
    limited = client.post(LOGIN, json={"login": "nobody-x@example.com", "password": "whatever-it-is"})
    assert error(limited) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "60"
    assert limited.json()["error"]["details"] == {"scope": "auth.login", "retry_after_s": 60}
    # The refused request never reached the login use case: 20 audit rows, not 21.
    assert one(database_url, "SELECT count(*) FROM platform.audit_log") == audits + 20


def test_mfa_rate_limit_answers_429_with_retry_after(client: TestClient, app_clock: FrozenClock) -> None:
    app_clock.advance(timedelta(seconds=15))
    for _ in range(20):
        response = client.post("/v1/auth/mfa/verify", json={"challenge": "mfa_bogus", "code": "123456"})
        assert error(response) == (401, "mfa_challenge_invalid")
    limited = client.post("/v1/auth/mfa/verify", json={"challenge": "mfa_bogus", "code": "123456"})
    assert error(limited) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "45"


def test_staff_log_in_through_the_same_endpoints(
    client: TestClient, database_url: str, settings: Settings, app_clock: FrozenClock
) -> None:
    staff_id, staff_login = create_principal_sync(
        database_url, settings, app_clock, kind=PrincipalKind.STAFF, roles=frozenset({StaffRole.TELLER})
    )
    body = login(client, staff_login, "token")
    assert (body["kind"], body["principal_id"]) == ("staff", str(staff_id))


def test_password_change_checks_the_current_one_and_ends_other_sessions(
    client: TestClient, user: tuple[uuid.UUID, str], database_url: str
) -> None:
    other = login(client, user[1], "token")
    mine = login(client, user[1], "token")
    new_password = "amber-quarry-sextant-77"
    wrong = client.post(
        "/v1/me/password",
        json={"current_password": "not the password", "new_password": new_password},
        headers=bearer(mine["access_token"]),
    )
    assert error(wrong) == (401, "invalid_credentials")
    weak = client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": user[1]},
        headers=bearer(mine["access_token"]),
    )
    assert error(weak) == (422, "weak_password")
    assert client.get("/v1/me/sessions", headers=bearer(other["access_token"])).status_code == 200

    changed = client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(mine["access_token"]),
    )
    assert changed.status_code == 204
    assert error(client.get("/v1/me/sessions", headers=bearer(other["access_token"]))) == (401, "unauthenticated")
    assert client.get("/v1/me/sessions", headers=bearer(mine["access_token"])).status_code == 200
    refused = client.post(LOGIN, json={"login": user[1], "password": PASSWORD})
    assert error(refused) == (401, "invalid_credentials")
    login(client, user[1], "token", password=new_password)
    changes = [(a, o) for a, o, _ in audit_rows(database_url, user[0]) if a == "identity.password_changed"]
    assert changes == [("identity.password_changed", "failure"), ("identity.password_changed", "success")]


def test_money_movement_limit_counts_per_principal(client: TestClient, database_url: str, settings: Settings) -> None:
    clock = FrozenClock()
    _, first_login = create_principal_sync(database_url, settings, clock)
    _, second_login = create_principal_sync(database_url, settings, clock)
    first = bearer(login(client, first_login, "token")["access_token"])
    second = bearer(login(client, second_login, "token")["access_token"])
    for _ in range(30):
        assert client.post("/test/pay", headers=first).status_code == 200
    limited = client.post("/test/pay", headers=first)
    assert error(limited) == (429, "rate_limited") and limited.headers["retry-after"] == "60"
    assert client.post("/test/pay", headers=second).status_code == 200  # another customer, same address
