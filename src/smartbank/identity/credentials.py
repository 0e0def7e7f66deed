"""Credential mechanics: argon2id password hashes, TOTP, opaque tokens, access JWTs, secret sealing.

No database here; the service decides when each is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pyotp
import segno
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from smartbank.platform.keys import derive

#: OWASP's argon2id setting: 46 MiB, one pass, one lane.
ARGON2_MEMORY_KIB: Final = 47_104
ARGON2_TIME_COST: Final = 1
ARGON2_PARALLELISM: Final = 1

TOTP_DIGITS: Final = 6
TOTP_PERIOD_S: Final = 30
#: Codes of the previous and next time step are accepted too (clock drift).
TOTP_DRIFT_STEPS: Final = 1
TOTP_ISSUER: Final = "smartbank"
RECOVERY_CODES: Final = 10
ACCESS_TOKEN_TTL: Final = timedelta(minutes=10)
JWT_ALGORITHM: Final = "HS256"
JWT_ISSUER: Final = "smartbank"

_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"


class Passwords:
    """argon2id hashing; :meth:`needs_rehash` says when stored parameters are weaker than these."""

    def __init__(
        self,
        memory_kib: int = ARGON2_MEMORY_KIB,
        time_cost: int = ARGON2_TIME_COST,
        parallelism: int = ARGON2_PARALLELISM,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification, so unknown logins answer as slowly as known ones."""
        self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def new_token(prefix: str) -> str:
    """An opaque bearer secret (256 bits)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> bytes:
    """Tokens are random, so a plain hash suffices to store them without keeping them."""
    return hashlib.sha256(token.encode()).digest()


class Keys:
    """Sub-keys of the master secret, one per purpose."""

    def __init__(self, master: bytes) -> None:
        self.jwt = OctKey.import_key(derive(master, "jwt-hs256"))
        self.csrf = derive(master, "csrf")
        self.recovery = derive(master, "recovery-codes")
        self.totp = AESGCM(derive(master, "totp-secrets"))

    def csrf_token(self, session_token_hash: bytes) -> str:
        mac = hmac.new(self.csrf, session_token_hash, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def recovery_hash(self, code: str) -> bytes:
        return hmac.new(self.recovery, normalise_recovery_code(code).encode(), hashlib.sha256).digest()

    def seal(self, secret: str, principal_id: uuid.UUID) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self.totp.encrypt(nonce, secret.encode(), principal_id.bytes)

    def unseal(self, sealed: bytes, principal_id: uuid.UUID) -> str:
        return self.totp.decrypt(sealed[:12], sealed[12:], principal_id.bytes).decode()

    def access_token(self, *, principal_id: uuid.UUID, session_id: uuid.UUID, kind: str, now: datetime) -> str:
        claims = {
            "iss": JWT_ISSUER,
            "sub": str(principal_id),
            "sid": str(session_id),
            "knd": kind,
            "typ": "access",
            "iat": int(now.timestamp()),
            "exp": int((now + ACCESS_TOKEN_TTL).timestamp()),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode({"alg": JWT_ALGORITHM}, claims, self.jwt, algorithms=[JWT_ALGORITHM])

    def read_access_token(self, token: str, now: datetime) -> tuple[uuid.UUID, uuid.UUID] | None:
        """(principal id, session id) of a valid, unexpired access token; None otherwise."""
        if len(token) > 2048:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(token, self.jwt, algorithms=[JWT_ALGORITHM]).claims
            if claims.get("iss") != JWT_ISSUER or claims.get("typ") != "access":
                return None
            exp = claims.get("exp")
            if not isinstance(exp, int) or exp <= now.timestamp():
                return None
            return uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"]))
        except (JoseError, ValueError, KeyError, TypeError):
            return None


# -- TOTP and recovery codes -------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_uri(secret: str, login: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S).provisioning_uri(
        name=login, issuer_name=TOTP_ISSUER
    )


def qr_svg(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode()


def totp_code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S).generate_otp(step)


def totp_step(now: datetime) -> int:
    return int(now.astimezone(UTC).timestamp()) // TOTP_PERIOD_S


def match_totp(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The time step ``code`` belongs to, if valid and newer than ``last_step`` (else None: a replay)."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    current = totp_step(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if step > last_step and hmac.compare_digest(totp_code(secret, step), code):
            return step
    return None


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes like ``k7mq-2xpa-9dfr`` (about 70 bits each)."""
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3)) for _ in range(count)
    ]


def normalise_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise_recovery_code(code)) == 12


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str
