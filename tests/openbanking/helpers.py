"""Helpers for the open-banking tests: a partner app with its own keys, driven over HTTP like a real
one (registration, client credentials, consents, PAR, token exchange), and a customer with MFA who
decides on the consent screen of the web app."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter, is_int, is_str

from smartbank.kernel.clock import FrozenClock
from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from tests.banking.http_helpers import PASSWORD, Bank, Customer, code_now, onboard

REDIRECT_URI = "https://partner.example/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AISP = "/open-banking/v4.0/aisp"
PERMISSIONS = ["ReadAccountsBasic", "ReadBalances", "ReadTransactionsBasic", "ReadTransactionsCredits"]
PISP = "/open-banking/v4.0/pisp"
CBPII = "/open-banking/v4.0/cbpii"


class _Registry(jws.JWSRegistry):
    max_header_length = 2048


# A partner's own JOSE set-up for message signatures: the OBIE header parameters are understood.
_REGISTRY = _Registry(
    header_registry={
        "http://openbanking.org.uk/iat": HeaderParameter("iat", is_int),
        "http://openbanking.org.uk/iss": HeaderParameter("iss", is_str),
        "http://openbanking.org.uk/tan": HeaderParameter("tan", is_str),
        "cty": HeaderParameter("cty", is_str),
    },
    algorithms=["PS256", "ES256"],
)


@contextlib.contextmanager
def open_bank(database_url: str, settings: Settings, *, client_ip: str) -> Iterator[Bank]:
    """The app in a TestClient on a frozen clock set to the real time (client assertions carry real
    ``exp`` claims, which Authlib's checks compare with the wall clock)."""
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    app = create_app(settings, database_url=database_url, clock=clock)
    with TestClient(app, base_url="https://testserver", client=(client_ip, 50000)) as client:
        yield Bank(client, clock, database_url)


def verifier_and_challenge() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Partner:
    """A partner app: its key pair, its registration, and the calls it makes."""

    bank: Bank
    key: Any
    algorithm: str
    client_id: str = ""
    registration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def register(cls, bank: Bank, *, algorithm: str = "ES256", redirect_uri: str = REDIRECT_URI) -> Partner:
        key = ECKey.generate_key("P-256") if algorithm == "ES256" else RSAKey.generate_key(2048)
        key.ensure_kid()
        partner = cls(bank, key, algorithm)
        response = bank.client.post(
            "/oauth2/register",
            json={
                "client_name": "Budget Buddy",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [key.as_dict(private=False)]},
            },
        )
        assert response.status_code == 201, response.text
        partner.registration = response.json()
        partner.client_id = partner.registration["client_id"]
        return partner

    def assertion(self, audience: str | None = None, **overrides: Any) -> str:
        # Authlib checks exp against the wall clock, the server against its (frozen, advanced) clock.
        now = max(int(time.time()), int(self.bank.clock.now().timestamp()))
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience or self.bank.runtime.settings.issuer + "/oauth2/token",
            "iat": int(time.time()),
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
            **overrides,
        }
        return jwt.encode({"alg": self.algorithm, "kid": self.key.kid}, claims, self.key, algorithms=[self.algorithm])

    def auth(self) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion()}

    def post(self, path: str, data: dict[str, str]) -> Any:
        return self.bank.client.post(path, data={**self.auth(), **data})

    def client_credentials_token(self, scope: str = "accounts") -> str:
        response = self.post("/oauth2/token", {"grant_type": "client_credentials", "scope": scope})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def create_consent(self, token: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.bank.client.post(
            f"{AISP}/account-access-consents",
            json={"Data": data or {"Permissions": PERMISSIONS}, "Risk": {}},
            headers={"Authorization": f"Bearer {token}", "x-fapi-interaction-id": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def push(self, consent_id: str, challenge: str, scope: str = "openid accounts", **overrides: str) -> Any:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": "st-" + secrets.token_hex(4),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "openbanking_intent_id": consent_id,
            **overrides,
        }
        return self.post("/oauth2/par", {k: v for k, v in params.items() if v is not None})

    def sign(self, body: bytes, **overrides: Any) -> str:
        """A detached ``x-jws-signature`` over ``body`` (b64=false, the OBIE claims critical)."""
        tan = urlsplit(self.bank.runtime.settings.issuer).hostname
        header = {
            "alg": self.algorithm,
            "kid": self.key.kid,
            "typ": "JOSE",
            "cty": "application/json",
            "b64": False,
            "http://openbanking.org.uk/iat": int(self.bank.clock.now().timestamp()),
            "http://openbanking.org.uk/iss": self.client_id,
            "http://openbanking.org.uk/tan": tan,
            "crit": [
                "b64",
                "http://openbanking.org.uk/iat",
                "http://openbanking.org.uk/iss",
                "http://openbanking.org.uk/tan",
            ],
            **overrides,
        }
        header = {k: v for k, v in header.items() if v is not None}
        token = jws.serialize_compact(header, body, self.key, algorithms=[self.algorithm], registry=_REGISTRY)
        head, _, signature = token.rpartition(".")
        return head.split(".")[0] + ".." + signature

    def signed_post(self, path: str, body: Any, token: str, *, key: str | None = None, **headers: str) -> Any:
        """POST ``body`` as JSON, signed, with an idempotency key (a new one unless given)."""
        content = json.dumps(body).encode()
        return self.bank.client.post(
            path,
            content=content,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "x-idempotency-key": key or secrets.token_hex(8),
                "x-jws-signature": self.sign(content),
                "x-fapi-interaction-id": str(uuid.uuid4()),
                **headers,
            },
        )

    def exchange(self, code: str, verifier: str, redirect_uri: str = REDIRECT_URI) -> Any:
        return self.post(
            "/oauth2/token",
            {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri},
        )


@dataclass
class MfaCustomer:
    customer: Customer
    secret: str


def customer_with_mfa(bank: Bank) -> MfaCustomer:
    """A verified customer with a funded account and an authenticator app."""
    customer = onboard(bank, fund_minor=100_000)
    rt = bank.runtime
    from smartbank.identity.model import ClientInfo

    enrolment = bank.run(lambda: rt.identity.start_mfa_enrolment(customer.principal, ClientInfo()))
    bank.run(
        lambda: rt.identity.confirm_mfa_enrolment(
            customer.principal, code_now(enrolment.secret, bank.clock), ClientInfo()
        )
    )
    bank.clock.advance(timedelta(seconds=30))  # the next code is a fresh one
    return MfaCustomer(customer, enrolment.secret)


def fresh_code(bank: Bank, who: MfaCustomer) -> str:
    """A TOTP code of a time step not used yet (the clock moves on a step first)."""
    bank.clock.advance(timedelta(seconds=30))
    return code_now(who.secret, bank.clock)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has no form token"
    return match.group(1)


def sign_in(bank: Bank, who: MfaCustomer, next_path: str) -> None:
    """Log in through the web app's forms (password, then a TOTP code) and land on ``next_path``."""
    client = bank.client
    client.cookies.clear()
    token = csrf_of(client.get("/app/login").text)
    page = client.post(
        "/app/login",
        data={"csrf_token": token, "login": who.customer.login, "password": PASSWORD, "next": next_path},
        follow_redirects=False,
    )
    assert page.status_code == 200, page.text
    challenge = re.search(r'name="challenge" value="([^"]+)"', page.text)
    assert challenge is not None, page.text
    done = client.post(
        "/app/login/mfa",
        data={
            "csrf_token": token,
            "challenge": challenge.group(1),
            "code": fresh_code(bank, who),
            "next": next_path,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == next_path


def consent_page(bank: Bank, partner: Partner, request_uri: str) -> str:
    """The path of the consent screen the authorization endpoint sends the browser to."""
    response = bank.client.get(
        "/oauth2/authorize", params={"client_id": partner.client_id, "request_uri": request_uri}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/app/consents/authorize/"), location
    return str(location)


def decide(bank: Bank, who: MfaCustomer, path: str, *, approve: bool = True, code: str | None = None) -> Any:
    """Open the consent screen, then allow (this customer's account, a fresh code) or decline."""
    page = bank.client.get(path)
    assert page.status_code == 200, page.text
    data: dict[str, Any] = {"csrf_token": csrf_of(page.text), "decision": "approve" if approve else "reject"}
    if approve:
        data |= {"account": str(who.customer.account_id), "code": code or fresh_code(bank, who)}
    return bank.client.post(path, data=data, follow_redirects=False)


def query_of(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


@dataclass
class Granted:
    partner: Partner
    consent_id: str
    tokens: dict[str, Any]


def grant(bank: Bank, who: MfaCustomer, partner: Partner | None = None) -> Granted:
    """The whole flow up to tokens: consent, PAR, the customer's approval, the code exchanged."""
    partner = partner or Partner.register(bank)
    consent = partner.create_consent(partner.client_credentials_token())
    consent_id = consent["Data"]["ConsentId"]
    verifier, challenge = verifier_and_challenge()
    pushed = partner.push(consent_id, challenge)
    assert pushed.status_code == 201, pushed.text
    sign_in(bank, who, "/app/")
    answer = decide(bank, who, consent_page(bank, partner, pushed.json()["request_uri"]))
    assert answer.status_code == 303, answer.text
    code = query_of(answer.headers["location"])["code"]
    exchanged = partner.exchange(code, verifier)
    assert exchanged.status_code == 200, exchanged.text
    return Granted(partner, consent_id, exchanged.json())


def consent_status(bank: Bank, partner: Partner, consent_id: str) -> str:
    response = bank.client.get(
        f"{AISP}/account-access-consents/{consent_id}",
        headers={"Authorization": f"Bearer {partner.client_credentials_token()}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["Data"]["Status"])


def authorise(bank: Bank, who: MfaCustomer, partner: Partner, consent_id: str, scope: str) -> dict[str, Any]:
    """PAR for ``consent_id``, the customer's approval with MFA (their account), the code exchanged."""
    verifier, challenge = verifier_and_challenge()
    pushed = partner.push(consent_id, challenge, scope=scope)
    assert pushed.status_code == 201, pushed.text
    sign_in(bank, who, "/app/")
    answer = decide(bank, who, consent_page(bank, partner, pushed.json()["request_uri"]))
    assert answer.status_code == 303, answer.text
    code = query_of(answer.headers["location"])["code"]
    exchanged = partner.exchange(code, verifier)
    assert exchanged.status_code == 200, exchanged.text
    return dict(exchanged.json())


def payment_request(creditor_number: str, amount: str = "12.34", name: str = "李雷") -> dict[str, Any]:
    """An ``OBWriteDomesticConsent4`` paying ``amount`` CNY to an account of this bank."""
    return {
        "Data": {
            "Initiation": {
                "InstructionIdentification": "instr-" + secrets.token_hex(4),
                "EndToEndIdentification": "e2e-" + secrets.token_hex(4),
                "InstructedAmount": {"Amount": amount, "Currency": "CNY"},
                "CreditorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": creditor_number, "Name": name},
                "RemittanceInformation": {"Unstructured": ["Invoice 42"]},
            }
        },
        "Risk": {"PaymentContextCode": "TransferToThirdParty"},
    }


def payment_of(consent: dict[str, Any]) -> dict[str, Any]:
    """The ``OBWriteDomestic2`` that executes a payment consent (its Initiation and Risk, unchanged)."""
    return copy.deepcopy(
        {
            "Data": {"ConsentId": consent["Data"]["ConsentId"], "Initiation": consent["Data"]["Initiation"]},
            "Risk": consent["Risk"],
        }
    )
