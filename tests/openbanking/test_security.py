"""Negative security tests of the authorization server, each named after what it proves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, all_rows, scalar

from .helpers import (
    AISP,
    REDIRECT_URI,
    MfaCustomer,
    Partner,
    consent_page,
    customer_with_mfa,
    decide,
    grant,
    open_bank,
    query_of,
    sign_in,
    verifier_and_challenge,
)


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.71") as opened:
        yield opened


@pytest.fixture(scope="module")
def who(bank: Bank) -> MfaCustomer:
    return customer_with_mfa(bank)


def new_consent(partner: Partner) -> str:
    return str(partner.create_consent(partner.client_credentials_token())["Data"]["ConsentId"])


def approved_code(bank: Bank, who: MfaCustomer, partner: Partner, challenge: str) -> str:
    consent_id = new_consent(partner)
    pushed = partner.push(consent_id, challenge)
    assert pushed.status_code == 201, pushed.text
    sign_in(bank, who, "/app/")
    answer = decide(bank, who, consent_page(bank, partner, pushed.json()["request_uri"]))
    assert answer.status_code == 303, answer.text
    return query_of(answer.headers["location"])["code"]


def oauth_error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_missing_pkce_challenge_is_refused(bank: Bank) -> None:
    partner = Partner.register(bank)
    response = partner.push(new_consent(partner), "", code_challenge=None, code_challenge_method=None)  # type: ignore[arg-type]
    assert oauth_error(response) == (400, "invalid_request")
    assert "PKCE" in response.json()["error_description"]
    assert (
        scalar(
            bank.url, "SELECT count(*) FROM openbanking.authorization_requests WHERE client_id = %s", partner.client_id
        )
        == 0
    )


def test_plain_pkce_is_refused(bank: Bank) -> None:
    partner = Partner.register(bank)
    verifier, _ = verifier_and_challenge()
    response = partner.push(new_consent(partner), verifier[:43], code_challenge_method="plain")
    assert oauth_error(response) == (400, "invalid_request")
    assert "S256" in response.json()["error_description"]
    # On the front channel too: the error goes back to the registered redirect URI with iss.
    front = bank.client.get(
        "/oauth2/authorize",
        params={
            "client_id": partner.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid accounts",
            "state": "s1",
            "code_challenge": verifier[:43],
            "code_challenge_method": "plain",
            "openbanking_intent_id": new_consent(partner),
        },
        follow_redirects=False,
    )
    assert front.status_code == 303
    back = query_of(front.headers["location"])
    assert (back["error"], back["state"], back["iss"]) == ("invalid_request", "s1", bank.runtime.settings.issuer)


def test_wrong_verifier_is_refused(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    _, challenge = verifier_and_challenge()
    code = approved_code(bank, who, partner, challenge)
    other_verifier, _ = verifier_and_challenge()
    response = partner.exchange(code, other_verifier)
    assert oauth_error(response) == (400, "invalid_grant")
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM openbanking.tokens WHERE client_id = %s AND kind = 'refresh'",
            partner.client_id,
        )
        == 0
    )


def test_redirect_uri_mismatch_is_refused(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    verifier, challenge = verifier_and_challenge()
    # At the authorization request: never redirected to an unregistered URI, not even a prefix match.
    for uri in ("https://partner.example/callback/evil", "https://evil.example/callback", REDIRECT_URI + "?x=1"):
        pushed = partner.push(new_consent(partner), challenge, redirect_uri=uri)
        assert oauth_error(pushed) == (400, "invalid_request")
        front = bank.client.get(
            "/oauth2/authorize",
            params={"client_id": partner.client_id, "redirect_uri": uri, "response_type": "code"},
            follow_redirects=False,
        )
        assert front.status_code == 400
        assert "location" not in front.headers
    # At the token endpoint: the redirect URI must be the one of the request.
    code = approved_code(bank, who, partner, challenge)
    assert oauth_error(partner.exchange(code, verifier, redirect_uri="https://partner.example/other")) == (
        400,
        "invalid_grant",
    )


def test_registration_refuses_non_https_redirect_uris_except_loopback(bank: Bank) -> None:
    for uri, status in (
        ("http://partner.example/cb", 400),
        ("https://partner.example/cb#frag", 400),
        ("http://localhost:8080/cb", 201),
        ("http://127.0.0.1/cb", 201),
    ):
        response = bank.client.post(
            "/oauth2/register",
            json={"client_name": "x", "redirect_uris": [uri], "token_endpoint_auth_method": "client_secret_basic"},
        )
        assert response.status_code == status, (uri, response.text)
        if status == 400:
            assert response.json()["error"] == "invalid_redirect_uri"


def test_replayed_code_is_refused_and_revokes_its_tokens(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    verifier, challenge = verifier_and_challenge()
    code = approved_code(bank, who, partner, challenge)
    first = partner.exchange(code, verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    replay = partner.exchange(code, verifier)
    assert oauth_error(replay) == (400, "invalid_grant")
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert partner.post("/oauth2/introspect", {"token": token}).json() == {"active": False}
    assert all_rows(
        bank.url,
        "SELECT outcome, details->>'tokens_revoked' FROM platform.audit_log WHERE action = 'openbanking.code_replayed'"
        " AND details->>'client_id' = %s",
        partner.client_id,
    ) == [("denied", "2")]


def test_expired_code_is_refused(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    verifier, challenge = verifier_and_challenge()
    code = approved_code(bank, who, partner, challenge)
    bank.clock.advance(timedelta(seconds=61))  # a code lives 60 s
    assert oauth_error(partner.exchange(code, verifier)) == (400, "invalid_grant")
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM openbanking.tokens WHERE client_id = %s AND kind = 'access'"
            " AND grant_type = 'authorization_code'",
            partner.client_id,
        )
        == 0
    )


def test_non_par_request_from_a_production_client_is_refused(bank: Bank) -> None:
    from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
    from smartbank.kernel.ids import new_id

    admin = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    sandbox = Partner.register(bank)
    rt = bank.runtime
    registration = bank.run(
        lambda: rt.openbanking.register_client(
            {"client_name": "Prod", "redirect_uris": [REDIRECT_URI], "jwks": sandbox.registration["jwks"]},
            ClientInfo(),
            environment=__import__("smartbank.openbanking.model", fromlist=["Environment"]).Environment.PRODUCTION,
            registered_by=admin,
        )
    )
    production = Partner(bank, sandbox.key, sandbox.algorithm, registration.client.client_id)
    consent_id = new_consent(production)
    _, challenge = verifier_and_challenge()
    front = bank.client.get(
        "/oauth2/authorize",
        params={
            "client_id": production.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid accounts",
            "state": "p1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "openbanking_intent_id": consent_id,
        },
        follow_redirects=False,
    )
    assert front.status_code == 303
    back = query_of(front.headers["location"])
    assert back["error"] == "invalid_request"
    assert "PAR" in back["error_description"]
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM openbanking.authorization_requests WHERE client_id = %s",
            production.client_id,
        )
        == 0
    )
    # The same request pushed first is accepted.
    pushed = production.push(consent_id, challenge)
    assert pushed.status_code == 201, pushed.text
    # A production app cannot be registered through the open endpoint, nor use a client secret.
    with pytest.raises(Exception, match="private_key_jwt"):
        bank.run(
            lambda: rt.openbanking.register_client(
                {
                    "client_name": "P",
                    "redirect_uris": [REDIRECT_URI],
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                ClientInfo(),
                environment=registration.client.environment,
                registered_by=admin,
            )
        )


def test_revoked_consents_token_is_refused_at_once(bank: Bank, who: MfaCustomer) -> None:
    granted = grant(bank, who)
    partner = granted.partner
    headers = {"Authorization": f"Bearer {partner.client_credentials_token()}"}
    deleted = bank.client.delete(f"{AISP}/account-access-consents/{granted.consent_id}", headers=headers)
    assert deleted.status_code == 204
    assert deleted.headers["x-fapi-interaction-id"]
    assert partner.post("/oauth2/introspect", {"token": granted.tokens["access_token"]}).json() == {"active": False}
    refreshed = partner.post(
        "/oauth2/token", {"grant_type": "refresh_token", "refresh_token": granted.tokens["refresh_token"]}
    )
    assert oauth_error(refreshed) == (400, "invalid_grant")
    assert (
        scalar(
            bank.url,
            "SELECT count(*) FROM openbanking.tokens WHERE consent_id = %s AND revoked_at IS NULL",
            granted.consent_id,
        )
        == 0
    )


def test_a_replayed_client_assertion_is_refused(bank: Bank) -> None:
    partner = Partner.register(bank)
    assertion = partner.assertion()
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "grant_type": "client_credentials",
    }
    assert bank.client.post("/oauth2/token", data=form).status_code == 200
    again = bank.client.post("/oauth2/token", data=form)
    assert oauth_error(again) == (401, "invalid_client")


def test_an_assertion_signed_by_another_key_or_for_another_audience_is_refused(bank: Bank) -> None:
    partner, impostor = Partner.register(bank), Partner.register(bank)
    forged = impostor.assertion(iss=partner.client_id, sub=partner.client_id)
    response = bank.client.post(
        "/oauth2/token",
        data={
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": forged,
            "grant_type": "client_credentials",
        },
    )
    assert oauth_error(response) == (401, "invalid_client")
    wrong_audience = partner.assertion(audience="https://elsewhere.example/token")
    response = bank.client.post(
        "/oauth2/token",
        data={
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": wrong_audience,
            "grant_type": "client_credentials",
        },
    )
    assert oauth_error(response) == (401, "invalid_client")


def test_sandbox_client_secrets_work_and_are_stored_hashed(bank: Bank) -> None:
    registered = bank.client.post(
        "/oauth2/register",
        json={
            "client_name": "Secret app",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    stored = scalar(bank.url, "SELECT secret_hash FROM openbanking.clients WHERE client_id = %s", body["client_id"])
    assert stored.startswith("$argon2id$") and body["client_secret"] not in stored
    ok = bank.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": body["client_id"],
            "client_secret": body["client_secret"],
        },
    )
    assert ok.status_code == 200, ok.text
    bad = bank.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": body["client_id"], "client_secret": "wrong"},
    )
    assert oauth_error(bad) == (401, "invalid_client")


def test_a_customer_cannot_open_another_customers_consent_screen(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    _, challenge = verifier_and_challenge()
    pushed = partner.push(new_consent(partner), challenge)
    path = consent_page(bank, partner, pushed.json()["request_uri"])
    sign_in(bank, who, "/app/")
    assert bank.client.get(path).status_code == 200  # the first customer to open it owns it
    other = customer_with_mfa(bank)
    sign_in(bank, other, "/app/")
    assert bank.client.get(path).status_code == 404
    # A pushed request_uri is single-use.
    again = bank.client.get(
        "/oauth2/authorize",
        params={"client_id": partner.client_id, "request_uri": pushed.json()["request_uri"]},
        follow_redirects=False,
    )
    assert oauth_error(again) == (400, "invalid_request")


def test_approval_needs_a_fresh_mfa_code_and_a_rejection_reaches_the_app(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    _, challenge = verifier_and_challenge()
    consent_id = new_consent(partner)
    pushed = partner.push(consent_id, challenge, state="r1")
    path = consent_page(bank, partner, pushed.json()["request_uri"])
    sign_in(bank, who, "/app/")
    wrong = decide(bank, who, path, code="000000")
    assert wrong.status_code == 401
    assert scalar(bank.url, "SELECT status FROM openbanking.consents WHERE id = %s", consent_id) == "AWAU"
    rejected = decide(bank, who, path, approve=False)
    assert rejected.status_code == 303
    back = query_of(rejected.headers["location"])
    assert (back["error"], back["state"], back["iss"]) == ("access_denied", "r1", bank.runtime.settings.issuer)
    assert scalar(bank.url, "SELECT status FROM openbanking.consents WHERE id = %s", consent_id) == "RJCT"
    assert all_rows(
        bank.url,
        "SELECT actor_kind FROM platform.audit_log WHERE action = 'openbanking.consent_rejected' AND subject_id = %s",
        consent_id,
    ) == [("customer",)]


def test_a_customer_without_mfa_is_led_to_enrol(bank: Bank) -> None:
    from tests.banking.http_helpers import PASSWORD, onboard

    from .helpers import csrf_of

    plain = onboard(bank)
    partner = Partner.register(bank)
    _, challenge = verifier_and_challenge()
    pushed = partner.push(new_consent(partner), challenge)
    path = consent_page(bank, partner, pushed.json()["request_uri"])
    bank.client.cookies.clear()
    token = csrf_of(bank.client.get("/app/login").text)
    signed_in = bank.client.post(
        "/app/login",
        data={"csrf_token": token, "login": plain.login, "password": PASSWORD, "next": path},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    page = bank.client.get(path)
    assert page.status_code == 200
    assert "Set up an authenticator app" in page.text
    assert 'value="approve"' not in page.text
    forced = bank.client.post(
        path,
        data={
            "csrf_token": csrf_of(page.text),
            "decision": "approve",
            "account": str(plain.account_id),
            "code": "123456",
        },
    )
    assert forced.status_code == 409
    assert (
        scalar(bank.url, "SELECT count(*) FROM openbanking.authorization_codes WHERE client_id = %s", partner.client_id)
        == 0
    )


def test_consent_forms_need_the_sessions_csrf_token(bank: Bank, who: MfaCustomer) -> None:
    granted = grant(bank, who)
    response = bank.client.post(f"/app/consents/{granted.consent_id}/revoke", data={"csrf_token": "forged"})
    assert response.status_code == 403
    assert scalar(bank.url, "SELECT status FROM openbanking.consents WHERE id = %s", granted.consent_id) == "AUTH"


def test_an_expired_consents_token_is_refused(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    until = (bank.clock.now() + timedelta(minutes=10)).isoformat()
    consent_id = partner.create_consent(
        partner.client_credentials_token(), {"Permissions": ["ReadBalances"], "ExpirationDateTime": until}
    )["Data"]["ConsentId"]
    verifier, challenge = verifier_and_challenge()
    pushed = partner.push(consent_id, challenge)
    sign_in(bank, who, "/app/")
    answer = decide(bank, who, consent_page(bank, partner, pushed.json()["request_uri"]))
    tokens = partner.exchange(query_of(answer.headers["location"])["code"], verifier).json()
    assert partner.post("/oauth2/introspect", {"token": tokens["access_token"]}).json()["active"] is True
    bank.clock.advance(timedelta(minutes=11))
    assert partner.post("/oauth2/introspect", {"token": tokens["access_token"]}).json() == {"active": False}
    refreshed = partner.post("/oauth2/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert oauth_error(refreshed) == (400, "invalid_grant")
    status = bank.client.get(
        f"{AISP}/account-access-consents/{consent_id}",
        headers={"Authorization": f"Bearer {partner.client_credentials_token()}"},
    ).json()["Data"]["Status"]
    assert status == "EXPD"
