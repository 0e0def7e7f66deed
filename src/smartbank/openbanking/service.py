"""Open-banking use cases: partner apps, account-access consents, and the OAuth 2 grants bound to them.

One use case, one transaction. Authlib supplies the protocol pieces (error classes, RFC 7591 client
metadata checks, RFC 7523 assertion claim checks, PKCE S256, RFC 8414 metadata validation); the
grant state machine lives here so that each step is one PostgreSQL transaction (docs/adr/0007).

A refusal that must leave a trace (a replayed code, a reused refresh token) is written in a
transaction that commits; the error is raised after that commit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote, urlencode, urlsplit

from authlib.oauth2.rfc7591 import ClientMetadataClaims
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from joserfc.errors import JoseError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.banking.service import BankingService
from smartbank.identity.credentials import Passwords, new_token, token_hash
from smartbank.identity.model import ClientInfo, Principal, StaffRole
from smartbank.identity.service import IdentityService
from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.ids import new_id
from smartbank.openbanking import events, jose
from smartbank.openbanking.aisp import AccountInformation
from smartbank.openbanking.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidClientMetadataError,
    InvalidGrantError,
    InvalidRedirectURIError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OBError,
    OBErrorCode,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from smartbank.openbanking.events import EventNotifications
from smartbank.openbanking.model import (
    ACCESS_TOKEN_TTL,
    CHALLENGE_PATTERN,
    CODE_TTL,
    INTERACTION_TTL,
    MAX_REDIRECT_URIS,
    MAX_STATE_CHARS,
    PAR_TTL,
    REFRESH_TOKEN_TTL,
    RESOURCE_SCOPES,
    SCOPES,
    VERIFIER_PATTERN,
    AccountPermission,
    AuthMethod,
    ConsentKind,
    ConsentStatus,
    Environment,
    consent_window_problems,
    notification_uri_problem,
    permission_problems,
    redirect_uri_problem,
    scopes_of,
    status_now,
)
from smartbank.openbanking.pisp import PaymentInitiation
from smartbank.platform.audit import AuditEvent, Outcome, record
from smartbank.platform.db import Database

REQUEST_URI_PREFIX: Final = "urn:ietf:params:oauth:request_uri:"
_CONSENT_PATHS: Final = {
    ConsentKind.ACCOUNT_ACCESS: "/open-banking/v4.0/aisp/account-access-consents",
    ConsentKind.DOMESTIC_PAYMENT: "/open-banking/v4.0/pisp/domestic-payment-consents",
    ConsentKind.FUNDS_CONFIRMATION: "/open-banking/v4.0/cbpii/funds-confirmation-consents",
}
MAX_CONSENTS_LISTED: Final = 100
MAX_CLIENTS_LISTED: Final = 200
MAX_NAME_CHARS: Final = 200
MAX_TOKEN_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    environment: Environment
    auth_method: AuthMethod
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str
    jwks: dict[str, Any] | None
    software_id: str | None
    created_at: datetime
    event_notification_uri: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The client's registered metadata (RFC 7591 §3.2.1), never its secret."""
        data: dict[str, Any] = {
            "client_id": self.client_id,
            "client_id_issued_at": int(self.created_at.timestamp()),
            "client_name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "token_endpoint_auth_method": self.auth_method.value,
            "grant_types": list(self.grant_types),
            "response_types": ["code"],
            "scope": self.scope,
            "smartbank_environment": self.environment.value,
        }
        if self.auth_method is AuthMethod.PRIVATE_KEY_JWT:
            data["jwks"] = self.jwks
        if self.software_id:
            data["software_id"] = self.software_id
        if self.event_notification_uri:
            data["event_notification_uri"] = self.event_notification_uri
        return data


@dataclass(frozen=True, slots=True)
class Registration:
    client: Client
    #: Shown once, for sandbox clients with a client-secret method; only its hash is kept.
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    client_id: str
    kind: ConsentKind
    status: ConsentStatus
    permissions: tuple[str, ...]
    expires_at: datetime | None
    transaction_from: datetime | None
    transaction_to: datetime | None
    customer_id: uuid.UUID | None
    account_ids: tuple[uuid.UUID, ...]
    created_at: datetime
    status_updated_at: datetime
    #: What the partner asked for: a payment's ``Initiation`` and ``Risk``, a funds check's ``DebtorAccount``.
    details: dict[str, Any] | None = None
    authorised_at: datetime | None = None
    #: Where an authorised payment consent pays to: the customer's payee, or their own account.
    payee_id: uuid.UUID | None = None
    to_account_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AccessContext:
    """Who a valid access token speaks for: a client, and for a customer's grant its consent."""

    client_id: str
    grant_type: str
    scope: str
    consent_id: str | None
    customer_id: uuid.UUID | None
    consent_kind: ConsentKind | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationView:
    """What the consent screen shows for one authorization request."""

    request_id: uuid.UUID
    client: Client
    consent: Consent
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerConsent:
    consent: Consent
    client_name: str


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        environment=Environment(row.environment),
        auth_method=AuthMethod(row.auth_method),
        redirect_uris=tuple(row.redirect_uris),
        grant_types=tuple(row.grant_types),
        scope=row.scope,
        jwks=row.jwks,
        software_id=row.software_id,
        created_at=row.created_at,
        event_notification_uri=row.event_notification_uri,
    )


def _consent(row: Any, now: datetime) -> Consent:
    return Consent(
        id=row.id,
        client_id=row.client_id,
        kind=ConsentKind(row.kind),
        status=status_now(ConsentStatus(row.status), row.expires_at, now),
        permissions=tuple(row.permissions),
        expires_at=row.expires_at,
        transaction_from=row.transaction_from,
        transaction_to=row.transaction_to,
        customer_id=row.customer_id,
        account_ids=tuple(row.account_ids),
        created_at=row.created_at,
        status_updated_at=row.status_updated_at,
        details=row.details,
        authorised_at=row.authorised_at,
        payee_id=row.payee_id,
        to_account_id=row.to_account_id,
    )


def _parse_time(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise OBError(400, OBErrorCode.FIELD_INVALID_DATE, "expected an ISO 8601 date-time", path)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise OBError(400, OBErrorCode.FIELD_INVALID_DATE, "expected an ISO 8601 date-time", path) from exc
    if moment.tzinfo is None:
        raise OBError(400, OBErrorCode.FIELD_INVALID_DATE, "a date-time must include its time zone", path)
    return moment


def _one(form: Mapping[str, list[str]], name: str) -> str | None:
    """A parameter that may appear at most once (RFC 6749 §3.1); None when absent."""
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequestError(description=f"{name} is repeated")
    return values[0]


_CLIENT_COLUMNS: Final = (
    "client_id, name, environment, auth_method, redirect_uris, grant_types, scope, jwks, software_id, created_at,"
    " event_notification_uri"
)
_CONSENT_COLUMNS: Final = (
    "id, client_id, kind, status, permissions, expires_at, transaction_from, transaction_to, customer_id, account_ids,"
    " created_at, status_updated_at, details, authorised_at, payee_id, to_account_id"
)


class OpenBankingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        identity: IdentityService,
        banking: BankingService,
        issuer: str,
        signing_master_key: bytes,
        passwords: Passwords | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._identity = identity
        self._banking = banking
        self.issuer = issuer
        self.signing_key = jose.bank_signing_key(signing_master_key)
        self._passwords = passwords or identity.passwords
        # The resource APIs and webhooks, on this service's consents, tokens and audit.
        self.accounts = AccountInformation(self)
        self.payments = PaymentInitiation(self)
        self.notifications = EventNotifications(self)

    @property
    def trust_anchor(self) -> str:
        """The ``http://openbanking.org.uk/tan`` of message signatures: this bank's host name."""
        return urlsplit(self.issuer).hostname or self.issuer

    # -- endpoints ----------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.issuer + path

    def now(self) -> datetime:
        return self._clock.now()

    async def client_jwks(self, client_id: str) -> dict[str, Any] | None:
        """The public keys a partner registered (None for a sandbox app that uses a client secret)."""
        async with self._db.connect() as conn:
            client = await self._load_client(conn, client_id)
        return None if client is None else client.jwks

    @property
    def token_endpoint(self) -> str:
        return self.url("/oauth2/token")

    def _audiences(self) -> list[str]:
        """What a client assertion's ``aud`` may name: the issuer or any endpoint that authenticates clients."""
        return [
            self.issuer,
            *(self.url(p) for p in ("/oauth2/token", "/oauth2/par", "/oauth2/revoke", "/oauth2/introspect")),
        ]

    # -- partner apps (RFC 7591) -------------------------------------------------------------------

    async def register_client(
        self,
        metadata: Any,
        client_info: ClientInfo,
        *,
        environment: Environment = Environment.SANDBOX,
        registered_by: Principal | None = None,
    ) -> Registration:
        """Register a partner app. Production apps are registered by bank staff (the developer
        portal); the open registration endpoint makes sandbox apps only."""
        if environment is Environment.PRODUCTION and (
            registered_by is None or StaffRole.ADMIN not in registered_by.roles
        ):
            raise DomainError(ErrorCode.FORBIDDEN, "production apps are registered by the bank's staff")
        if not isinstance(metadata, dict):
            raise InvalidClientMetadataError(description="the body must be a JSON object of client metadata")
        name = metadata.get("client_name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise InvalidClientMetadataError(description="client_name is required (at most 200 characters)")
        uris = metadata.get("redirect_uris", [])
        if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
            raise InvalidRedirectURIError(description="redirect_uris must list 1 to 10 URIs")
        for uri in uris:
            if not isinstance(uri, str) or (problem := redirect_uri_problem(uri)) is not None:
                raise InvalidRedirectURIError(description=f"redirect URI refused: {problem or 'not a string'}")
        try:  # Authlib's RFC 7591 checks of every registered field (URIs, contacts, ...)
            ClientMetadataClaims(metadata, {}).validate()
        except (JoseError, ValueError) as exc:
            raise InvalidClientMetadataError(description="the client metadata is not valid") from exc
        method_name = metadata.get("token_endpoint_auth_method", AuthMethod.PRIVATE_KEY_JWT.value)
        try:
            method = AuthMethod(method_name)
        except ValueError as exc:
            raise InvalidClientMetadataError(
                description="token_endpoint_auth_method must be private_key_jwt (or a client secret in the sandbox)"
            ) from exc
        if method is not AuthMethod.PRIVATE_KEY_JWT and environment is Environment.PRODUCTION:
            raise InvalidClientMetadataError(description="production apps authenticate with private_key_jwt")
        jwks: dict[str, Any] | None = None
        if method is AuthMethod.PRIVATE_KEY_JWT:
            if "jwks_uri" in metadata or "jwks" not in metadata:
                raise InvalidClientMetadataError(description="give the app's public keys inline as jwks")
            jose.client_key_set(metadata["jwks"])
            jwks = metadata["jwks"]
        grant_types = metadata.get("grant_types", ["authorization_code", "refresh_token", "client_credentials"])
        allowed = {"authorization_code", "refresh_token", "client_credentials"}
        if not isinstance(grant_types, list) or not grant_types or not set(grant_types) <= allowed:
            raise InvalidClientMetadataError(
                description="grant_types: authorization_code, refresh_token, client_credentials"
            )
        response_types = metadata.get("response_types", ["code"])
        if response_types != ["code"]:
            raise InvalidClientMetadataError(description='response_types must be ["code"]')
        scope = " ".join(scopes_of(metadata.get("scope") or "openid accounts payments fundsconfirmations"))
        if not set(scope.split()) <= SCOPES:
            raise InvalidClientMetadataError(description="scope: openid, accounts, payments, fundsconfirmations")
        notification_uri = metadata.get("event_notification_uri")
        if notification_uri is not None:
            problem = (
                notification_uri_problem(notification_uri, sandbox=environment is Environment.SANDBOX)
                if isinstance(notification_uri, str)
                else "not a string"
            )
            if problem is not None:
                raise InvalidClientMetadataError(description=f"event_notification_uri refused: {problem}")
        software_id = metadata.get("software_id")
        if software_id is not None and (not isinstance(software_id, str) or len(software_id) > 200):
            raise InvalidClientMetadataError(description="software_id must be a short string")
        secret = new_token("sbcs") if method is not AuthMethod.PRIVATE_KEY_JWT else None
        secret_hash = await asyncio.to_thread(self._passwords.hash, secret) if secret else None
        now = self._clock.now()
        client_id = f"sbc_{secrets.token_urlsafe(18)}"
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        f"""
                        INSERT INTO openbanking.clients (client_id, name, environment, auth_method, redirect_uris,
                               grant_types, scope, jwks, secret_hash, software_id, registered_by, created_at,
                               event_notification_uri)
                        VALUES (:client_id, :name, :environment, :method, :uris, :grants, :scope,
                                CAST(:jwks AS jsonb), :secret_hash, :software_id, :by, :now, :notification_uri)
                        RETURNING {_CLIENT_COLUMNS}
                        """
                    ),
                    {
                        "client_id": client_id,
                        "name": name.strip(),
                        "environment": environment.value,
                        "method": method.value,
                        "uris": uris,
                        "grants": sorted(set(grant_types)),
                        "scope": scope,
                        "jwks": json.dumps(jwks) if jwks is not None else None,
                        "secret_hash": secret_hash,
                        "software_id": software_id,
                        "notification_uri": notification_uri,
                        "by": registered_by.id if registered_by else None,
                        "now": now,
                    },
                )
            ).one()
            await self._audit(
                conn,
                "openbanking.client_registered",
                client_info,
                actor=registered_by,
                subject=("client", client_id),
                details={"environment": environment.value, "auth_method": method.value, "redirect_uris": uris},
            )
        return Registration(_client(row), secret)

    async def list_clients(self, principal: Principal, limit: int = MAX_CLIENTS_LISTED) -> list[Client]:
        self._require_admin(principal)
        async with self._db.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT {_CLIENT_COLUMNS} FROM openbanking.clients ORDER BY created_at DESC LIMIT :limit"),
                {"limit": limit},
            )
            return [_client(row) for row in rows]

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if StaffRole.ADMIN not in principal.roles:
            raise DomainError(ErrorCode.FORBIDDEN, "partner apps are managed by bank administrators")

    async def _load_client(self, conn: AsyncConnection, client_id: str | None) -> Client | None:
        if not client_id or len(client_id) > 64:
            return None
        row = (
            await conn.execute(
                text(f"SELECT {_CLIENT_COLUMNS} FROM openbanking.clients WHERE client_id = :id AND status = 'active'"),
                {"id": client_id},
            )
        ).first()
        return None if row is None else _client(row)

    async def authenticate_client(self, form: Mapping[str, list[str]], authorization: str | None) -> Client:
        """The client calling a back-channel endpoint (token, PAR, revocation, introspection).

        ``private_key_jwt`` (RFC 7523, each assertion once), or for sandbox clients a secret in the
        Basic header or the body. Anything else: ``invalid_client`` (401).
        """
        assertion_type = _one(form, "client_assertion_type")
        assertion = _one(form, "client_assertion")
        scheme, _, basic = (authorization or "").partition(" ")
        now = self._clock.now()
        if assertion_type is not None or assertion is not None:
            if assertion_type != jose.ASSERTION_TYPE or not assertion:
                raise InvalidClientError(status_code=401, description="unsupported client assertion")
            subject = jose.unverified_subject(assertion)
            named = _one(form, "client_id")
            if subject is None or (named is not None and named != subject):
                raise InvalidClientError(status_code=401, description="the client assertion does not name this client")
            async with self._db.transaction() as conn:
                client = await self._load_client(conn, subject)
                if client is None or client.auth_method is not AuthMethod.PRIVATE_KEY_JWT or client.jwks is None:
                    raise InvalidClientError(status_code=401, description="unknown client or method")
                claims = jose.verify_client_assertion(assertion, client.jwks, client.client_id, self._audiences(), now)
                # Spent assertions are kept until they expire; past that, the exp check refuses them.
                await conn.execute(
                    text("DELETE FROM openbanking.assertion_jtis WHERE client_id = :id AND expires_at < :now"),
                    {"id": client.client_id, "now": now},
                )
                fresh = (
                    await conn.execute(
                        text(
                            "INSERT INTO openbanking.assertion_jtis (client_id, jti, expires_at)"
                            " VALUES (:client_id, :jti, to_timestamp(:exp)) ON CONFLICT DO NOTHING RETURNING 1"
                        ),
                        {"client_id": client.client_id, "jti": claims["jti"], "exp": claims["exp"]},
                    )
                ).first()
            if fresh is None:
                raise InvalidClientError(status_code=401, description="this client assertion was already used")
            return client
        client_id: str | None
        secret: str | None
        method: AuthMethod
        if scheme.lower() == "basic" and basic:
            try:
                decoded = base64.b64decode(basic.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidClientError(status_code=401, description="malformed Basic credentials") from exc
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret, method = unquote(raw_id), unquote(raw_secret), AuthMethod.CLIENT_SECRET_BASIC
        else:
            client_id, secret, method = (
                _one(form, "client_id"),
                _one(form, "client_secret"),
                AuthMethod.CLIENT_SECRET_POST,
            )
        if not client_id or not secret or len(secret) > MAX_TOKEN_CHARS:
            raise InvalidClientError(status_code=401, description="client authentication is required")
        async with self._db.connect() as conn:
            client = await self._load_client(conn, client_id)
            stored = None
            if client is not None:
                stored = (
                    await conn.execute(
                        text("SELECT secret_hash FROM openbanking.clients WHERE client_id = :id"), {"id": client_id}
                    )
                ).scalar_one()
        if client is None or stored is None or client.auth_method is not method:
            await asyncio.to_thread(self._passwords.verify_dummy, secret)
            raise InvalidClientError(status_code=401, description="unknown client, wrong secret or wrong method")
        if client.environment is not Environment.SANDBOX or not await asyncio.to_thread(
            self._passwords.verify, stored, secret
        ):
            raise InvalidClientError(status_code=401, description="unknown client, wrong secret or wrong method")
        return client

    # -- account-access consents (OBIE v4.0) -----------------------------------------------------------

    async def create_account_access_consent(self, ctx: AccessContext, body: Any, client_info: ClientInfo) -> Consent:
        self._require_client_credentials(ctx)
        if not isinstance(body, dict):
            raise OBError(400, OBErrorCode.INVALID_FORMAT, "the body must be an OBReadConsent1 object")
        data, risk = body.get("Data"), body.get("Risk")
        if not isinstance(data, dict):
            raise OBError(400, OBErrorCode.FIELD_MISSING, "Data is required", "Data")
        if not isinstance(risk, dict):
            raise OBError(400, OBErrorCode.FIELD_MISSING, "Risk is required", "Risk")
        unexpected = sorted(
            set(data) - {"Permissions", "ExpirationDateTime", "TransactionFromDateTime", "TransactionToDateTime"}
        )
        if unexpected:
            raise OBError(400, OBErrorCode.FIELD_UNEXPECTED, "unexpected field", f"Data.{unexpected[0]}"[:500])
        permissions = data.get("Permissions")
        if permissions is None:
            raise OBError(400, OBErrorCode.FIELD_MISSING, "Permissions is required", "Data.Permissions")
        if (
            not isinstance(permissions, list)
            or not all(isinstance(p, str) for p in permissions)
            or len(permissions) > 30
        ):
            raise OBError(400, OBErrorCode.FIELD_INVALID, "Permissions must be a list of codes", "Data.Permissions")
        if problems := permission_problems(permissions):
            raise OBError(400, OBErrorCode.FIELD_INVALID, "; ".join(problems), "Data.Permissions")
        now = self._clock.now()
        expires_at = _parse_time(data.get("ExpirationDateTime"), "Data.ExpirationDateTime")
        from_ = _parse_time(data.get("TransactionFromDateTime"), "Data.TransactionFromDateTime")
        to = _parse_time(data.get("TransactionToDateTime"), "Data.TransactionToDateTime")
        if window := consent_window_problems(now, expires_at, from_, to):
            path, problem = window[0]
            raise OBError(400, OBErrorCode.FIELD_INVALID_DATE, problem, path)
        consent_id = f"aac-{new_id()}"
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        f"""
                        INSERT INTO openbanking.consents (id, client_id, kind, status, permissions, expires_at,
                               transaction_from, transaction_to, created_at, status_updated_at)
                        VALUES (:id, :client_id, 'account_access', 'AWAU', :permissions, :expires_at, :from_, :to,
                                :now, :now)
                        RETURNING {_CONSENT_COLUMNS}
                        """
                    ),
                    {
                        "id": consent_id,
                        "client_id": ctx.client_id,
                        "permissions": [AccountPermission(p).value for p in permissions],
                        "expires_at": expires_at,
                        "from_": from_,
                        "to": to,
                        "now": now,
                    },
                )
            ).one()
            await self._audit(
                conn,
                "openbanking.consent_created",
                client_info,
                actor_client=ctx.client_id,
                subject=("consent", consent_id),
                details={"permissions": permissions},
            )
        return _consent(row, now)

    @staticmethod
    def _require_client_credentials(ctx: AccessContext, scope: str = "accounts") -> None:
        if ctx.grant_type != "client_credentials" or scope not in ctx.scope.split():
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, f"use a client-credentials token with the {scope} scope")

    async def _client_consent(
        self,
        conn: AsyncConnection,
        ctx: AccessContext,
        consent_id: str,
        kind: ConsentKind = ConsentKind.ACCOUNT_ACCESS,
        *,
        lock: bool = True,
    ) -> Any:
        row = (
            await conn.execute(
                text(
                    f"SELECT {_CONSENT_COLUMNS} FROM openbanking.consents WHERE id = :id"
                    + (" FOR UPDATE" if lock else "")
                ),
                {"id": consent_id[:128]},
            )
        ).first()
        if row is None or row.client_id != ctx.client_id or row.kind != kind.value:
            raise OBError(404, OBErrorCode.NOT_FOUND, f"no such {kind.value.replace('_', '-')} consent", "ConsentId")
        return row

    async def get_account_access_consent(self, ctx: AccessContext, consent_id: str) -> Consent:
        self._require_client_credentials(ctx)
        async with self._db.transaction() as conn:
            return _consent(await self._client_consent(conn, ctx, consent_id), self._clock.now())

    async def delete_account_access_consent(self, ctx: AccessContext, consent_id: str, client_info: ClientInfo) -> None:
        """The partner withdraws a consent: it becomes CANC and every token bound to it stops working."""
        self._require_client_credentials(ctx)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._client_consent(conn, ctx, consent_id)
            await self._cancel(conn, row.id, now)
            await self._audit(
                conn,
                "openbanking.consent_revoked",
                client_info,
                actor_client=ctx.client_id,
                subject=("consent", row.id),
                details={"by": "partner", "previous_status": row.status},
            )

    async def _cancel(self, conn: AsyncConnection, consent_id: str, now: datetime) -> int:
        cancelled = (
            await conn.execute(
                text(
                    "UPDATE openbanking.consents SET status = 'CANC', status_updated_at = :now"
                    " WHERE id = :id AND status IN ('AWAU', 'AUTH') RETURNING client_id, kind"
                ),
                {"id": consent_id, "now": now},
            )
        ).first()
        if cancelled is not None:  # the partner hears of it (event notification) after commit
            path = _CONSENT_PATHS[ConsentKind(cancelled.kind)]
            await events.resource_updated(
                conn, cancelled.client_id, path.rsplit("/", 1)[-1][:-1], consent_id, self.url(f"{path}/{consent_id}")
            )
        revoked = await conn.execute(
            text("UPDATE openbanking.tokens SET revoked_at = :now WHERE consent_id = :id AND revoked_at IS NULL"),
            {"id": consent_id, "now": now},
        )
        return int(getattr(revoked, "rowcount", 0) or 0)

    # -- authorization requests: PAR (RFC 9126) and the front channel ----------------------------------

    def _check_request(self, client: Client, params: Mapping[str, list[str]]) -> dict[str, Any]:
        """The checked parameters of an authorization request (pushed or not)."""
        redirect_uri = _one(params, "redirect_uri")
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            raise InvalidRequestError(description="redirect_uri does not match a registered one exactly")
        state = _one(params, "state")
        if state is not None and len(state) > MAX_STATE_CHARS:
            raise InvalidRequestError(description="state is too long", redirect_uri=redirect_uri)
        redirectable: dict[str, Any] = {"redirect_uri": redirect_uri, "state": state}
        if "authorization_code" not in client.grant_types:
            raise UnauthorizedClientError(description="this client may not use the code flow", **redirectable)
        if _one(params, "response_type") != "code":
            raise UnsupportedResponseTypeError(description="response_type must be code", **redirectable)
        method = _one(params, "code_challenge_method")
        challenge = _one(params, "code_challenge")
        if challenge is None:
            raise InvalidRequestError(description="PKCE is required: code_challenge with S256", **redirectable)
        if method != "S256":
            raise InvalidRequestError(description="code_challenge_method must be S256", **redirectable)
        if not CHALLENGE_PATTERN.match(challenge):
            raise InvalidRequestError(description="code_challenge is not an S256 challenge", **redirectable)
        scope = scopes_of(_one(params, "scope"))
        if not RESOURCE_SCOPES & set(scope) or not set(scope) <= set(client.scope.split()) | {"openid"}:
            raise InvalidScopeError(
                description="scope must include accounts, payments or fundsconfirmations", **redirectable
            )
        consent_id = _one(params, "openbanking_intent_id")
        if not consent_id or len(consent_id) > 128:
            raise InvalidRequestError(description="openbanking_intent_id names the consent", **redirectable)
        return {**redirectable, "code_challenge": challenge, "scope": " ".join(scope), "consent_id": consent_id}

    async def _awaiting_consent(self, conn: AsyncConnection, client: Client, checked: dict[str, Any]) -> None:
        row = (
            await conn.execute(
                text("SELECT client_id, kind, status, expires_at FROM openbanking.consents WHERE id = :id"),
                {"id": checked["consent_id"]},
            )
        ).first()
        if row is None or row.client_id != client.client_id:
            raise InvalidRequestError(
                description="unknown openbanking_intent_id",
                redirect_uri=checked["redirect_uri"],
                state=checked["state"],
            )
        if ConsentKind(row.kind).scope not in checked["scope"].split():
            raise InvalidScopeError(
                description=f"scope must include {ConsentKind(row.kind).scope} for this consent",
                redirect_uri=checked["redirect_uri"],
                state=checked["state"],
            )
        if (
            status_now(ConsentStatus(row.status), row.expires_at, self._clock.now())
            is not ConsentStatus.AWAITING_AUTHORISATION
        ):
            raise InvalidRequestError(
                description="the consent is not awaiting authorisation",
                redirect_uri=checked["redirect_uri"],
                state=checked["state"],
            )

    async def _insert_request(
        self, conn: AsyncConnection, client: Client, checked: dict[str, Any], *, pushed: bool, request_uri: str | None
    ) -> tuple[uuid.UUID, datetime]:
        now = self._clock.now()
        request_id = uuid.uuid4()  # a capability in the consent screen's URL: fully random
        expires_at = now + (PAR_TTL if pushed else INTERACTION_TTL)
        await conn.execute(
            text(
                """
                INSERT INTO openbanking.authorization_requests (id, request_uri_hash, client_id, consent_id,
                       redirect_uri, scope, state, code_challenge, pushed, created_at, expires_at)
                VALUES (:id, :uri_hash, :client_id, :consent_id, :redirect_uri, :scope, :state, :challenge, :pushed,
                        :now, :expires_at)
                """
            ),
            {
                "id": request_id,
                "uri_hash": token_hash(request_uri) if request_uri else None,
                "client_id": client.client_id,
                "consent_id": checked["consent_id"],
                "redirect_uri": checked["redirect_uri"],
                "scope": checked["scope"],
                "state": checked["state"],
                "challenge": checked["code_challenge"],
                "pushed": pushed,
                "now": now,
                "expires_at": expires_at,
            },
        )
        return request_id, expires_at

    async def push_authorization_request(self, client: Client, params: Mapping[str, list[str]]) -> tuple[str, int]:
        """RFC 9126: store a client-authenticated authorization request; answer its ``request_uri``."""
        if "request_uri" in params:
            raise InvalidRequestError(description="request_uri is not allowed in a pushed request")
        named = _one(params, "client_id")
        if named is not None and named != client.client_id:
            raise InvalidRequestError(description="client_id does not match the authenticated client")
        try:
            checked = self._check_request(client, params)
        except OAuth2Error as exc:  # the back channel answers errors; it never redirects
            exc.redirect_uri = None
            raise
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        async with self._db.transaction() as conn:
            try:
                await self._awaiting_consent(conn, client, checked)
            except OAuth2Error as exc:
                exc.redirect_uri = None
                raise
            await self._insert_request(conn, client, checked, pushed=True, request_uri=request_uri)
        return request_uri, int(PAR_TTL.total_seconds())

    async def authorize(self, params: Mapping[str, list[str]]) -> uuid.UUID:
        """The authorization endpoint: check the request and answer the id of the consent screen's
        interaction. Errors with ``redirect_uri`` set go back to the client; others are shown."""
        async with self._db.transaction() as conn:
            client = await self._load_client(conn, _one(params, "client_id"))
            if client is None:
                raise InvalidRequestError(description="unknown client_id")
            request_uri = _one(params, "request_uri")
            if request_uri is not None:
                return await self._pushed(conn, client, request_uri)
            if client.environment is Environment.PRODUCTION:
                redirect_uri = _one(params, "redirect_uri")
                redirectable = redirect_uri in client.redirect_uris
                raise InvalidRequestError(
                    description="this client must push its authorization requests (PAR)",
                    redirect_uri=redirect_uri if redirectable else None,
                    state=_one(params, "state") if redirectable else None,
                )
            checked = self._check_request(client, params)
            await self._awaiting_consent(conn, client, checked)
            request_id, _ = await self._insert_request(conn, client, checked, pushed=False, request_uri=None)
            return request_id

    async def _pushed(self, conn: AsyncConnection, client: Client, request_uri: str) -> uuid.UUID:
        now = self._clock.now()
        row = (
            await conn.execute(
                text(
                    """
                    UPDATE openbanking.authorization_requests
                    SET request_uri_hash = NULL, expires_at = :interaction_until
                    WHERE request_uri_hash = :hash AND client_id = :client_id AND expires_at > :now
                    RETURNING id
                    """
                ),
                {
                    "hash": token_hash(request_uri[:MAX_TOKEN_CHARS]),
                    "client_id": client.client_id,
                    "now": now,
                    "interaction_until": now + INTERACTION_TTL,
                },
            )
        ).first()
        if row is None:  # unknown, another client's, expired or already used: request_uri is single-use
            raise InvalidRequestError(description="request_uri is unknown, expired or used")
        request_id: uuid.UUID = row.id
        return request_id

    # -- the customer's decision ----------------------------------------------------------------------

    async def _request_for(self, conn: AsyncConnection, principal: Principal, request_id: uuid.UUID) -> Any:
        if not principal.is_customer:
            raise DomainError(ErrorCode.FORBIDDEN, "only customers grant consents")
        row = (
            await conn.execute(
                text(
                    """
                    SELECT id, client_id, consent_id, redirect_uri, scope, state, code_challenge, expires_at,
                           customer_id, decided_at, request_uri_hash
                    FROM openbanking.authorization_requests WHERE id = :id FOR UPDATE
                    """
                ),
                {"id": request_id},
            )
        ).first()
        now = self._clock.now()
        if (
            row is None
            or row.request_uri_hash is not None  # pushed but never sent to the authorization endpoint
            or row.decided_at is not None
            or row.expires_at <= now
            or (row.customer_id is not None and row.customer_id != principal.id)
        ):
            raise DomainError(ErrorCode.NOT_FOUND, "no such authorization request, or it has expired")
        if row.customer_id is None:  # the first customer to open it owns it
            await conn.execute(
                text("UPDATE openbanking.authorization_requests SET customer_id = :cid WHERE id = :id"),
                {"cid": principal.id, "id": request_id},
            )
        return row

    async def authorization_view(self, principal: Principal, request_id: uuid.UUID) -> AuthorizationView:
        async with self._db.transaction() as conn:
            row = await self._request_for(conn, principal, request_id)
            client = await self._load_client(conn, row.client_id)
            consent = (
                await conn.execute(
                    text(f"SELECT {_CONSENT_COLUMNS} FROM openbanking.consents WHERE id = :id"),
                    {"id": row.consent_id},
                )
            ).one()
        if client is None:
            raise DomainError(ErrorCode.NOT_FOUND, "this app is no longer registered")
        return AuthorizationView(request_id, client, _consent(consent, self._clock.now()), row.expires_at)

    async def decide(
        self,
        principal: Principal,
        request_id: uuid.UUID,
        *,
        approve: bool,
        account_ids: list[uuid.UUID],
        mfa_code: str,
        client_info: ClientInfo,
    ) -> str:
        """Approve (with a fresh MFA code and the accounts chosen) or reject; answers the URL the
        browser goes back to the app with (``code`` or ``error``, ``state`` and ``iss``, RFC 9207)."""
        payee_id: uuid.UUID | None = None
        to_account_id: uuid.UUID | None = None
        if approve:
            pending = (await self.authorization_view(principal, request_id)).consent
            if not account_ids:
                raise DomainError(ErrorCode.VALIDATION_ERROR, "choose at least one account", field="accounts")
            owned = {a.id: a for a in await self._banking.list_accounts(principal, principal.id) if a.status == "open"}
            if not set(account_ids) <= owned.keys():
                raise DomainError(ErrorCode.NOT_FOUND, "no such account")
            if pending.kind is not ConsentKind.ACCOUNT_ACCESS:
                # A payment is paid from, and a funds check reads, exactly one account.
                if len(set(account_ids)) != 1:
                    raise DomainError(ErrorCode.VALIDATION_ERROR, "choose one account", field="accounts")
                if self.payments.payer_problem(pending, owned[account_ids[0]]) is not None:
                    raise DomainError(ErrorCode.VALIDATION_ERROR, "this account cannot be used here", field="accounts")
            # A fresh TOTP or recovery code, as the identity service's step-up checks it (and audits it).
            await self._identity.step_up(principal, mfa_code, client_info)
            if pending.kind is ConsentKind.DOMESTIC_PAYMENT:
                payee_id, to_account_id = await self.payments.resolve_creditor(principal, pending, client_info)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._request_for(conn, principal, request_id)
            consent = (
                await conn.execute(
                    text(f"SELECT {_CONSENT_COLUMNS} FROM openbanking.consents WHERE id = :id FOR UPDATE"),
                    {"id": row.consent_id},
                )
            ).one()
            if (
                status_now(ConsentStatus(consent.status), consent.expires_at, now)
                is not ConsentStatus.AWAITING_AUTHORISATION
            ):
                raise DomainError(ErrorCode.CONFLICT, "this consent is no longer awaiting a decision")
            await conn.execute(
                text("UPDATE openbanking.authorization_requests SET decided_at = :now WHERE id = :id"),
                {"now": now, "id": request_id},
            )
            params: dict[str, str]
            if approve:
                await conn.execute(
                    text(
                        "UPDATE openbanking.consents SET status = 'AUTH', status_updated_at = :now,"
                        " authorised_at = :now, customer_id = :cid, account_ids = :accounts, payee_id = :payee,"
                        " to_account_id = :to_account WHERE id = :id"
                    ),
                    {
                        "now": now,
                        "cid": principal.id,
                        "accounts": sorted(set(account_ids)),
                        "payee": payee_id,
                        "to_account": to_account_id,
                        "id": consent.id,
                    },
                )
                code = new_token("sbac")
                await conn.execute(
                    text(
                        """
                        INSERT INTO openbanking.authorization_codes (code_hash, grant_id, request_id, client_id,
                               consent_id, customer_id, redirect_uri, code_challenge, scope, issued_at, expires_at)
                        VALUES (:hash, :grant_id, :request_id, :client_id, :consent_id, :customer_id, :redirect_uri,
                                :challenge, :scope, :now, :expires_at)
                        """
                    ),
                    {
                        "hash": token_hash(code),
                        "grant_id": uuid.uuid4(),
                        "request_id": request_id,
                        "client_id": row.client_id,
                        "consent_id": consent.id,
                        "customer_id": principal.id,
                        "redirect_uri": row.redirect_uri,
                        "challenge": row.code_challenge,
                        "scope": row.scope,
                        "now": now,
                        "expires_at": now + CODE_TTL,
                    },
                )
                params = {"code": code}
            else:
                await conn.execute(
                    text(
                        "UPDATE openbanking.consents SET status = 'RJCT', status_updated_at = :now, customer_id = :cid"
                        " WHERE id = :id"
                    ),
                    {"now": now, "cid": principal.id, "id": consent.id},
                )
                params = {"error": AccessDeniedError.error, "error_description": "the customer declined"}
            await self._audit(
                conn,
                "openbanking.consent_granted" if approve else "openbanking.consent_rejected",
                client_info,
                actor=principal,
                subject=("consent", consent.id),
                details={"client_id": row.client_id, "accounts": [str(a) for a in sorted(set(account_ids))]}
                if approve
                else {"client_id": row.client_id},
            )
        if row.state is not None:
            params["state"] = row.state
        params["iss"] = self.issuer
        redirect_uri = str(row.redirect_uri)
        return redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(params)

    # -- the token endpoint ---------------------------------------------------------------------------

    async def token(self, client: Client, form: Mapping[str, list[str]], client_info: ClientInfo) -> dict[str, Any]:
        grant_type = _one(form, "grant_type")
        if grant_type is None:
            raise InvalidRequestError(description="grant_type is required")
        if grant_type == "authorization_code" and "authorization_code" in client.grant_types:
            return await self._code_grant(client, form, client_info)
        if grant_type == "refresh_token" and "refresh_token" in client.grant_types:
            return await self._refresh_grant(client, form, client_info)
        if grant_type == "client_credentials" and "client_credentials" in client.grant_types:
            return await self._client_credentials(client, form, client_info)
        if grant_type in {"authorization_code", "refresh_token", "client_credentials"}:
            raise UnauthorizedClientError(description="this client may not use this grant type")
        raise UnsupportedGrantTypeError(description="unsupported grant_type")

    async def _issue(
        self,
        conn: AsyncConnection,
        *,
        kind: str,
        grant_id: uuid.UUID,
        grant_type: str,
        client_id: str,
        consent_id: str | None,
        customer_id: uuid.UUID | None,
        scope: str,
        now: datetime,
    ) -> str:
        token = new_token("sbat" if kind == "access" else "sbrt")
        await conn.execute(
            text(
                """
                INSERT INTO openbanking.tokens (token_hash, kind, grant_id, grant_type, client_id, consent_id,
                       customer_id, scope, issued_at, expires_at)
                VALUES (:hash, :kind, :grant_id, :grant_type, :client_id, :consent_id, :customer_id, :scope, :now,
                        :expires_at)
                """
            ),
            {
                "hash": token_hash(token),
                "kind": kind,
                "grant_id": grant_id,
                "grant_type": grant_type,
                "client_id": client_id,
                "consent_id": consent_id,
                "customer_id": customer_id,
                "scope": scope,
                "now": now,
                "expires_at": now + (ACCESS_TOKEN_TTL if kind == "access" else REFRESH_TOKEN_TTL),
            },
        )
        return token

    async def _revoke_grant(self, conn: AsyncConnection, grant_id: uuid.UUID, now: datetime) -> int:
        result = await conn.execute(
            text("UPDATE openbanking.tokens SET revoked_at = :now WHERE grant_id = :id AND revoked_at IS NULL"),
            {"now": now, "id": grant_id},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def _replayed(
        self, conn: AsyncConnection, action: str, row: Any, client_info: ClientInfo, now: datetime
    ) -> None:
        """A spent code or refresh token presented again: someone else may hold it, so the whole
        grant is revoked, and the attempt is audited (committed before the refusal is raised)."""
        revoked = await self._revoke_grant(conn, row.grant_id, now)
        await self._audit(
            conn,
            action,
            client_info,
            outcome=Outcome.DENIED,
            actor_client=row.client_id,
            subject=("consent", row.consent_id),
            details={"tokens_revoked": revoked},
        )

    async def _consent_authorised(self, conn: AsyncConnection, consent_id: str, now: datetime) -> bool:
        row = (
            await conn.execute(
                text("SELECT status, expires_at FROM openbanking.consents WHERE id = :id"), {"id": consent_id}
            )
        ).first()
        return (
            row is not None and status_now(ConsentStatus(row.status), row.expires_at, now) is ConsentStatus.AUTHORISED
        )

    async def _code_grant(
        self, client: Client, form: Mapping[str, list[str]], client_info: ClientInfo
    ) -> dict[str, Any]:
        code = _one(form, "code")
        verifier = _one(form, "code_verifier")
        redirect_uri = _one(form, "redirect_uri")
        if not code or len(code) > MAX_TOKEN_CHARS:
            raise InvalidRequestError(description="code is required")
        if not verifier:
            raise InvalidRequestError(description="code_verifier is required (PKCE)")
        now = self._clock.now()
        failure: OAuth2Error | None = None
        response: dict[str, Any] | None = None
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT grant_id, client_id, consent_id, customer_id, redirect_uri, code_challenge, scope,
                               expires_at, used_at
                        FROM openbanking.authorization_codes WHERE code_hash = :hash FOR UPDATE
                        """
                    ),
                    {"hash": token_hash(code)},
                )
            ).first()
            if row is None or row.client_id != client.client_id:
                failure = InvalidGrantError(description="the code is not valid")
            elif row.used_at is not None:
                await self._replayed(conn, "openbanking.code_replayed", row, client_info, now)
                failure = InvalidGrantError(description="the code was already used: its tokens are revoked")
            elif row.expires_at <= now:
                failure = InvalidGrantError(description="the code has expired")
            elif redirect_uri != row.redirect_uri:
                failure = InvalidGrantError(description="redirect_uri does not match the authorization request")
            elif not VERIFIER_PATTERN.match(verifier) or not compare_s256_code_challenge(verifier, row.code_challenge):
                failure = InvalidGrantError(description="code_verifier does not match the code challenge")
            elif not await self._consent_authorised(conn, row.consent_id, now):
                failure = InvalidGrantError(description="the consent is no longer authorised")
            else:
                await conn.execute(
                    text("UPDATE openbanking.authorization_codes SET used_at = :now WHERE code_hash = :hash"),
                    {"now": now, "hash": token_hash(code)},
                )
                response = await self._token_pair(conn, client, row, now, client_info)
            if failure is not None and row is not None and row.used_at is None and row.client_id == client.client_id:
                # A failed exchange uses the code up too: a code gets one try.
                await conn.execute(
                    text("UPDATE openbanking.authorization_codes SET used_at = :now WHERE code_hash = :hash"),
                    {"now": now, "hash": token_hash(code)},
                )
        if failure is not None:
            raise failure
        assert response is not None
        return response

    async def _token_pair(
        self, conn: AsyncConnection, client: Client, row: Any, now: datetime, client_info: ClientInfo
    ) -> dict[str, Any]:
        common = {
            "grant_id": row.grant_id,
            "grant_type": "authorization_code",
            "client_id": client.client_id,
            "consent_id": row.consent_id,
            "customer_id": row.customer_id,
            "scope": row.scope,
            "now": now,
        }
        access = await self._issue(conn, kind="access", **common)
        refresh = await self._issue(conn, kind="refresh", **common) if "refresh_token" in client.grant_types else None
        await self._audit(
            conn,
            "openbanking.tokens_issued",
            client_info,
            actor_client=client.client_id,
            subject=("consent", row.consent_id),
            details={"grant_id": str(row.grant_id), "refresh": refresh is not None},
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TOKEN_TTL.total_seconds()),
            "scope": row.scope,
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return body

    async def _refresh_grant(
        self, client: Client, form: Mapping[str, list[str]], client_info: ClientInfo
    ) -> dict[str, Any]:
        presented = _one(form, "refresh_token")
        if not presented or len(presented) > MAX_TOKEN_CHARS:
            raise InvalidRequestError(description="refresh_token is required")
        now = self._clock.now()
        failure: OAuth2Error | None = None
        response: dict[str, Any] | None = None
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT grant_id, client_id, consent_id, customer_id, scope, expires_at, used_at, revoked_at
                        FROM openbanking.tokens WHERE token_hash = :hash AND kind = 'refresh' FOR UPDATE
                        """
                    ),
                    {"hash": token_hash(presented)},
                )
            ).first()
            if row is None or row.client_id != client.client_id:
                failure = InvalidGrantError(description="the refresh token is not valid")
            elif row.used_at is not None:
                await self._replayed(conn, "openbanking.refresh_token_reused", row, client_info, now)
                failure = InvalidGrantError(description="the refresh token was already used: its grant is revoked")
            elif row.revoked_at is not None or row.expires_at <= now:
                failure = InvalidGrantError(description="the refresh token is not valid")
            elif not await self._consent_authorised(conn, row.consent_id, now):
                failure = InvalidGrantError(description="the consent is no longer authorised")
            else:
                await conn.execute(
                    text("UPDATE openbanking.tokens SET used_at = :now WHERE token_hash = :hash"),
                    {"now": now, "hash": token_hash(presented)},
                )
                response = await self._token_pair(conn, client, row, now, client_info)
        if failure is not None:
            raise failure
        assert response is not None
        return response

    async def _client_credentials(
        self, client: Client, form: Mapping[str, list[str]], client_info: ClientInfo
    ) -> dict[str, Any]:
        scope = scopes_of(_one(form, "scope") or "accounts")
        if not set(scope) <= set(client.scope.split()) | {"openid"}:
            raise InvalidScopeError(description="scope is not allowed for this client")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            grant_id = uuid.uuid4()
            access = await self._issue(
                conn,
                kind="access",
                grant_id=grant_id,
                grant_type="client_credentials",
                client_id=client.client_id,
                consent_id=None,
                customer_id=None,
                scope=" ".join(scope),
                now=now,
            )
            await self._audit(
                conn,
                "openbanking.tokens_issued",
                client_info,
                actor_client=client.client_id,
                subject=("client", client.client_id),
                details={"grant_id": str(grant_id), "grant_type": "client_credentials"},
            )
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TOKEN_TTL.total_seconds()),
            "scope": " ".join(scope),
        }

    # -- revocation (RFC 7009) and introspection (RFC 7662) -----------------------------------------------

    async def revoke(self, client: Client, form: Mapping[str, list[str]], client_info: ClientInfo) -> None:
        """Revoke a token of this client. A refresh token takes its whole grant with it. An unknown
        or foreign token is ignored (RFC 7009 §2.2: the answer is the same)."""
        presented = _one(form, "token")
        if not presented:
            raise InvalidRequestError(description="token is required")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT kind, grant_id, client_id, consent_id FROM openbanking.tokens"
                        " WHERE token_hash = :hash FOR UPDATE"
                    ),
                    {"hash": token_hash(presented[:MAX_TOKEN_CHARS])},
                )
            ).first()
            if row is None or row.client_id != client.client_id:
                return
            if row.kind == "refresh":
                revoked = await self._revoke_grant(conn, row.grant_id, now)
            else:
                result = await conn.execute(
                    text(
                        "UPDATE openbanking.tokens SET revoked_at = :now"
                        " WHERE token_hash = :hash AND revoked_at IS NULL"
                    ),
                    {"now": now, "hash": token_hash(presented)},
                )
                revoked = int(getattr(result, "rowcount", 0) or 0)
            await self._audit(
                conn,
                "openbanking.tokens_revoked",
                client_info,
                actor_client=client.client_id,
                subject=("consent", row.consent_id) if row.consent_id else ("client", client.client_id),
                details={"kind": row.kind, "tokens_revoked": revoked},
            )

    async def introspect(self, client: Client, form: Mapping[str, list[str]]) -> dict[str, Any]:
        presented = _one(form, "token")
        if not presented:
            raise InvalidRequestError(description="token is required")
        now = self._clock.now()
        async with self._db.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT kind, grant_type, client_id, consent_id, scope, issued_at, expires_at, revoked_at,"
                        " used_at FROM openbanking.tokens WHERE token_hash = :hash"
                    ),
                    {"hash": token_hash(presented[:MAX_TOKEN_CHARS])},
                )
            ).first()
            active = (
                row is not None
                and row.client_id == client.client_id
                and row.revoked_at is None
                and row.used_at is None
                and row.expires_at > now
                and (row.consent_id is None or await self._consent_authorised(conn, row.consent_id, now))
            )
        if not active:
            return {"active": False}
        assert row is not None
        body: dict[str, Any] = {
            "active": True,
            "client_id": row.client_id,
            "scope": row.scope,
            "token_type": "Bearer" if row.kind == "access" else "refresh_token",
            "iat": int(row.issued_at.timestamp()),
            "exp": int(row.expires_at.timestamp()),
            "iss": self.issuer,
        }
        if row.consent_id:
            body["openbanking_intent_id"] = row.consent_id
        return body

    async def authenticate_access_token(self, token: str) -> AccessContext | None:
        """The context of a live access token: not revoked, not expired, and for a customer grant,
        its consent still authorised (so revoking a consent stops its tokens at once)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        now = self._clock.now()
        async with self._db.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT t.grant_type, t.client_id, t.consent_id, t.customer_id, t.scope,
                               c.status AS consent_status, c.expires_at AS consent_expires_at, c.kind AS consent_kind
                        FROM openbanking.tokens t
                        JOIN openbanking.clients k ON k.client_id = t.client_id AND k.status = 'active'
                        LEFT JOIN openbanking.consents c ON c.id = t.consent_id
                        WHERE t.token_hash = :hash AND t.kind = 'access' AND t.revoked_at IS NULL
                          AND t.expires_at > :now
                        """
                    ),
                    {"hash": token_hash(token), "now": now},
                )
            ).first()
        if row is None:
            return None
        if row.consent_id is not None and status_now(
            ConsentStatus(row.consent_status), row.consent_expires_at, now
        ) not in (ConsentStatus.AUTHORISED, ConsentStatus.CONSUMED):
            return None
        kind = ConsentKind(row.consent_kind) if row.consent_kind else None
        return AccessContext(row.client_id, row.grant_type, row.scope, row.consent_id, row.customer_id, kind)

    # -- the customer's consents -------------------------------------------------------------------------

    async def customer_consents(self, principal: Principal, limit: int = MAX_CONSENTS_LISTED) -> list[CustomerConsent]:
        if not principal.is_customer:
            raise DomainError(ErrorCode.FORBIDDEN, "only customers have consents")
        now = self._clock.now()
        async with self._db.connect() as conn:
            rows = await conn.execute(
                text(
                    f"""
                    SELECT {", ".join("c." + c.strip() for c in _CONSENT_COLUMNS.split(","))}, k.name AS client_name
                    FROM openbanking.consents c JOIN openbanking.clients k ON k.client_id = c.client_id
                    WHERE c.customer_id = :cid AND c.status IN ('AUTH', 'COND', 'CANC', 'EXPD', 'RJCT')
                    ORDER BY c.created_at DESC LIMIT :limit
                    """
                ),
                {"cid": principal.id, "limit": limit},
            )
            return [CustomerConsent(_consent(row, now), row.client_name) for row in rows]

    async def revoke_by_customer(self, principal: Principal, consent_id: str, client_info: ClientInfo) -> None:
        """The customer withdraws a consent: CANC at once, and every token bound to it is revoked."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text("SELECT id, status, customer_id FROM openbanking.consents WHERE id = :id FOR UPDATE"),
                    {"id": consent_id[:128]},
                )
            ).first()
            if row is None or row.customer_id != principal.id or not principal.is_customer:
                raise DomainError(ErrorCode.NOT_FOUND, "no such consent")
            revoked = await self._cancel(conn, row.id, now)
            await self._audit(
                conn,
                "openbanking.consent_revoked",
                client_info,
                actor=principal,
                subject=("consent", row.id),
                details={"by": "customer", "previous_status": row.status, "tokens_revoked": revoked},
            )

    # -- metadata (RFC 8414) ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.url("/oauth2/authorize"),
            "token_endpoint": self.url("/oauth2/token"),
            "jwks_uri": self.url("/oauth2/jwks"),
            "registration_endpoint": self.url("/oauth2/register"),
            "pushed_authorization_request_endpoint": self.url("/oauth2/par"),
            "revocation_endpoint": self.url("/oauth2/revoke"),
            "introspection_endpoint": self.url("/oauth2/introspect"),
            "scopes_supported": sorted(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            "token_endpoint_auth_signing_alg_values_supported": ["PS256", "ES256"],
            "revocation_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            "introspection_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            "authorization_response_iss_parameter_supported": True,
            "require_pushed_authorization_requests": False,  # per client: production clients must push
        }

    # -- audit --------------------------------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        action: str,
        client_info: ClientInfo,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        actor: Principal | None = None,
        actor_client: str | None = None,
        subject: tuple[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        # A partner app is not a principal of the bank: the audit log's actor kinds have no place for
        # it, so it is recorded as anonymous with the authenticated client id in the details.
        extra = {"client_id": actor_client} if actor_client else {}
        await record(
            conn,
            AuditEvent(
                action=action,
                outcome=outcome,
                actor_kind=actor.kind.value if actor else "anonymous",
                actor_id=actor.id if actor else None,
                subject_type=subject[0] if subject else None,
                subject_id=subject[1] if subject else None,
                ip=client_info.ip,
                device=client_info.device,
                request_id=client_info.request_id,
                details={**extra, **(details or {})},
                occurred_at=self._clock.now(),
            ),
        )
