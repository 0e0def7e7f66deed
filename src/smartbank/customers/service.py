"""Customer use cases. One use case, one transaction; every one checks its caller.

Callers are :class:`~smartbank.identity.model.Principal` values. A customer reaches only their own
record (anything else is ``not_found``: they learn nothing); staff act through the permissions of
their roles (``customers:read``, ``kyc:decide``, ``tiers:set``) or are refused with ``forbidden``.
Registration creates the login through :class:`Logins`, which the identity service implements, in
the same transaction as the customer row.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Protocol

import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.customers import queries
from smartbank.customers.errors import CustomerErrorCode
from smartbank.customers.model import (
    DEFAULT_PAGE,
    DEFAULT_TIER,
    MAX_CODE_ATTEMPTS,
    MAX_SEARCH_CHARS,
    MAX_STARTS_PER_ADDRESS,
    PURGE_BATCH,
    RESEND_INTERVAL,
    START_WINDOW,
    VERIFICATION_RETENTION,
    VERIFICATION_TTL,
    Address,
    ContactKind,
    CustomerPage,
    CustomerProfile,
    IdType,
    KycDecision,
    KycStatus,
    KycSubmission,
    PaymentProfile,
    RequestInfo,
    Tier,
    Verification,
    VerificationPurpose,
    check_can_decide,
    check_can_submit,
    check_kyc,
    check_limit,
    check_reason,
    check_resend,
    check_terms,
    check_tier_code,
    check_usable,
    code_digest,
    code_matches,
    compact_id_number,
    decode_cursor,
    decode_queue_cursor,
    encode_cursor,
    encode_queue_cursor,
    id_number_digest,
    mask_contact,
    new_code,
    normalise_address,
    normalise_contact,
    normalise_phone,
    search_key,
)
from smartbank.identity.model import ClientInfo, Permission, Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.ids import new_id
from smartbank.kernel.invariants import invariant
from smartbank.platform.audit import AuditEvent, Outcome, record
from smartbank.platform.db import Database
from smartbank.platform.inbox import notify
from smartbank.platform.notify import Channel, Message, Notifier
from smartbank.platform.outbox import write_event
from smartbank.platform.settings import Settings

#: The keyed-hash key used when ``SMARTBANK_PII_KEY`` is unset outside production. Public: it
#: protects nothing, it only lets development and tests run without configuration.
DEVELOPMENT_PII_KEY: Final = b"smartbank-development-pii-key-not-a-secret"

TOPIC_REGISTERED: Final = "customers.registered"
TOPIC_KYC_VERIFIED: Final = "customers.kyc_verified"
TOPIC_TIER_CHANGED: Final = "customers.tier_changed"
CODE_TEMPLATE: Final = "customers.verification_code"


class Logins(Protocol):
    """What registration needs from the identity domain (its service implements this)."""

    async def create_login(
        self,
        conn: AsyncConnection,
        *,
        principal_id: uuid.UUID,
        kind: PrincipalKind,
        login: str,
        password: str,
        roles: frozenset[StaffRole] = frozenset(),
    ) -> None:
        """Create the principal and its password inside the caller's transaction; raises DomainError
        with code ``login_taken`` (409) or ``weak_password`` (422)."""
        ...

    async def reset_password(
        self, conn: AsyncConnection, *, principal_id: uuid.UUID, password: str, client: ClientInfo
    ) -> None:
        """Set a new password inside the caller's transaction, ending every session of the login and
        clearing its lockout; raises DomainError ``weak_password`` (422)."""
        ...


def pii_key_from(settings: Settings) -> bytes:
    """The key of keyed hashes: ``SMARTBANK_PII_KEY``; production refuses to run without one."""
    if settings.pii_key is not None:
        return settings.pii_key.get_secret_value().encode()
    if settings.env == "production":
        raise RuntimeError("SMARTBANK_PII_KEY must be set in production (32 characters or more)")
    return DEVELOPMENT_PII_KEY


@dataclass(frozen=True, slots=True)
class VerificationSent:
    """What the caller learns when a code is sent: never the code."""

    verification_id: uuid.UUID
    kind: ContactKind
    address_masked: str
    expires_at: datetime
    resend_after: datetime


# -- access --------------------------------------------------------------------------------------


def _forbidden() -> DomainError:
    return DomainError(ErrorCode.FORBIDDEN, "not allowed")


def _not_found() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, "not found")


def require_permission(principal: Principal, permission: Permission) -> None:
    """Staff actions: only staff whose roles grant ``permission``."""
    if not (principal.is_staff and principal.can(permission)):
        raise _forbidden()


def authorize_customer(principal: Principal, customer_id: uuid.UUID, permission: Permission | None) -> None:
    """The one access check for a customer's record: the customer themselves, or staff holding
    ``permission`` (``None``: the owner only). Another customer gets ``not_found``."""
    if principal.owns(customer_id):
        return
    if principal.is_staff and permission is not None and principal.can(permission):
        return
    if principal.is_customer:
        raise _not_found()
    raise _forbidden()


def _audit(principal: Principal, action: str, customer_id: uuid.UUID, details: dict[str, object]) -> AuditEvent:
    return AuditEvent(
        action=action,
        actor_kind=principal.kind.value,
        actor_id=principal.id,
        subject_type="customer",
        subject_id=str(customer_id),
        details=details,
    )


async def _record(
    request: RequestInfo | None, conn: AsyncConnection, event: AuditEvent, *, now: datetime | None = None
) -> None:
    """Append an audit row, with where the request came from when the caller knows it."""
    if request is not None:
        ip = request.ip
        if ip is not None:
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                ip = None  # the column is inet: an unparsable address is dropped, not a failed use case
        device = request.device[:300] if request.device else None
        request_id = request.request_id[:200] if request.request_id else None
        event = replace(event, ip=ip, device=device, request_id=request_id)
    await record(conn, event, now=now)


def _client(request: RequestInfo | None) -> ClientInfo:
    """The request's origin as identity's audit rows take it (an unparsable IP address is dropped)."""
    if request is None:
        return ClientInfo()
    ip = request.ip
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            ip = None
    return ClientInfo(ip=ip, device=request.device[:300] if request.device else None, request_id=request.request_id)


def _contact_kind(value: str) -> ContactKind:
    try:
        return ContactKind(value)
    except ValueError:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "kind is phone or email", field="kind") from None


def _channel(kind: ContactKind) -> Channel:
    return Channel.SMS if kind is ContactKind.PHONE else Channel.EMAIL


class CustomerService:
    def __init__(self, db: Database, clock: Clock, *, logins: Logins, notifier: Notifier, pii_key: bytes) -> None:
        invariant(len(pii_key) >= 32, "the PII key must be at least 32 bytes")
        self._db = db
        self._clock = clock
        self._logins = logins
        self._notifier = notifier
        self._key = pii_key

    # -- verification codes --------------------------------------------------------------------

    async def _record(self, request: RequestInfo | None, conn: AsyncConnection, event: AuditEvent) -> None:
        """Append an audit row dated by this service's clock, with where the request came from."""
        await _record(request, conn, event, now=self._clock.now())

    async def start_registration(
        self, kind: ContactKind, address: str, *, request: RequestInfo | None = None
    ) -> VerificationSent:
        """Send a 6-digit code to a phone or e-mail address; registration completes with it."""
        kind = _contact_kind(kind)
        normalised = normalise_contact(kind, address)
        async with self._db.transaction() as conn:
            return await self._start(conn, VerificationPurpose.REGISTRATION, kind, normalised, None, request)

    async def start_contact_change(
        self, principal: Principal, kind: ContactKind, address: str, *, request: RequestInfo | None = None
    ) -> VerificationSent:
        """A customer proves a new phone or e-mail address before it replaces the old one."""
        if not principal.is_customer:
            raise _forbidden()
        kind = _contact_kind(kind)
        normalised = normalise_contact(kind, address)
        async with self._db.transaction() as conn:
            if await queries.get_customer(conn, principal.id) is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            return await self._start(conn, VerificationPurpose.CONTACT_CHANGE, kind, normalised, principal.id, request)

    async def _start(
        self,
        conn: AsyncConnection,
        purpose: VerificationPurpose,
        kind: ContactKind,
        address: str,
        customer_id: uuid.UUID | None,
        request: RequestInfo | None,
        *,
        deliver: bool = True,
    ) -> VerificationSent:
        """Record a verification and send its code; with ``deliver`` false (a password reset for an
        address nobody has) the same row is written with a hash no code matches, and nothing is sent."""
        now = self._clock.now()
        # Serialise starts for one address so that the count below cannot be raced past.
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:a, 5))"), {"a": address})
        recent = (
            await conn.execute(
                text(
                    "SELECT count(*), min(created_at) FROM customers.verifications "
                    "WHERE address = :address AND created_at > :since"
                ),
                {"address": address, "since": now - START_WINDOW},
            )
        ).one()
        if recent[0] >= MAX_STARTS_PER_ADDRESS:
            retry = recent[1] + START_WINDOW - now
            raise DomainError(
                CustomerErrorCode.VERIFICATION_RATE_LIMITED,
                "too many codes sent to this address; try again later",
                retry_after_s=max(1, int(retry.total_seconds())),
            )
        verification_id = new_id()
        code = new_code()
        expires_at = now + VERIFICATION_TTL
        await conn.execute(
            text(
                """
                INSERT INTO customers.verifications (id, purpose, kind, address, customer_id, code_hash,
                                                     created_at, last_sent_at, expires_at)
                VALUES (:id, :purpose, :kind, :address, :customer_id, :code_hash, :now, :now, :expires_at)
                """
            ),
            {
                "id": verification_id,
                "purpose": purpose.value,
                "kind": kind.value,
                "address": address,
                "customer_id": customer_id,
                "code_hash": self._code_hash(verification_id, code, deliver),
                "now": now,
                "expires_at": expires_at,
            },
        )
        if deliver:
            await self._send_code(conn, kind, address, purpose, code)
        asker = customer_id if purpose is VerificationPurpose.CONTACT_CHANGE else None
        await self._record(
            request,
            conn,
            AuditEvent(
                action="customers.verification_started",
                actor_kind="customer" if asker else "anonymous",
                actor_id=asker,
                subject_type="verification",
                subject_id=str(verification_id),
                details={"purpose": purpose.value, "kind": kind.value, "address": mask_contact(kind, address)},
            ),
        )
        return VerificationSent(verification_id, kind, mask_contact(kind, address), expires_at, now + RESEND_INTERVAL)

    def _code_hash(self, verification_id: uuid.UUID, code: str, deliver: bool) -> bytes:
        """The stored hash of ``code``; for a code never sent, random bytes that no code can match."""
        return code_digest(self._key, verification_id, code) if deliver else secrets.token_bytes(32)

    async def _send_code(
        self, conn: AsyncConnection, kind: ContactKind, address: str, purpose: VerificationPurpose, code: str
    ) -> None:
        await self._notifier.send(
            conn,
            Message(
                channel=_channel(kind),
                recipient=address,
                template=CODE_TEMPLATE,
                params={"purpose": purpose.value, "expires_in_min": str(int(VERIFICATION_TTL.total_seconds() // 60))},
                secret_params={"code": code},
            ),
        )

    async def resend_code(
        self,
        verification_id: uuid.UUID,
        *,
        purpose: VerificationPurpose = VerificationPurpose.REGISTRATION,
        owner: uuid.UUID | None = None,
        request: RequestInfo | None = None,
    ) -> VerificationSent:
        """A fresh code for the same verification (the old one stops working), at most every minute
        and at most five times; the attempt count carries over. Only a verification of this purpose
        (and, for a contact change, of this customer) is found: a registration resend cannot be
        pointed at somebody's contact change."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            v = await queries.lock_verification(conn, verification_id)
            resetting = purpose is VerificationPurpose.PASSWORD_RESET
            if v is None or v.purpose != purpose or (not resetting and v.customer_id != owner):
                raise DomainError(CustomerErrorCode.VERIFICATION_NOT_FOUND, "no such verification")
            check_resend(v, now)
            deliver = not resetting or v.customer_id is not None
            asker = v.customer_id if purpose is VerificationPurpose.CONTACT_CHANGE else None
            code = new_code()
            expires_at = now + VERIFICATION_TTL
            await conn.execute(
                text(
                    "UPDATE customers.verifications SET code_hash = :code_hash, sends = sends + 1, "
                    "last_sent_at = :now, expires_at = :expires_at WHERE id = :id"
                ),
                {"id": v.id, "code_hash": self._code_hash(v.id, code, deliver), "now": now, "expires_at": expires_at},
            )
            if deliver:
                await self._send_code(conn, v.kind, v.address, v.purpose, code)
            await self._record(
                request,
                conn,
                AuditEvent(
                    action="customers.verification_resent",
                    actor_kind="customer" if asker else "anonymous",
                    actor_id=asker,
                    subject_type="verification",
                    subject_id=str(v.id),
                    details={"sends": v.sends + 1},
                ),
            )
        return VerificationSent(v.id, v.kind, mask_contact(v.kind, v.address), expires_at, now + RESEND_INTERVAL)

    async def _check_code(
        self,
        conn: AsyncConnection,
        verification_id: uuid.UUID,
        code: str,
        purpose: VerificationPurpose,
        request: RequestInfo | None,
        owner: uuid.UUID | None = None,
    ) -> tuple[Verification, DomainError | None]:
        """Lock the verification and check the code. A wrong code is counted (the caller commits
        the count, then raises the returned error)."""
        v = await queries.lock_verification(conn, verification_id)
        if v is None or v.purpose is not purpose or (owner is not None and v.customer_id != owner):
            raise DomainError(CustomerErrorCode.VERIFICATION_NOT_FOUND, "no such verification")
        check_usable(v, self._clock.now())
        if code_matches(self._key, v, code):
            return v, None
        attempts = v.attempts + 1
        await conn.execute(
            text("UPDATE customers.verifications SET attempts = :attempts WHERE id = :id"),
            {"id": v.id, "attempts": attempts},
        )
        await self._record(
            request,
            conn,
            AuditEvent(
                action="customers.verification_failed",
                outcome=Outcome.FAILURE,
                actor_kind="customer" if v.purpose is VerificationPurpose.CONTACT_CHANGE else "anonymous",
                actor_id=v.customer_id if v.purpose is VerificationPurpose.CONTACT_CHANGE else None,
                subject_type="verification",
                subject_id=str(v.id),
                details={"attempts": attempts},
            ),
        )
        return v, DomainError(
            CustomerErrorCode.VERIFICATION_CODE_INVALID,
            "the code is not right",
            attempts_left=MAX_CODE_ATTEMPTS - attempts,
        )

    async def _consume(self, conn: AsyncConnection, v: Verification, customer_id: uuid.UUID) -> None:
        await conn.execute(
            text("UPDATE customers.verifications SET consumed_at = :now, customer_id = :customer WHERE id = :id"),
            {"id": v.id, "now": self._clock.now(), "customer": customer_id},
        )

    # -- registration --------------------------------------------------------------------------

    async def complete_registration(
        self,
        verification_id: uuid.UUID,
        code: str,
        *,
        password: str,
        accepted_terms: bool,
        terms_version: str,
        request: RequestInfo | None = None,
    ) -> CustomerProfile:
        """Create the customer and their login from a verified phone or e-mail address."""
        version = check_terms(accepted_terms, terms_version)
        now = self._clock.now()
        profile: CustomerProfile | None = None
        async with self._db.transaction() as conn:
            v, wrong = await self._check_code(conn, verification_id, code, VerificationPurpose.REGISTRATION, request)
            if wrong is None:
                customer_id = new_id()
                column = "phone" if v.kind is ContactKind.PHONE else "email"
                inserted = (
                    await conn.execute(
                        text(
                            f"""
                            INSERT INTO customers.customers (id, {column}, terms_version, terms_accepted_at,
                                                             tier, created_at, updated_at)
                            VALUES (:id, :address, :terms, :now, :tier, :now, :now)
                            ON CONFLICT DO NOTHING RETURNING id
                            """
                        ),
                        {"id": customer_id, "address": v.address, "terms": version, "now": now, "tier": DEFAULT_TIER},
                    )
                ).first()
                if inserted is None:
                    raise DomainError(CustomerErrorCode.LOGIN_TAKEN, f"this {v.kind.value} is already registered")
                await self._logins.create_login(
                    conn, principal_id=customer_id, kind=PrincipalKind.CUSTOMER, login=v.address, password=password
                )
                await self._consume(conn, v, customer_id)
                await self._record(
                    request,
                    conn,
                    AuditEvent(
                        action="customers.registered",
                        actor_kind="customer",
                        actor_id=customer_id,
                        subject_type="customer",
                        subject_id=str(customer_id),
                        details={
                            "kind": v.kind.value,
                            "address": mask_contact(v.kind, v.address),
                            "terms_version": version,
                        },
                    ),
                )
                await write_event(
                    conn, TOPIC_REGISTERED, {"customer_id": str(customer_id), "registered_at": now.isoformat()}
                )
                profile = await queries.get_customer(conn, customer_id)
        if wrong is not None:
            raise wrong
        assert profile is not None
        return profile

    # -- a forgotten password ----------------------------------------------------------------------

    async def start_password_reset(
        self, kind: ContactKind, address: str, *, request: RequestInfo | None = None
    ) -> VerificationSent:
        """Send a code to a customer's phone or e-mail on file, to set a new password with.

        The answer is the same whether or not a customer has that address: a verification is
        recorded either way (with the same per-address limits), but a code is sent only to a
        customer's address."""
        kind = _contact_kind(kind)
        normalised = normalise_contact(kind, address)
        column = "phone" if kind is ContactKind.PHONE else "email"
        async with self._db.transaction() as conn:
            customer_id = (
                await conn.execute(
                    text(f"SELECT id FROM customers.customers WHERE {column} = :address"), {"address": normalised}
                )
            ).scalar_one_or_none()
            return await self._start(
                conn,
                VerificationPurpose.PASSWORD_RESET,
                kind,
                normalised,
                customer_id,
                request,
                deliver=customer_id is not None,
            )

    async def resend_password_reset_code(
        self, verification_id: uuid.UUID, *, request: RequestInfo | None = None
    ) -> VerificationSent:
        """A new code for a password reset, under the same rules as :meth:`resend_code`."""
        return await self.resend_code(verification_id, purpose=VerificationPurpose.PASSWORD_RESET, request=request)

    async def complete_password_reset(
        self, verification_id: uuid.UUID, code: str, *, new_password: str, request: RequestInfo | None = None
    ) -> None:
        """Check the code, then set the new password through identity (which ends every session of the
        login, clears its lockout and audits the reset), all in one transaction. A weak password is
        refused before anything is written, and the code stays usable."""
        async with self._db.transaction() as conn:
            v, wrong = await self._check_code(conn, verification_id, code, VerificationPurpose.PASSWORD_RESET, request)
            if wrong is None:
                invariant(v.customer_id is not None, "only a code that was sent can match")
                assert v.customer_id is not None
                await self._logins.reset_password(
                    conn, principal_id=v.customer_id, password=new_password, client=_client(request)
                )
                await self._consume(conn, v, v.customer_id)
        if wrong is not None:
            raise wrong

    async def confirm_contact_change(
        self, principal: Principal, verification_id: uuid.UUID, code: str, *, request: RequestInfo | None = None
    ) -> CustomerProfile:
        """Replace the customer's phone or e-mail with the address the verification proved.

        The identity login keeps the address it was created with; renaming a login is the identity
        domain's to offer."""
        if not principal.is_customer:
            raise _forbidden()
        now = self._clock.now()
        profile: CustomerProfile | None = None
        async with self._db.transaction() as conn:
            v, wrong = await self._check_code(
                conn, verification_id, code, VerificationPurpose.CONTACT_CHANGE, request, owner=principal.id
            )
            if wrong is None:
                column = "phone" if v.kind is ContactKind.PHONE else "email"
                before = await queries.get_customer(conn, principal.id, lock=True)
                if before is None:
                    raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            text(
                                f"UPDATE customers.customers SET {column} = :address, updated_at = :now WHERE id = :id"
                            ),
                            {"id": principal.id, "address": v.address, "now": now},
                        )
                except IntegrityError:
                    raise DomainError(
                        CustomerErrorCode.LOGIN_TAKEN, f"this {v.kind.value} belongs to another customer"
                    ) from None
                await self._consume(conn, v, principal.id)
                await self._record(
                    request,
                    conn,
                    _audit(
                        principal,
                        "customers.contact_changed",
                        principal.id,
                        {"kind": v.kind.value, "address": mask_contact(v.kind, v.address)},
                    ),
                )
                profile = await queries.get_customer(conn, principal.id)
        if wrong is not None:
            raise wrong
        assert profile is not None
        return profile

    # -- reads ---------------------------------------------------------------------------------

    async def get_me(self, principal: Principal) -> CustomerProfile:
        if not principal.is_customer:
            raise _forbidden()
        return await self.get_customer(principal, principal.id)

    async def get_customer(self, principal: Principal, customer_id: uuid.UUID) -> CustomerProfile:
        """A customer's profile (ID number masked): the customer themselves or staff with
        ``customers:read``."""
        authorize_customer(principal, customer_id, Permission.CUSTOMERS_READ)
        async with self._db.connect() as conn:
            profile = await queries.get_customer(conn, customer_id)
        if profile is None:
            raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
        return profile

    async def search(
        self,
        principal: Principal,
        *,
        name: str | None = None,
        phone: str | None = None,
        id_number: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> CustomerPage:
        """Staff search by exactly one of: name prefix (also pinyin of Chinese names), phone
        number, ID number (exact, any document type). Ordered by customer id, one page at a time."""
        require_permission(principal, Permission.CUSTOMERS_READ)
        check_limit(limit)
        given = [c for c in (name, phone, id_number) if c is not None]
        if len(given) != 1:
            raise DomainError(CustomerErrorCode.INVALID_SEARCH, "search by exactly one of name, phone or id_number")
        after = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as conn:
            if name is not None:
                key = search_key(name) if len(name) <= MAX_SEARCH_CHARS else ""
                if not key:
                    raise DomainError(
                        CustomerErrorCode.INVALID_SEARCH, f"name must be 1..{MAX_SEARCH_CHARS} characters", field="name"
                    )
                items = await queries.search_by_name(conn, key, after, limit + 1)
            elif phone is not None:
                items = await queries.search_by_phone(conn, normalise_phone(phone), after, limit + 1)
            else:
                assert id_number is not None
                number = compact_id_number(id_number[:40])
                hashes = [id_number_digest(self._key, t, number) for t in IdType]
                items = await queries.search_by_id_hashes(conn, hashes, after, limit + 1)
        next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
        return CustomerPage(items[:limit], next_cursor)

    async def kyc_queue(
        self, principal: Principal, *, cursor: str | None = None, limit: int = DEFAULT_PAGE
    ) -> CustomerPage:
        """Pending KYC profiles, oldest submission first, for staff with ``kyc:decide``."""
        require_permission(principal, Permission.KYC_DECIDE)
        check_limit(limit)
        after = decode_queue_cursor(cursor) if cursor else None
        async with self._db.connect() as conn:
            items = await queries.kyc_queue(conn, after, limit + 1)
        next_cursor = None
        if len(items) > limit:
            last = items[limit - 1]
            assert last.kyc_submitted_at is not None
            next_cursor = encode_queue_cursor(last.kyc_submitted_at, last.id)
        return CustomerPage(items[:limit], next_cursor)

    async def reveal_id_number(
        self, principal: Principal, customer_id: uuid.UUID, reason: str, *, request: RequestInfo | None = None
    ) -> str:
        """The full ID number, for a KYC reviewer comparing it with the document; audited with the
        reviewer's reason (the number itself is not written to the audit row)."""
        require_permission(principal, Permission.KYC_DECIDE)
        clean_reason = check_reason(reason)
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    text("SELECT id_number FROM customers.customers WHERE id = :id"), {"id": customer_id}
                )
            ).first()
            if row is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            if row.id_number is None:
                raise DomainError(CustomerErrorCode.KYC_PROFILE_MISSING, "the customer has not submitted a KYC profile")
            await self._record(
                request, conn, _audit(principal, "customers.id_number_revealed", customer_id, {"reason": clean_reason})
            )
        return str(row.id_number)

    async def purge_verifications(self, limit: int = PURGE_BATCH) -> int:
        """Delete up to ``limit`` verifications that expired more than a day ago. Returns how many."""
        cutoff = self._clock.now() - VERIFICATION_RETENTION
        async with self._db.transaction() as conn:
            result = await conn.execute(
                text(
                    """
                    DELETE FROM customers.verifications WHERE id IN (
                        SELECT id FROM customers.verifications WHERE expires_at < :cutoff
                         ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED)
                    """
                ),
                {"cutoff": cutoff, "limit": limit},
            )
        return int(result.rowcount)

    async def payment_profile(self, customer_id: uuid.UUID) -> PaymentProfile:
        """KYC status, tier and payment limits for the banking domain (a read; no caller check:
        banking checks its own caller first)."""
        async with self._db.connect() as conn:
            profile = await queries.payment_profile(conn, customer_id)
        if profile is None:
            raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer", id=str(customer_id))
        return profile

    async def tiers(self) -> list[Tier]:
        async with self._db.connect() as conn:
            return await queries.list_tiers(conn)

    # -- self-service changes ------------------------------------------------------------------

    async def update_address(
        self, principal: Principal, customer_id: uuid.UUID, address: Address, *, request: RequestInfo | None = None
    ) -> CustomerProfile:
        authorize_customer(principal, customer_id, None)
        clean = normalise_address(address)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            updated = (
                await conn.execute(
                    text(
                        "UPDATE customers.customers SET address = CAST(:address AS jsonb), updated_at = :now "
                        "WHERE id = :id RETURNING id"
                    ),
                    {"id": customer_id, "address": orjson.dumps(clean.to_json()).decode(), "now": now},
                )
            ).first()
            if updated is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            await self._record(
                request,
                conn,
                _audit(
                    principal,
                    "customers.address_changed",
                    customer_id,
                    {"country": clean.country, "region": clean.region, "city": clean.city},
                ),
            )
            profile = await queries.get_customer(conn, customer_id)
        assert profile is not None
        return profile

    # -- KYC -----------------------------------------------------------------------------------

    async def submit_kyc(
        self,
        principal: Principal,
        customer_id: uuid.UUID,
        submission: KycSubmission,
        *,
        request: RequestInfo | None = None,
    ) -> CustomerProfile:
        """The customer gives their legal identity; the profile waits for a staff decision."""
        authorize_customer(principal, customer_id, None)
        now = self._clock.now()
        checked = check_kyc(submission, now)
        id_hash = id_number_digest(self._key, checked.id_type, checked.id_number)
        async with self._db.transaction() as conn:
            current = await queries.get_customer(conn, customer_id, lock=True)
            if current is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            check_can_submit(current.kyc_status)
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        text(
                            """
                            UPDATE customers.customers
                               SET legal_name = :name, name_script = :script, date_of_birth = :dob,
                                   id_type = :id_type, id_number = :id_number, id_number_hash = :id_hash,
                                   address = CAST(:address AS jsonb), kyc_status = 'pending',
                                   kyc_submitted_at = :now, kyc_decided_at = NULL, kyc_decided_by = NULL,
                                   kyc_reason = NULL, updated_at = :now
                             WHERE id = :id
                            """
                        ),
                        {
                            "id": customer_id,
                            "name": checked.legal_name,
                            "script": checked.name_script.value,
                            "dob": checked.date_of_birth,
                            "id_type": checked.id_type.value,
                            "id_number": checked.id_number,
                            "id_hash": id_hash,
                            "address": orjson.dumps(checked.address.to_json()).decode(),
                            "now": now,
                        },
                    )
            except IntegrityError as exc:
                if "customers_id_number" not in str(exc.orig):
                    raise
                raise DomainError(
                    CustomerErrorCode.ID_NUMBER_IN_USE, "this identity document belongs to another customer"
                ) from None
            await conn.execute(text("DELETE FROM customers.name_keys WHERE customer_id = :id"), {"id": customer_id})
            await conn.execute(
                text(
                    "INSERT INTO customers.name_keys (customer_id, key) "
                    "SELECT :id, k FROM unnest(CAST(:keys AS text[])) AS k ON CONFLICT DO NOTHING"
                ),
                {"id": customer_id, "keys": checked.name_keys},
            )
            await self._record(
                request,
                conn,
                _audit(
                    principal,
                    "customers.kyc_submitted",
                    customer_id,
                    {"id_type": checked.id_type.value, "previous_status": current.kyc_status.value},
                ),
            )
            profile = await queries.get_customer(conn, customer_id)
        assert profile is not None
        return profile

    async def decide_kyc(
        self,
        principal: Principal,
        customer_id: uuid.UUID,
        decision: KycDecision,
        reason: str,
        *,
        request: RequestInfo | None = None,
    ) -> CustomerProfile:
        """Staff with ``kyc:decide`` verify or reject a pending profile, with a reason. Verifying
        writes ``customers.kyc_verified`` to the outbox in the same transaction."""
        require_permission(principal, Permission.KYC_DECIDE)
        try:
            decision = KycDecision(decision)
        except ValueError:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "decision is verify or reject", field="decision") from None
        clean_reason = check_reason(reason)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            current = await queries.get_customer(conn, customer_id, lock=True)
            if current is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            check_can_decide(current.kyc_status)
            status = decision.status
            await conn.execute(
                text(
                    "UPDATE customers.customers SET kyc_status = :status, kyc_decided_at = :now, "
                    "kyc_decided_by = :by, kyc_reason = :reason, updated_at = :now WHERE id = :id"
                ),
                {"id": customer_id, "status": status.value, "now": now, "by": principal.id, "reason": clean_reason},
            )
            await self._record(
                request, conn, _audit(principal, f"customers.kyc_{status.value}", customer_id, {"reason": clean_reason})
            )
            if status is KycStatus.VERIFIED:
                await write_event(
                    conn, TOPIC_KYC_VERIFIED, {"customer_id": str(customer_id), "verified_at": now.isoformat()}
                )
            # The customer learns the decision in their inbox; why it was rejected is on their KYC page.
            await notify(conn, customer_id, f"customers.kyc_{status.value}", {}, dedupe_key=f"kyc:{now}", at=now)
            profile = await queries.get_customer(conn, customer_id)
        assert profile is not None
        return profile

    # -- tiers ---------------------------------------------------------------------------------

    async def set_tier(
        self,
        principal: Principal,
        customer_id: uuid.UUID,
        tier: str,
        reason: str,
        *,
        request: RequestInfo | None = None,
    ) -> CustomerProfile:
        """Staff with ``tiers:set`` move a customer to another tier (and so other payment limits)."""
        require_permission(principal, Permission.TIERS_SET)
        code = check_tier_code(tier)
        clean_reason = check_reason(reason)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if await queries.get_tier(conn, code) is None:
                raise DomainError(CustomerErrorCode.UNKNOWN_TIER, "no such tier", tier=code)
            current = await queries.get_customer(conn, customer_id, lock=True)
            if current is None:
                raise DomainError(CustomerErrorCode.CUSTOMER_NOT_FOUND, "no such customer")
            if current.tier != code:
                await conn.execute(
                    text("UPDATE customers.customers SET tier = :tier, updated_at = :now WHERE id = :id"),
                    {"id": customer_id, "tier": code, "now": now},
                )
                await self._record(
                    request,
                    conn,
                    _audit(
                        principal,
                        "customers.tier_changed",
                        customer_id,
                        {"from": current.tier, "to": code, "reason": clean_reason},
                    ),
                )
                await write_event(
                    conn,
                    TOPIC_TIER_CHANGED,
                    {"customer_id": str(customer_id), "tier": code, "changed_at": now.isoformat()},
                )
            profile = await queries.get_customer(conn, customer_id)
        assert profile is not None
        return profile
