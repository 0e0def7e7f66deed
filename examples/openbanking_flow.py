"""A partner app's whole open-banking flow against a smartbank sandbox, with httpx and joserfc.

    smartbank openbanking sandbox                        # registers the app, writes its key file
    python examples/openbanking_flow.py --config smartbank-sandbox-partner.json [--pay-to NUMBER --amount 1.00]

1. discovery (RFC 8414), then a client-credentials token with ``private_key_jwt``;
2. an account-access consent, a pushed authorization request (PAR) with PKCE S256, the authorize URL;
3. you log in as the customer, choose an account, confirm with your authenticator code, and paste the
   URL the browser lands on; the code is exchanged (PKCE verifier + ``private_key_jwt``);
4. accounts and balances are read, the bank's ``x-jws-signature`` on each answer checked;
5. with ``--pay-to``: a domestic payment consent (signed, ``x-idempotency-key``), authorised the same
   way, then the payment itself.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet
from joserfc.registry import HeaderParameter, is_int, is_str

OB_IAT, OB_ISS, OB_TAN = (f"http://openbanking.org.uk/{n}" for n in ("iat", "iss", "tan"))


class _Registry(jws.JWSRegistry):
    max_header_length = 2048


REGISTRY = _Registry(
    header_registry={n: HeaderParameter(n, f) for n, f in ((OB_IAT, is_int), (OB_ISS, is_str), (OB_TAN, is_str))}
    | {"cty": HeaderParameter("cty", is_str)},
    algorithms=["ES256", "PS256"],
)


class Partner:
    def __init__(self, config: dict[str, Any], http: httpx.Client | None = None) -> None:
        self.issuer: str = config["issuer"]
        self.client_id: str = config["client_id"]
        self.redirect_uri: str = config["redirect_uri"]
        self.key = ECKey.import_key(config["private_jwk"])
        self.http = http or httpx.Client(base_url=self.issuer, timeout=30)
        self.meta = self.http.get("/.well-known/oauth-authorization-server").raise_for_status().json()
        self.bank_keys = KeySet.import_key_set(self.http.get(self.meta["jwks_uri"]).raise_for_status().json())
        self.tan = urlsplit(self.issuer).hostname

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.meta["token_endpoint"],
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key, algorithms=["ES256"])

    def back_channel(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        form = {
            **form,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(),
        }
        response = self.http.post(self.meta[endpoint], data=form)
        if response.status_code >= 400:
            sys.exit(f"{endpoint}: {response.status_code} {response.text}")
        return dict(response.json())

    def sign(self, body: bytes) -> str:
        header = {
            "alg": "ES256",
            "kid": self.key.kid,
            "typ": "JOSE",
            "cty": "application/json",
            "b64": False,
            OB_IAT: int(time.time()),
            OB_ISS: self.client_id,
            OB_TAN: self.tan,
            "crit": ["b64", OB_IAT, OB_ISS, OB_TAN],
        }
        token = jws.serialize_compact(header, body, self.key, algorithms=["ES256"], registry=REGISTRY)
        return token.split(".")[0] + ".." + token.split(".")[2]

    def call(self, method: str, path: str, token: str, body: Any = None, *, signed: bool = False) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "x-fapi-interaction-id": str(uuid.uuid4())}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers |= {"Content-Type": "application/json", "x-idempotency-key": secrets.token_hex(12)}
            if signed:
                headers["x-jws-signature"] = self.sign(content)
        response = self.http.request(method, path, content=content, headers=headers)
        # Every answer is signed by the bank over its exact bytes: check it before trusting it.
        jws.deserialize_compact(
            response.headers["x-jws-signature"], self.bank_keys, registry=REGISTRY, payload=response.content
        )
        if response.status_code >= 400:
            sys.exit(f"{method} {path}: {response.status_code} {response.text}")
        return dict(response.json())

    def authorise(self, consent_id: str, scope: str) -> str:
        """PAR + PKCE, the customer in the browser, then the code exchanged: an access token."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        pushed = self.back_channel(
            "pushed_authorization_request_endpoint",
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": scope,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "openbanking_intent_id": consent_id,
            },
        )
        query = urlencode({"client_id": self.client_id, "request_uri": pushed["request_uri"]})
        authorize_url = f"{self.meta['authorization_endpoint']}?{query}"
        print(f"\nOpen this in a browser, log in as the customer and allow:\n\n  {authorize_url}\n")
        landed = input("Paste the URL the browser landed on: ").strip()
        answer = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
        if answer.get("state") != state or answer.get("iss") != self.issuer or "code" not in answer:
            sys.exit(f"the authorization failed or was tampered with: {answer}")
        tokens = self.back_channel(
            "token_endpoint",
            {
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )
        return str(tokens["access_token"])

    def client_token(self, scope: str) -> str:
        return str(
            self.back_channel("token_endpoint", {"grant_type": "client_credentials", "scope": scope})["access_token"]
        )


def main(http: httpx.Client | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("smartbank-sandbox-partner.json"))
    parser.add_argument("--pay-to", help="an account number of the bank to pay (optional)")
    parser.add_argument("--payee-name", default="Sandbox payee")
    parser.add_argument("--amount", default="1.00", help="CNY, e.g. 1.00")
    args = parser.parse_args()
    partner = Partner(json.loads(args.config.read_text(encoding="utf-8")), http)

    aisp = "/open-banking/v4.0/aisp"
    consent = partner.call(
        "POST",
        f"{aisp}/account-access-consents",
        partner.client_token("accounts"),
        {
            "Data": {
                "Permissions": [
                    "ReadAccountsDetail",
                    "ReadBalances",
                    "ReadTransactionsDetail",
                    "ReadTransactionsCredits",
                    "ReadTransactionsDebits",
                ]
            },
            "Risk": {},
        },
    )
    token = partner.authorise(consent["Data"]["ConsentId"], "openid accounts")
    for account in partner.call("GET", f"{aisp}/accounts", token)["Data"]["Account"]:
        balances = partner.call("GET", f"{aisp}/accounts/{account['AccountId']}/balances", token)["Data"]["Balance"]
        shown = ", ".join(f"{b['Type']} {b['Amount']['Amount']} {b['Amount']['Currency']}" for b in balances)
        print(f"account {account['Account'][0]['Identification']}: {shown}")

    if args.pay_to:
        pisp = "/open-banking/v4.0/pisp"
        request = {
            "Data": {
                "Initiation": {
                    "InstructionIdentification": secrets.token_hex(8),
                    "EndToEndIdentification": secrets.token_hex(8),
                    "InstructedAmount": {"Amount": args.amount, "Currency": "CNY"},
                    "CreditorAccount": {
                        "SchemeName": "UK.OBIE.BBAN",
                        "Identification": args.pay_to,
                        "Name": args.payee_name,
                    },
                    "RemittanceInformation": {"Unstructured": ["smartbank sandbox"]},
                }
            },
            "Risk": {"PaymentContextCode": "TransferToThirdParty"},
        }
        created = partner.call(
            "POST", f"{pisp}/domestic-payment-consents", partner.client_token("payments"), request, signed=True
        )
        token = partner.authorise(created["Data"]["ConsentId"], "openid payments")
        payment = {
            "Data": {"ConsentId": created["Data"]["ConsentId"], "Initiation": created["Data"]["Initiation"]},
            "Risk": created["Risk"],
        }
        paid = partner.call("POST", f"{pisp}/domestic-payments", token, payment, signed=True)
        print(f"payment {paid['Data']['DomesticPaymentId']}: {paid['Data']['Status']}")


if __name__ == "__main__":
    main()
