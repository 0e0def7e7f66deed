"""The security centre over plain HTTP: sessions (ownership, CSRF), the password, MFA enrolment,
recovery codes and turning MFA off, and the security events read from the audit log."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from smartbank.identity.credentials import totp_code, totp_step
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import PASSWORD, Bank, Customer, all_rows, onboard, open_bank, scalar
from tests.webapp.test_pages import alert_of, sign_in

NEW_PASSWORD = "amber-orchard-compass-17"


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.60") as opened:
        yield opened


@pytest.fixture(autouse=True)
def next_minute(bank: Bank) -> None:
    """Each test starts in a fresh minute of the per-IP and per-login rate limits."""
    bank.clock.advance(timedelta(seconds=61))


def active_sessions(bank: Bank, customer: Customer) -> list[str]:
    return [
        str(r[0])
        for r in all_rows(
            bank.url,
            "SELECT id FROM identity.sessions WHERE principal_id = %s AND status = 'active' ORDER BY created_at",
            customer.id,
        )
    ]


def api_session(bank: Bank, customer: Customer, password: str = PASSWORD) -> str:
    """Another session of ``customer`` (a token login, as from the mobile app); returns its id."""
    response = bank.client.post(
        "/v1/auth/login",
        json={"login": customer.login, "password": password, "client": "token"},
        headers={"User-Agent": "smartbank-android/3.1 (Android 14)"},
    )
    assert response.status_code == 200, response.text
    return str(active_sessions(bank, customer)[-1])


def code(bank: Bank, secret: str) -> str:
    """The TOTP code of the next 30-second step (each code is accepted once)."""
    bank.clock.advance(timedelta(seconds=30))
    return totp_code(secret, totp_step(bank.clock.now()))


def test_the_centre_lists_sessions_marks_this_one_and_shows_events(bank: Bank) -> None:
    customer = onboard(bank)
    failed = bank.client.post("/v1/auth/login", json={"login": customer.login, "password": "not-the-password-1"})
    assert failed.status_code == 401
    other = api_session(bank, customer)
    sign_in(bank, customer)
    page = bank.client.get("/app/security")
    assert page.status_code == 200
    this = bank.run(lambda: bank.runtime.identity.authenticate_session(bank.client.cookies["sb_session"]))
    assert this is not None
    rows = dict(re.findall(r'data-session="([0-9a-f-]+)">(.*?)</li>', page.text, re.S))
    assert set(rows) == {other, str(this[0].session_id)}
    assert "This device" in rows[str(this[0].session_id)] and "This device" not in rows[other]
    assert "203.0.113.60" in rows[other]
    events = re.findall(r'<span class="name">(.*?)</span>', page.text.split('id="events-h"')[1], re.S)
    sentences = [re.sub(r"<[^>]+>", "", e).strip() for e in events]
    assert sentences[:3] == ["Signed in", "Signed in", "Refused Wrong password"]


def test_ending_a_session_of_ones_own_works_and_anothers_fails(bank: Bank) -> None:
    alice, bob = onboard(bank), onboard(bank)
    bobs = api_session(bank, bob)
    alices_other = api_session(bank, alice)
    csrf = sign_in(bank, alice)
    refused = bank.client.post(f"/app/security/sessions/{bobs}/end", data={"csrf_token": csrf})
    assert refused.status_code == 404
    assert alert_of(refused.text) == "That session has already ended."
    assert bobs in active_sessions(bank, bob)
    forged = bank.client.post(f"/app/security/sessions/{alices_other}/end", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and alices_other in active_sessions(bank, alice)
    ended = bank.client.post(
        f"/app/security/sessions/{alices_other}/end", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert ended.status_code == 303 and ended.headers["location"] == "/app/security"
    assert alices_other not in active_sessions(bank, alice)
    assert "A session was ended" in bank.client.get("/app/security").text


def test_changing_the_password_checks_the_current_one_and_ends_other_sessions(bank: Bank) -> None:
    customer = onboard(bank)
    other = api_session(bank, customer)
    csrf = sign_in(bank, customer)
    form = {"csrf_token": csrf, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
    wrong = bank.client.post("/app/security/password", data={**form, "current_password": "not-my-password-9"})
    assert wrong.status_code == 401 and alert_of(wrong.text) == "The current password is wrong."
    forged = bank.client.post(
        "/app/security/password", data={**form, "current_password": PASSWORD, "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    assert other in active_sessions(bank, customer)
    done = bank.client.post(
        "/app/security/password", data={**form, "current_password": PASSWORD}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/app/security?changed=1"
    assert other not in active_sessions(bank, customer)
    page = bank.client.get(done.headers["location"])
    assert "Your password is changed." in page.text and "Password changed" in page.text
    assert "Wrong current password when changing the password" in page.text


def test_mfa_enrolment_recovery_codes_and_turning_it_off(bank: Bank) -> None:
    customer = onboard(bank)
    csrf = sign_in(bank, customer)
    assert "Off." in bank.client.get("/app/security/mfa").text
    forged = bank.client.post("/app/security/mfa/start", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert all_rows(bank.url, "SELECT 1 FROM identity.totp WHERE principal_id = %s", customer.id) == []
    started = bank.client.post("/app/security/mfa/start", data={"csrf_token": csrf})
    assert started.status_code == 200
    assert "<svg" in started.text and "<script" not in started.text
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', started.text)
    assert secret is not None
    wrong = bank.client.post(
        "/app/security/mfa/confirm", data={"csrf_token": csrf, "code": "000000", **{"secret": secret[1]}}
    )
    assert wrong.status_code == 401
    assert scalar(bank.url, "SELECT confirmed_at IS NULL FROM identity.totp WHERE principal_id = %s", customer.id)
    confirmed = bank.client.post(
        "/app/security/mfa/confirm", data={"csrf_token": csrf, "code": code(bank, secret[1]), "secret": secret[1]}
    )
    assert confirmed.status_code == 200
    first_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", confirmed.text)
    assert len(first_codes) == 10
    assert "On. Recovery codes left: 10." in bank.client.get("/app/security/mfa").text

    refused = bank.client.post("/app/security/mfa/recovery-codes", data={"csrf_token": csrf, "code": "000000"})
    assert refused.status_code == 401
    new = bank.client.post("/app/security/mfa/recovery-codes", data={"csrf_token": csrf, "code": code(bank, secret[1])})
    assert new.status_code == 200
    new_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", new.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(first_codes)

    kept = bank.client.post("/app/security/mfa/disable", data={"csrf_token": csrf, "code": "000000"})
    assert kept.status_code == 401
    assert scalar(bank.url, "SELECT count(*) FROM identity.totp WHERE principal_id = %s", customer.id) == 1
    off = bank.client.post(
        "/app/security/mfa/disable", data={"csrf_token": csrf, "code": code(bank, secret[1])}, follow_redirects=False
    )
    assert off.status_code == 303
    assert scalar(bank.url, "SELECT count(*) FROM identity.totp WHERE principal_id = %s", customer.id) == 0
    events = bank.client.get("/app/security").text
    for sentence in (
        "Two-step verification turned on",
        "New recovery codes made",
        "Two-step verification turned off",
        "Wrong code for a sensitive action",
    ):
        assert sentence in events


def test_security_events_are_paged(bank: Bank) -> None:
    customer = onboard(bank)
    for _ in range(12):
        bank.clock.advance(timedelta(seconds=7))  # 12 logins over more than a minute: under the limits
        api_session(bank, customer)
    sign_in(bank, customer)
    first = bank.client.get("/app/security")
    older = re.search(r'href="/app/security\?before=(\d+)"', first.text)
    assert older is not None
    second = bank.client.get(f"/app/security?before={older[1]}")
    assert second.status_code == 200
    newest = 'href="/app/security?"'
    assert newest in second.text and newest not in first.text
    seqs = [
        int(r[0])
        for r in all_rows(
            bank.url,
            "SELECT seq FROM platform.audit_log WHERE actor_id = %s OR subject_id = %s ORDER BY seq DESC",
            customer.id,
            str(customer.id),
        )
    ]
    assert int(older[1]) == seqs[9]  # the page shows ten events; the next page starts below the tenth


def test_the_centre_needs_a_customer_session(bank: Bank) -> None:
    bank.client.cookies.clear()
    for path in ("/app/security", "/app/security/mfa"):
        response = bank.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/app/login?next=")
    posted = bank.client.post("/app/security/mfa/start", data={"csrf_token": "x"}, follow_redirects=False)
    assert posted.status_code == 303
