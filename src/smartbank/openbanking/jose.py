"""JOSE for the authorization server (joserfc, with Authlib's RFC 7523 claim checks): the bank's
signing key and JWKS, and partner apps' ``private_key_jwt`` client assertions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from smartbank.openbanking.errors import InvalidClientError, InvalidClientMetadataError
from smartbank.openbanking.model import SIGNING_ALGORITHMS
from smartbank.platform.keys import derive

ASSERTION_TYPE: Final = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
#: A client assertion may be valid for at most this long (it is single-use anyway).
MAX_ASSERTION_LIFETIME_S: Final = 300
MAX_ASSERTION_CHARS: Final = 8192
MAX_JWKS_KEYS: Final = 10
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def bank_signing_key(master: bytes) -> ECKey:
    """The bank's ES256 signing key, derived from the master secret (same key in every process)."""
    scalar = int.from_bytes(derive(master, "openbanking-signing-es256"), "big") % (_P256_ORDER - 1) + 1
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = ECKey.import_key(pem, {"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


def public_jwks(key: ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}


def client_key_set(jwks: Any) -> KeySet:
    """A partner's JWKS given at registration: public PS256 (RSA) or ES256 (P-256) keys only."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidClientMetadataError(description="jwks must be a JWK Set with at least one key")
    if len(jwks["keys"]) > MAX_JWKS_KEYS:
        raise InvalidClientMetadataError(description=f"jwks holds at most {MAX_JWKS_KEYS} keys")
    for item in jwks["keys"]:
        if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC"):
            raise InvalidClientMetadataError(description="jwks keys must be RSA or EC keys")
        if "d" in item or "p" in item:
            raise InvalidClientMetadataError(description="jwks must hold public keys only")
        if item.get("kty") == "EC" and item.get("crv") != "P-256":
            raise InvalidClientMetadataError(description="EC keys must be on P-256 (ES256)")
    try:
        return KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # checked above
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidClientMetadataError(description="jwks is not a valid JWK Set") from exc


class _Claims(JWTBearerClientAssertion):  # type: ignore[misc]
    """Authlib's RFC 7523 claim checks (iss = sub, aud, exp, jti present) for our audiences."""

    def __init__(self, audiences: list[str]) -> None:
        super().__init__(validate_jti=False, leeway=30)
        self._audiences = audiences

    def get_audiences(self) -> list[str]:
        return self._audiences


def unverified_subject(assertion: str) -> str | None:
    """The ``sub`` claim of an assertion, read before it is verified (to find the client's keys)."""
    if len(assertion) > MAX_ASSERTION_CHARS:
        return None
    try:
        claims = json.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def verify_client_assertion(
    assertion: str, jwks: dict[str, Any], client_id: str, audiences: list[str], now: datetime
) -> dict[str, Any]:
    """The verified claims of a ``private_key_jwt`` assertion by ``client_id``; InvalidClientError otherwise."""
    if len(assertion) > MAX_ASSERTION_CHARS:
        raise InvalidClientError(description="the client assertion is too long")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # checked at registration
        token = jwt.decode(assertion, keys, algorithms=list(SIGNING_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidClientError(description="the client assertion is not signed by a key of this client") from exc
    claims: dict[str, Any] = dict(token.claims)
    _Claims(audiences).verify_claims(token.claims)
    if claims.get("iss") != client_id:
        raise InvalidClientError(description="the client assertion is not by this client")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now.timestamp():
        raise InvalidClientError(description="the client assertion has expired")
    if exp > now.timestamp() + MAX_ASSERTION_LIFETIME_S:
        raise InvalidClientError(description="the client assertion lives too long")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 200:
        raise InvalidClientError(description="the client assertion needs a jti")
    return claims
