"""Sign-up, the KYC form and a forgotten password over plain HTTP: CSRF, wrong codes, enumeration
safety and rate limits. Codes are read from the outbox, where the notifier puts them."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

from smartbank.platform.settings import Settings
from tests.banking.http_helpers import PASSWORD, Bank, all_rows, onboard, open_bank, scalar
from tests.customers.helpers import make_ric
from tests.webapp.test_pages import alert_of, csrf_of, sign_in

NEW_PASSWORD = "amber-orchard-compass-17"


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.50") as opened:
        yield opened


def phone() -> tuple[str, str]:
    """A mainland mobile number: (as typed, E.164)."""
    national = "139" + f"{secrets.randbelow(10**8):08d}"
    return national, "+86" + national


def last_code(bank: Bank, recipient: str) -> str:
    return str(
        scalar(
            bank.url,
            "SELECT payload->'params'->>'code' FROM platform.outbox WHERE topic = 'notifications.requested'"
            " AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
            recipient,
        )
    )


def sent_to(bank: Bank, recipient: str) -> int:
    return int(
        scalar(
            bank.url,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'notifications.requested'"
            " AND payload->>'recipient' = %s",
            recipient,
        )
    )


def hidden(html: str) -> dict[str, str]:
    return dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', html))


def start_signup(bank: Bank, contact: str, *, password: str = PASSWORD, **extra: str) -> Any:
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/signup").text)
    data = {
        "csrf_token": token,
        "kind": "phone",
        "contact": contact,
        "password": password,
        "password_again": password,
        "accepted_terms": "yes",
        **extra,
    }
    return bank.client.post("/app/signup", data=data)


# -- sign up -------------------------------------------------------------------------------------


def test_sign_up_verifies_the_code_signs_in_and_invites_mfa_and_kyc(bank: Bank) -> None:
    typed, e164 = phone()
    login_page = bank.client.get("/app/login").text
    assert 'href="/app/signup"' in login_page and 'href="/app/password/forgot"' in login_page
    page = start_signup(bank, typed)
    assert page.status_code == 200, page.text
    assert e164[:6] + "****" + e164[-4:] in page.text
    assert PASSWORD not in page.text  # the password waits, sealed, in an HttpOnly cookie
    cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("sb_signup="))
    assert "HttpOnly" in cookie and "Path=/app/signup" in cookie and PASSWORD not in cookie
    fields = hidden(page.text)
    done = bank.client.post(
        "/app/signup/verify", data={**fields, "code": last_code(bank, e164)}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/app/welcome"
    customer_id = scalar(bank.url, "SELECT id FROM customers.customers WHERE phone = %s", e164)
    assert scalar(bank.url, "SELECT login FROM identity.principals WHERE id = %s", customer_id) == e164
    welcome = bank.client.get("/app/welcome")
    assert welcome.status_code == 200
    assert 'href="/app/security/mfa"' in welcome.text and 'href="/app/profile/kyc"' in welcome.text
    assert "Not submitted yet" in welcome.text
    home = bank.client.get("/app/")
    assert "Identity check:" in home.text and "Not submitted yet" in home.text


def test_a_wrong_code_is_refused_and_counted(bank: Bank) -> None:
    typed, e164 = phone()
    fields = hidden(start_signup(bank, typed).text)
    code = last_code(bank, e164)
    wrong = "000000" if code != "000000" else "111111"
    refused = bank.client.post("/app/signup/verify", data={**fields, "code": wrong}, follow_redirects=False)
    assert refused.status_code == 422
    assert alert_of(refused.text) == "That code is not right. Check the message and try again."
    assert (
        scalar(bank.url, "SELECT attempts FROM customers.verifications WHERE id = %s", fields["verification_id"]) == 1
    )
    assert all_rows(bank.url, "SELECT id FROM customers.customers WHERE phone = %s", e164) == []
    # The right code still works afterwards.
    done = bank.client.post("/app/signup/verify", data={**fields, "code": code}, follow_redirects=False)
    assert done.status_code == 303


def test_sign_up_refuses_a_weak_password_terms_not_accepted_and_a_forged_form_before_sending(bank: Bank) -> None:
    typed, e164 = phone()
    weak = start_signup(bank, typed, password="password1234")
    assert weak.status_code == 422
    assert alert_of(weak.text).startswith("Choose a password of 12 to 128 characters")
    no_terms = start_signup(bank, typed, accepted_terms="")
    assert no_terms.status_code == 422 and alert_of(no_terms.text) == "Accept the terms to open an account."
    differ = start_signup(bank, typed, password_again="something-else-entirely")
    assert differ.status_code == 422 and alert_of(differ.text) == "The two passwords are not the same."
    forged = start_signup(bank, typed, csrf_token="forged")
    assert forged.status_code == 403
    assert sent_to(bank, e164) == 0
    assert all_rows(bank.url, "SELECT id FROM customers.verifications WHERE address = %s", e164) == []


def test_the_code_page_needs_the_sign_up_cookie(bank: Bank) -> None:
    typed, e164 = phone()
    fields = hidden(start_signup(bank, typed).text)
    bank.client.cookies.delete("sb_signup", path="/app/signup")
    expired = bank.client.post("/app/signup/verify", data={**fields, "code": last_code(bank, e164)})
    assert expired.status_code == 410
    assert alert_of(expired.text) == "This sign-up has expired. Please start again."
    assert all_rows(bank.url, "SELECT id FROM customers.customers WHERE phone = %s", e164) == []


# -- KYC -----------------------------------------------------------------------------------------


def kyc_form(csrf: str, **overrides: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "legal_name": "李娜",
        "date_of_birth": "1991-04-03",
        "id_type": "prc_resident_id",
        "id_number": make_ric(date(1991, 4, 3)),
        "country": "CN",
        "region": "北京市",
        "city": "北京市",
        "line1": "东城区 东长安街 1 号",
        "line2": "",
        "postal_code": "100006",
        **overrides,
    }


def test_kyc_form_submits_the_profile_for_review(bank: Bank) -> None:
    typed, e164 = phone()
    fields = hidden(start_signup(bank, typed).text)
    bank.client.post("/app/signup/verify", data={**fields, "code": last_code(bank, e164)})
    customer_id = scalar(bank.url, "SELECT id FROM customers.customers WHERE phone = %s", e164)
    page = bank.client.get("/app/profile/kyc")
    assert page.status_code == 200 and 'name="id_number"' in page.text
    csrf = csrf_of(page.text)
    forged = bank.client.post("/app/profile/kyc", data=kyc_form("forged"))
    assert forged.status_code == 403
    bad = bank.client.post("/app/profile/kyc", data=kyc_form(csrf, id_number="110101199104030021"))
    assert bad.status_code == 422
    assert alert_of(bad.text) == "That ID number is not valid. Check it and try again."
    assert scalar(bank.url, "SELECT kyc_status FROM customers.customers WHERE id = %s", customer_id) == "not_submitted"
    sent = bank.client.post("/app/profile/kyc", data=kyc_form(csrf), follow_redirects=False)
    assert sent.status_code == 303, sent.text
    assert scalar(bank.url, "SELECT kyc_status FROM customers.customers WHERE id = %s", customer_id) == "pending"
    assert "Being checked" in bank.client.get("/app/").text


def test_the_kyc_form_needs_a_signed_in_customer(bank: Bank) -> None:
    bank.client.cookies.clear()
    response = bank.client.get("/app/profile/kyc", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/app/login?next=%2Fapp%2Fprofile%2Fkyc"


# -- a forgotten password ------------------------------------------------------------------------


def forgot(bank: Bank, contact: str, kind: str = "email") -> Any:
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/password/forgot").text)
    return bank.client.post("/app/password/forgot", data={"csrf_token": token, "kind": kind, "contact": contact})


def test_forgotten_password_answers_the_same_for_an_unknown_address(bank: Bank) -> None:
    customer = onboard(bank)
    unknown = f"nobody-{secrets.token_hex(6)}@example.com"
    known_page, unknown_page = forgot(bank, customer.login), forgot(bank, unknown)
    assert known_page.status_code == unknown_page.status_code == 200

    def scrub(html: str, address: str) -> str:
        local, _, domain = address.partition("@")
        html = html.replace(f"{local[0]}***@{domain}", "MASKED")
        return re.sub(r'name="(verification_id|csrf_token)" value="[^"]*"', "", html)

    assert scrub(known_page.text, customer.login) == scrub(unknown_page.text, unknown)
    assert sent_to(bank, unknown) == 0
    wrong = bank.client.post(
        "/app/password/reset",
        data={**hidden(unknown_page.text), "code": "123456", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert wrong.status_code == 422
    assert alert_of(wrong.text) == "That code is not right. Check the message and try again."


def test_forgotten_password_sets_a_new_one_and_ends_every_session(bank: Bank) -> None:
    customer = onboard(bank)
    sign_in(bank, customer)
    old_session = bank.client.cookies.get("sb_session")
    page = forgot(bank, customer.login)
    fields = hidden(page.text)
    form = {**fields, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    forged = bank.client.post("/app/password/reset", data={**form, "csrf_token": "forged", "code": "000000"})
    assert forged.status_code == 403
    assert (
        scalar(bank.url, "SELECT attempts FROM customers.verifications WHERE id = %s", fields["verification_id"]) == 0
    )
    done = bank.client.post(
        "/app/password/reset", data={**form, "code": last_code(bank, customer.login)}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/app/password/done"
    assert "Your new password is set" in bank.client.get("/app/password/done").text
    assert all_rows(
        bank.url, "SELECT count(*) FROM identity.sessions WHERE principal_id = %s AND status = 'active'", customer.id
    ) == [(0,)]
    bank.client.cookies.set("sb_session", str(old_session), path="/")
    assert bank.client.get("/app/", follow_redirects=False).status_code == 303  # the old session is gone
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    login = bank.client.post(
        "/app/login",
        data={"csrf_token": token, "login": customer.login, "password": NEW_PASSWORD, "next": "/app/"},
        follow_redirects=False,
    )
    assert login.status_code == 303 and login.headers["location"] == "/app/"


def test_password_reset_api_is_enumeration_safe(bank: Bank) -> None:
    customer = onboard(bank)
    unknown = f"nobody-{secrets.token_hex(6)}@example.com"
    known = bank.client.post("/v1/password-resets", json={"kind": "email", "contact": customer.login})
    other = bank.client.post("/v1/password-resets", json={"kind": "email", "contact": unknown})
    assert known.status_code == other.status_code == 202
    assert sorted(known.json()) == sorted(other.json())
    assert known.json()["expires_at"] == other.json()["expires_at"]
    assert sent_to(bank, unknown) == 0
    vid = known.json()["verification_id"]
    wrong = bank.client.post(
        f"/v1/password-resets/{vid}/complete", json={"code": "000000", "new_password": NEW_PASSWORD}
    )
    right = last_code(bank, customer.login)
    if right == "000000":  # one chance in a million
        return
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "verification_code_invalid"
    done = bank.client.post(f"/v1/password-resets/{vid}/complete", json={"code": right, "new_password": NEW_PASSWORD})
    assert done.status_code == 200 and done.json() == {"status": "password_changed", "next_step": "/v1/auth/login"}
    login = bank.client.post("/v1/auth/login", json={"login": customer.login, "password": NEW_PASSWORD})
    assert login.status_code == 200


def test_forgotten_password_is_rate_limited_per_address_and_per_ip(bank: Bank, settings: Settings) -> None:
    """Per address: five codes an hour (the same for an unknown address). Per IP: ten starts an hour,
    shared by the page and the API."""
    with open_bank(bank.url, settings, client_ip="203.0.113.51") as other:
        target = f"target-{secrets.token_hex(6)}@example.com"
        statuses = [forgot(other, target).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert alert_of(forgot(other, target).text).startswith("We have sent several codes already")
        for n in range(3):  # the IP's 8th, 9th and 10th starts
            assert forgot(other, f"more-{n}-{secrets.token_hex(4)}@example.com").status_code == 200
        limited = forgot(other, f"fresh-{secrets.token_hex(4)}@example.com")
        assert limited.status_code == 429
        assert alert_of(limited.text) == "Too many requests. Wait a minute and try again."
        api = other.client.post("/v1/password-resets", json={"kind": "email", "contact": "x-" + target})
        assert api.status_code == 429 and api.json()["error"]["code"] == "rate_limited"
