"""The open-banking pages over plain HTTP: the developer portal of the staff console (who may use it,
registering sandbox and production apps) and the consent screen in Chinese."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest
from joserfc.jwk import ECKey

from smartbank.identity.model import StaffRole
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, all_rows, onboard, scalar
from tests.webapp.test_pages import sign_in as customer_sign_in
from tests.webapp.test_staff_pages import new_staff, staff_sign_in

from .helpers import Partner, consent_page, csrf_of, customer_with_mfa, open_bank, sign_in, verifier_and_challenge


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.73") as opened:
        yield opened


def test_an_administrator_registers_sandbox_and_production_apps_in_the_developer_portal(bank: Bank) -> None:
    csrf = staff_sign_in(bank, new_staff(bank, StaffRole.ADMIN))
    page = bank.client.get("/staff/developer")
    assert page.status_code == 200
    assert "<h1>Partner apps</h1>" in page.text
    sandbox = bank.client.post(
        "/staff/developer",
        data={
            "csrf_token": csrf,
            "name": "Sandbox Saver",
            "redirect_uris": "http://localhost:3000/cb\r\nhttps://saver.example/cb",
            "environment": "sandbox",
            "auth_method": "client_secret_basic",
        },
    )
    assert sandbox.status_code == 201, sandbox.text
    client_id = re.search(r'id="new-client-id">([^<]+)<', sandbox.text)
    secret = re.search(r'id="new-client-secret">([^<]+)<', sandbox.text)
    assert client_id is not None and secret is not None
    assert scalar(bank.url, "SELECT environment FROM openbanking.clients WHERE client_id = %s", client_id.group(1)) == (
        "sandbox"
    )
    key = ECKey.generate_key("P-256")
    production = bank.client.post(
        "/staff/developer",
        data={
            "csrf_token": csrf,
            "name": "Prod Planner",
            "redirect_uris": "https://planner.example/cb",
            "environment": "production",
            "auth_method": "private_key_jwt",
            "jwks": json.dumps({"keys": [key.as_dict(private=False)]}),
        },
    )
    assert production.status_code == 201, production.text
    assert 'id="new-client-secret"' not in production.text
    rows = all_rows(
        bank.url, "SELECT name, environment, auth_method FROM openbanking.clients WHERE name = 'Prod Planner'"
    )
    assert rows == [("Prod Planner", "production", "private_key_jwt")]
    # A production app with a client secret is refused, and nothing is written.
    refused = bank.client.post(
        "/staff/developer",
        data={
            "csrf_token": csrf,
            "name": "Bad",
            "redirect_uris": "https://bad.example/cb",
            "environment": "production",
            "auth_method": "client_secret_post",
        },
    )
    assert refused.status_code == 422
    assert "private_key_jwt" in refused.text
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.clients WHERE name = 'Bad'") == 0
    listing = bank.client.get("/staff/developer").text
    assert "Sandbox Saver" in listing and "Prod Planner" in listing
    # Without the session's CSRF token nothing is registered.
    forged = bank.client.post(
        "/staff/developer", data={"csrf_token": "x", "name": "Forged", "redirect_uris": "https://f.example/cb"}
    )
    assert forged.status_code == 403
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.clients WHERE name = 'Forged'") == 0


def test_the_developer_portal_is_for_administrators_only(bank: Bank) -> None:
    bank.client.cookies.clear()
    anonymous = bank.client.get("/staff/developer", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/staff/login")
    csrf = staff_sign_in(bank, new_staff(bank, StaffRole.TELLER))
    assert bank.client.get("/staff/developer").status_code == 403
    posted = bank.client.post(
        "/staff/developer", data={"csrf_token": csrf, "name": "Teller app", "redirect_uris": "https://t.example/cb"}
    )
    assert posted.status_code == 403
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.clients WHERE name = 'Teller app'") == 0
    customer_sign_in(bank, onboard(bank))
    assert bank.client.get("/staff/developer").status_code == 403


def test_the_consent_screen_speaks_chinese(bank: Bank) -> None:
    partner = Partner.register(bank)
    consent = partner.create_consent(partner.client_credentials_token())
    _, challenge = verifier_and_challenge()
    pushed = partner.push(consent["Data"]["ConsentId"], challenge)
    who = customer_with_mfa(bank)
    path = consent_page(bank, partner, pushed.json()["request_uri"])
    sign_in(bank, who, "/app/")
    page = bank.client.get(path, headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200
    assert "与 Budget Buddy 共享您的信息？" in page.text
    assert "查看您的余额" in page.text
    assert csrf_of(page.text)
