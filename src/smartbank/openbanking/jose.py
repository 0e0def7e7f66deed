"""JOSE for the authorization server (joserfc, with Authlib's RFC 7523 claim checks): the bank's
signing key and JWKS, and partner apps' ``private_key_jwt`` client assertions."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Final

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.registry import HeaderParameter, is_int, is_str

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


# -- x-jws-signature: detached JWS (RFC 7797, b64=false) as the OBIE signing profile uses it -----------

OB_IAT: Final = "http://openbanking.org.uk/iat"
OB_ISS: Final = "http://openbanking.org.uk/iss"
OB_TAN: Final = "http://openbanking.org.uk/tan"
#: The critical headers of a message signature; each must be present and understood.
CRITICAL_HEADERS: Final = ("b64", OB_IAT, OB_ISS, OB_TAN)
MAX_SIGNATURE_CHARS: Final = 4096
#: A request signature's ``iat`` may be at most this old, or this far ahead of the bank's clock.
SIGNATURE_MAX_AGE_S: Final = 300
SIGNATURE_MAX_SKEW_S: Final = 60


class _MessageSignatures(jws.JWSRegistry):
    max_header_length = 2048  # the OBIE headers are longer than joserfc's default allows


_MESSAGE_REGISTRY: Final = _MessageSignatures(
    header_registry={
        OB_IAT: HeaderParameter("OBIE signing time", is_int),
        OB_ISS: HeaderParameter("OBIE signer", is_str),
        OB_TAN: HeaderParameter("OBIE trust anchor", is_str),
        "cty": HeaderParameter("Content type", is_str),
    },
    algorithms=list(SIGNING_ALGORITHMS),
)


class SignatureProblem(Exception):
    """Why an ``x-jws-signature`` is refused; ``kind`` names the OBIE error (missing, malformed, invalid, claim,
    missing_claim)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def sign_detached(payload: bytes, key: ECKey, *, issuer: str, trust_anchor: str, now: datetime) -> str:
    """A detached compact JWS over ``payload`` (unencoded, ``b64=false``): ``header..signature``."""
    header = {
        "alg": "ES256",
        "kid": key.kid,
        "typ": "JOSE",
        "cty": "application/json",
        "b64": False,
        OB_IAT: int(now.timestamp()),
        OB_ISS: issuer,
        OB_TAN: trust_anchor,
        "crit": list(CRITICAL_HEADERS),
    }
    token = jws.serialize_compact(header, payload, key, algorithms=["ES256"], registry=_MESSAGE_REGISTRY)
    head, _, signature = token.rpartition(".")
    return head.split(".")[0] + ".." + signature


def verify_detached(
    signature: str | None,
    payload: bytes,
    jwks: dict[str, Any] | None,
    *,
    signer: str,
    trust_anchor: str,
    now: datetime,
) -> None:
    """Check a partner's ``x-jws-signature`` over the exact request body, against its registered JWKS.

    The header must carry ``b64=false`` and the OBIE claims (iat, iss = the client id, tan = this
    bank's trust anchor), all listed in ``crit``; the payload is detached (``header..signature``).
    """
    if not signature:
        raise SignatureProblem("missing", "x-jws-signature is required")
    if len(signature) > MAX_SIGNATURE_CHARS or signature.count(".") != 2:
        raise SignatureProblem("malformed", "x-jws-signature is not a detached compact JWS")
    head, middle, _ = signature.split(".")
    if middle:
        raise SignatureProblem("malformed", "the payload of x-jws-signature must be detached")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError) as exc:
        raise SignatureProblem("malformed", "the x-jws-signature header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise SignatureProblem("malformed", "the x-jws-signature header is not a JSON object")
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise SignatureProblem("invalid", "x-jws-signature must use PS256 or ES256")
    if header.get("b64") is not False:
        raise SignatureProblem("claim", "x-jws-signature needs b64=false")
    crit = header.get("crit")
    if not isinstance(crit, list) or sorted(crit) != sorted(CRITICAL_HEADERS):
        raise SignatureProblem("missing_claim", "crit must list b64 and the openbanking.org.uk iat, iss and tan")
    for name in (OB_IAT, OB_ISS, OB_TAN):
        if name not in header:
            raise SignatureProblem("missing_claim", f"{name} is missing")
    iat = header[OB_IAT]
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise SignatureProblem("claim", f"{OB_IAT} must be a number")
    if iat > now.timestamp() + SIGNATURE_MAX_SKEW_S or iat < now.timestamp() - SIGNATURE_MAX_AGE_S:
        raise SignatureProblem("claim", f"{OB_IAT} is too old or in the future")
    if header[OB_ISS] != signer:
        raise SignatureProblem("claim", f"{OB_ISS} must be the client id")
    if header[OB_TAN] != trust_anchor:
        raise SignatureProblem("claim", f"{OB_TAN} must be {trust_anchor}")
    if jwks is None:
        raise SignatureProblem("invalid", "this client has no registered keys to verify signatures with")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # checked at registration
        jws.deserialize_compact(
            signature, keys, algorithms=list(SIGNING_ALGORITHMS), registry=_MESSAGE_REGISTRY, payload=payload
        )
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignatureProblem("invalid", "x-jws-signature does not verify with a key of this client") from exc
