"""The whole open-banking flow over HTTP, as a partner app and a customer would go through it:
register with a JWKS, a client-credentials token, an account-access consent, PAR, the customer's
login with MFA and approval on the consent screen, the code exchanged with PKCE and private_key_jwt,
introspection, refresh with rotation (reuse revokes), revocation, and the audit trail."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, all_rows

from .helpers import (
    AISP,
    PERMISSIONS,
    REDIRECT_URI,
    Partner,
    consent_page,
    consent_status,
    csrf_of,
    customer_with_mfa,
    fresh_code,
    open_bank,
    query_of,
    sign_in,
    verifier_and_challenge,
)


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.70") as opened:
        yield opened


@pytest.mark.parametrize("algorithm", ["ES256", "PS256"])
def test_a_partner_app_reads_consent_granted_by_a_customer_with_mfa(bank: Bank, algorithm: str) -> None:
    issuer = bank.runtime.settings.issuer
    metadata = bank.client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert bank.client.get("/oauth2/jwks").json()["keys"][0]["alg"] == "ES256"

    partner = Partner.register(bank, algorithm=algorithm)
    assert partner.registration["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in partner.registration
    cc_token = partner.client_credentials_token()
    consent = partner.create_consent(
        cc_token, {"Permissions": PERMISSIONS, "ExpirationDateTime": "2099-01-01T00:00:00+00:00"}
    )
    consent_id = consent["Data"]["ConsentId"]
    assert consent["Data"]["Status"] == "AWAU"
    assert consent["Data"]["Permissions"] == PERMISSIONS

    verifier, challenge = verifier_and_challenge()
    pushed = partner.push(consent_id, challenge, state="xyz-state")
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert 0 < pushed.json()["expires_in"] <= 600

    # The browser arrives without a session: the consent screen sends it to log in first.
    who = customer_with_mfa(bank)
    path = consent_page(bank, partner, pushed.json()["request_uri"])
    bank.client.cookies.clear()
    to_login = bank.client.get(path, follow_redirects=False)
    assert to_login.status_code == 303
    assert to_login.headers["location"].startswith("/app/login?next=%2Fapp%2Fconsents%2Fauthorize%2F")
    sign_in(bank, who, path)
    page = bank.client.get(path)
    assert page.status_code == 200
    assert "Budget Buddy" in page.text
    assert "See your balances" in page.text
    assert who.customer.account_number in page.text
    answer = bank.client.post(
        path,
        data={
            "csrf_token": csrf_of(page.text),
            "decision": "approve",
            "account": str(who.customer.account_id),
            "code": fresh_code(bank, who),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    returned = query_of(location)
    assert returned["state"] == "xyz-state"
    assert returned["iss"] == issuer  # RFC 9207
    assert consent_status(bank, partner, consent_id) == "AUTH"

    exchanged = partner.exchange(returned["code"], verifier)
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "accounts openid"
    assert exchanged.headers["cache-control"] == "no-store"

    introspected = partner.post("/oauth2/introspect", {"token": tokens["access_token"]}).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == partner.client_id
    assert introspected["openbanking_intent_id"] == consent_id
    # Another partner learns nothing about this one's tokens.
    other = Partner.register(bank)
    assert other.post("/oauth2/introspect", {"token": tokens["access_token"]}).json() == {"active": False}

    # Refresh: a new pair; the old refresh token is spent, and presenting it again revokes the grant.
    refreshed = partner.post("/oauth2/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    rotated = refreshed.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert partner.post("/oauth2/introspect", {"token": rotated["access_token"]}).json()["active"] is True
    reused = partner.post("/oauth2/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    for token in (tokens["access_token"], rotated["access_token"], rotated["refresh_token"]):
        assert partner.post("/oauth2/introspect", {"token": token}).json() == {"active": False}

    # Tokens stored as hashes only: no raw token is in the table.
    stored = all_rows(bank.url, "SELECT token_hash FROM openbanking.tokens WHERE consent_id = %s", consent_id)
    assert len(stored) == 4
    assert all(len(bytes(row[0])) == 32 for row in stored)
    actions = [
        row[0]
        for row in all_rows(
            bank.url,
            "SELECT action FROM platform.audit_log WHERE subject_id = %s ORDER BY seq",
            consent_id,
        )
    ]
    assert actions == [
        "openbanking.consent_created",
        "openbanking.consent_granted",
        "openbanking.tokens_issued",
        "openbanking.tokens_issued",
        "openbanking.refresh_token_reused",
    ]
    registered = all_rows(
        bank.url,
        "SELECT action FROM platform.audit_log WHERE subject_type = 'client' AND subject_id = %s ORDER BY seq",
        partner.client_id,
    )
    assert registered[0] == ("openbanking.client_registered",)


def test_revoking_a_token_and_a_fresh_grant_after_it(bank: Bank) -> None:
    from .helpers import grant

    who = customer_with_mfa(bank)
    granted = grant(bank, who)
    partner, tokens = granted.partner, granted.tokens
    revoked = partner.post("/oauth2/revoke", {"token": tokens["refresh_token"]})
    assert revoked.status_code == 200
    assert partner.post("/oauth2/introspect", {"token": tokens["access_token"]}).json() == {"active": False}
    refused = partner.post("/oauth2/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refused.json()["error"] == "invalid_grant"
    # Revoking an unknown token answers the same (RFC 7009 §2.2).
    assert partner.post("/oauth2/revoke", {"token": "sbat_unknown"}).status_code == 200
    actions = all_rows(
        bank.url,
        "SELECT details->>'tokens_revoked' FROM platform.audit_log WHERE action = 'openbanking.tokens_revoked'"
        " AND subject_id = %s",
        granted.consent_id,
    )
    assert actions == [("2",)]


def test_the_customer_sees_and_revokes_a_consent_and_its_tokens_stop_at_once(bank: Bank) -> None:
    from .helpers import grant

    who = customer_with_mfa(bank)
    granted = grant(bank, who)
    headers = {"Authorization": f"Bearer {granted.tokens['access_token']}"}
    assert granted.partner.post("/oauth2/introspect", {"token": granted.tokens["access_token"]}).json()["active"]
    listing = bank.client.get("/app/consents")
    assert listing.status_code == 200
    assert granted.consent_id in listing.text
    assert "Budget Buddy" in listing.text
    revoked = bank.client.post(
        f"/app/consents/{granted.consent_id}/revoke", data={"csrf_token": csrf_of(listing.text)}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert consent_status(bank, granted.partner, granted.consent_id) == "CANC"
    assert granted.partner.post("/oauth2/introspect", {"token": granted.tokens["access_token"]}).json() == {
        "active": False
    }
    # A token bound to the consent no longer opens the resource API either.
    refused = bank.client.get(f"{AISP}/account-access-consents/{granted.consent_id}", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["Errors"][0]["ErrorCode"] == "U006"
    rows = all_rows(
        bank.url,
        "SELECT actor_kind, details->>'by' FROM platform.audit_log WHERE action = 'openbanking.consent_revoked'"
        " AND subject_id = %s",
        granted.consent_id,
    )
    assert rows == [("customer", "customer")]
