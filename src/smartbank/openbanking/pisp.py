"""Payment initiation (OBIE v4.0 PISP) and confirmation of funds (CBPII): payment and funds-confirmation
consents, domestic payments and funds checks.

A domestic payment is executed by banking's payment path (``BankingService.submit_payment``: limits,
the risk hook, the ledger, banking's own idempotency), on behalf of the customer who authorised the
consent with MFA on the consent screen; that authorisation is the payment's strong customer
authentication. A consent pays once. ``x-idempotency-key``: the same key and body answer the first
result; the same key with another body is refused; parallel duplicates make one payment.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.banking.model import (
    MAX_PAYEE_NAME,
    MAX_REFERENCE,
    AccountBalance,
    PaymentRequest,
    account_number_from_iban,
    check_account_number,
)
from smartbank.banking.model import PaymentStatus as BankingPaymentStatus
from smartbank.identity.model import ClientInfo, Principal, PrincipalKind
from smartbank.kernel.errors import DomainError
from smartbank.kernel.ids import new_id
from smartbank.kernel.money import Money
from smartbank.openbanking import events
from smartbank.openbanking.errors import OBError, OBErrorCode
from smartbank.openbanking.model import (
    ACCOUNT_SCHEMES,
    SCHEME_IBAN,
    ConsentKind,
    ConsentStatus,
    PaymentStatus,
    check_idempotency_key,
    status_now,
)
from smartbank.platform.logging import get_logger

if TYPE_CHECKING:
    from smartbank.openbanking.service import AccessContext, Consent, OpenBankingService

log = get_logger(__name__)

PISP: Final = "/open-banking/v4.0/pisp"
CBPII: Final = "/open-banking/v4.0/cbpii"
#: An unused payment consent (awaiting or authorised) expires after this long.
PAYMENT_CONSENT_TTL: Final = timedelta(days=1)
#: A replayed payment request waits this long for the first one to finish before answering as it stands.
REPLAY_WAIT_S: Final = 10.0
#: A payment still ``RCVD`` this long after it was written is driven by the recovery job (a crash).
RECOVERY_AFTER: Final = timedelta(seconds=60)
RECOVERY_BATCH: Final = 100
MAX_ID_CHARS: Final = 35

_PAYMENT_CONTEXT_CODES: Final = frozenset(
    {
        "BillingGoodsAndServicesInAdvance",
        "BillingGoodsAndServicesInArrears",
        "EcommerceMerchantInitiatedPayment",
        "FaceToFacePointOfSale",
        "TransferToSelf",
        "TransferToThirdParty",
    }
)
_BENEFICIARY_ACCOUNT_TYPES: Final = frozenset(
    {
        "Business",
        "BusinessSavingsAccount",
        "Charity",
        "Collection",
        "Corporate",
        "Ewallet",
        "Government",
        "Investment",
        "ISA",
        "JointPersonal",
        "Pension",
        "Personal",
        "PersonalSavingsAccount",
        "Premier",
        "Wealth",
    }
)


@dataclass(frozen=True, slots=True)
class AccountRef:
    """An account named by a partner (``OBCashAccount``): scheme, identification, name."""

    scheme: str
    identification: str
    name: str | None

    def body(self) -> dict[str, Any]:
        data = {"SchemeName": self.scheme, "Identification": self.identification}
        if self.name:
            data["Name"] = self.name
        return data


@dataclass(frozen=True, slots=True)
class Initiation:
    """The parts of a domestic payment ``Initiation`` this bank acts on (the rest is echoed as sent)."""

    amount: Money
    creditor: AccountRef
    debtor: AccountRef | None
    reference: str


@dataclass(frozen=True, slots=True)
class DomesticPayment:
    id: str
    consent_id: str
    status: str
    created_at: datetime
    status_updated_at: datetime
    refusal: dict[str, Any] | None
    banking_payment_id: uuid.UUID | None


def _bad(code: OBErrorCode, message: str, path: str) -> OBError:
    return OBError(400, code, message, path)


def _object(value: Any, path: str, *, required: bool = True) -> dict[str, Any] | None:
    if value is None:
        if required:
            raise _bad(OBErrorCode.FIELD_MISSING, f"{path.rsplit('.', 1)[-1]} is required", path)
        return None
    if not isinstance(value, dict):
        raise _bad(OBErrorCode.FIELD_INVALID, "expected an object", path)
    return value


def _text(value: Any, path: str, max_chars: int, *, required: bool = True, min_chars: int = 1) -> str | None:
    if value is None:
        if required:
            raise _bad(OBErrorCode.FIELD_MISSING, f"{path.rsplit('.', 1)[-1]} is required", path)
        return None
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars or not value.isprintable():
        raise _bad(OBErrorCode.FIELD_INVALID, f"expected {min_chars}-{max_chars} printable characters", path)
    return value


def _only(data: dict[str, Any], allowed: set[str], path: str) -> None:
    unexpected = sorted(set(data) - allowed)
    if unexpected:
        raise _bad(OBErrorCode.FIELD_UNEXPECTED, "not supported by this bank", f"{path}.{unexpected[0]}"[:500])


def _account(value: Any, path: str, *, required: bool, name_required: bool = False) -> AccountRef | None:
    data = _object(value, path, required=required)
    if data is None:
        return None
    _only(data, {"SchemeName", "Identification", "Name"}, path)
    scheme = _text(data.get("SchemeName"), f"{path}.SchemeName", 40)
    if scheme not in ACCOUNT_SCHEMES:
        raise _bad(OBErrorCode.UNSUPPORTED_SCHEME, "SchemeName: UK.OBIE.BBAN or UK.OBIE.IBAN", f"{path}.SchemeName")
    identification = _text(data.get("Identification"), f"{path}.Identification", 34)
    name = _text(data.get("Name"), f"{path}.Name", 350, required=name_required)
    assert scheme is not None and identification is not None
    return AccountRef(scheme, identification, name)


def _amount(value: Any, path: str) -> Money:
    data = _object(value, path)
    assert data is not None
    _only(data, {"Amount", "Currency"}, path)
    amount = _text(data.get("Amount"), f"{path}.Amount", 19)
    currency = _text(data.get("Currency"), f"{path}.Currency", 3, min_chars=3)
    assert amount is not None and currency is not None
    if not amount.replace(".", "", 1).isdigit() or not amount.isascii():
        raise _bad(OBErrorCode.FIELD_INVALID, "Amount is a decimal number such as 10.50", f"{path}.Amount")
    try:
        money = Money.parse(amount, currency)
    except DomainError as exc:
        raise _bad(
            OBErrorCode.UNSUPPORTED_CURRENCY if exc.code == "unknown_currency" else OBErrorCode.FIELD_INVALID,
            exc.message,
            path,
        ) from exc
    if money.amount_minor <= 0:
        raise _bad(OBErrorCode.FIELD_INVALID, "the amount must be positive", f"{path}.Amount")
    return money


def parse_initiation(value: Any, path: str = "Data.Initiation") -> Initiation:
    """The checked ``Initiation`` of a domestic payment (consent or payment request)."""
    data = _object(value, path)
    assert data is not None
    _only(
        data,
        {
            "InstructionIdentification",
            "EndToEndIdentification",
            "InstructedAmount",
            "DebtorAccount",
            "CreditorAccount",
            "RemittanceInformation",
        },
        path,
    )
    _text(data.get("InstructionIdentification"), f"{path}.InstructionIdentification", MAX_ID_CHARS)
    end_to_end = _text(data.get("EndToEndIdentification"), f"{path}.EndToEndIdentification", MAX_ID_CHARS)
    amount = _amount(data.get("InstructedAmount"), f"{path}.InstructedAmount")
    creditor = _account(data.get("CreditorAccount"), f"{path}.CreditorAccount", required=True, name_required=True)
    debtor = _account(data.get("DebtorAccount"), f"{path}.DebtorAccount", required=False)
    reference = end_to_end
    remittance = _object(data.get("RemittanceInformation"), f"{path}.RemittanceInformation", required=False)
    if remittance is not None:
        _only(remittance, {"Unstructured"}, f"{path}.RemittanceInformation")
        lines = remittance.get("Unstructured")
        upath = f"{path}.RemittanceInformation.Unstructured"
        if not isinstance(lines, list) or not 1 <= len(lines) <= 3:
            raise _bad(OBErrorCode.FIELD_INVALID, "Unstructured lists 1 to 3 lines", upath)
        reference = " ".join(_text(line, upath, 140) or "" for line in lines)
    assert creditor is not None and reference is not None
    return Initiation(amount, creditor, debtor, reference[:MAX_REFERENCE])


def parse_risk(value: Any) -> dict[str, Any]:
    data = _object(value, "Risk")
    assert data is not None
    _only(
        data,
        {
            "PaymentContextCode",
            "MerchantCategoryCode",
            "MerchantCustomerIdentification",
            "ContractPresentIndicator",
            "BeneficiaryPrepopulatedIndicator",
            "BeneficiaryAccountType",
        },
        "Risk",
    )
    if "PaymentContextCode" in data and data["PaymentContextCode"] not in _PAYMENT_CONTEXT_CODES:
        raise _bad(OBErrorCode.FIELD_INVALID, "unknown PaymentContextCode", "Risk.PaymentContextCode")
    if "BeneficiaryAccountType" in data and data["BeneficiaryAccountType"] not in _BENEFICIARY_ACCOUNT_TYPES:
        raise _bad(OBErrorCode.FIELD_INVALID, "unknown BeneficiaryAccountType", "Risk.BeneficiaryAccountType")
    _text(data.get("MerchantCategoryCode"), "Risk.MerchantCategoryCode", 4, required=False, min_chars=3)
    _text(data.get("MerchantCustomerIdentification"), "Risk.MerchantCustomerIdentification", 70, required=False)
    for flag in ("ContractPresentIndicator", "BeneficiaryPrepopulatedIndicator"):
        if flag in data and not isinstance(data[flag], bool):
            raise _bad(OBErrorCode.FIELD_INVALID, "expected true or false", f"Risk.{flag}")
    return data


def _top(body: Any, data_keys: set[str], *, risk: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad(OBErrorCode.INVALID_FORMAT, "the body must be a JSON object", "Data")
    _only(body, {"Data", "Risk"} if risk else {"Data"}, "")
    data = _object(body.get("Data"), "Data")
    assert data is not None
    _only(data, data_keys, "Data")
    return data


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def request_hash(body: Any) -> bytes:
    """The fingerprint of a request body for ``x-idempotency-key``: its JSON with keys sorted."""
    return hashlib.sha256(canonical(body)).digest()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def format_amount(amount_minor: int, currency: str) -> str:
    """An OBIE amount string (unsigned; the sign is the credit/debit indicator)."""
    return Money(abs(amount_minor), currency).format()


class PaymentInitiation:
    """The PISP and CBPII use cases, on the open-banking service's consents, tokens and audit."""

    def __init__(self, core: OpenBankingService) -> None:
        self._core = core
        self._db = core._db
        self._clock = core._clock
        self._banking = core._banking

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def customer(consent: Consent) -> Principal:
        """The customer who authorised ``consent``, as banking's caller. Their MFA on the consent screen
        (for exactly this payment) is the payment's strong customer authentication."""
        assert consent.customer_id is not None
        return Principal(consent.customer_id, PrincipalKind.CUSTOMER, mfa_verified_at=consent.authorised_at)

    @staticmethod
    def _require_grant(ctx: AccessContext, kind: ConsentKind) -> str:
        if ctx.grant_type != "authorization_code" or ctx.consent_kind is not kind or ctx.consent_id is None:
            raise OBError(
                403,
                OBErrorCode.CONSENT_MISMATCH,
                f"use the access token the customer granted for a {kind.value.replace('_', '-')} consent",
            )
        if kind.scope not in ctx.scope.split():
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, f"the token lacks the {kind.scope} scope")
        return ctx.consent_id

    async def _remembered(
        self, conn: AsyncConnection, ctx: AccessContext, operation: str, key: str, fingerprint: bytes
    ) -> str | None:
        row = (
            await conn.execute(
                text(
                    "SELECT request_hash, resource_id FROM openbanking.idempotency_keys"
                    " WHERE client_id = :client AND operation = :op AND key = :key"
                ),
                {"client": ctx.client_id, "op": operation, "key": key},
            )
        ).first()
        if row is None:
            return None
        if bytes(row.request_hash) != fingerprint:
            raise OBError(
                400,
                OBErrorCode.HEADER_INVALID,
                "this x-idempotency-key was used with another body",
                "x-idempotency-key",
            )
        resource_id: str = row.resource_id
        return resource_id

    async def _remember(
        self, conn: AsyncConnection, ctx: AccessContext, operation: str, key: str, fingerprint: bytes, resource: str
    ) -> bool:
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO openbanking.idempotency_keys (client_id, operation, key, request_hash, resource_id,"
                    " created_at) VALUES (:client, :op, :key, :hash, :resource, :now)"
                    " ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {
                    "client": ctx.client_id,
                    "op": operation,
                    "key": key,
                    "hash": fingerprint,
                    "resource": resource,
                    "now": self._clock.now(),
                },
            )
        ).first()
        return inserted is not None

    @staticmethod
    def _key(idempotency_key: str | None) -> str:
        if (problem := check_idempotency_key(idempotency_key)) is not None:
            raise OBError(
                400,
                OBErrorCode.HEADER_MISSING if not idempotency_key else OBErrorCode.HEADER_INVALID,
                problem,
                "x-idempotency-key",
            )
        assert idempotency_key is not None
        return idempotency_key

    def account_number(self, ref: AccountRef) -> str | None:
        """This bank's account number named by ``ref``, or None when it names no account of this bank."""
        try:
            if ref.scheme == SCHEME_IBAN:
                config = self._banking.config
                if not (config.iban_country and config.iban_bank_code):
                    return None
                return account_number_from_iban(
                    ref.identification.replace(" ", "").upper(), config.iban_country, config.iban_bank_code
                )
            return check_account_number(ref.identification.replace(" ", ""))
        except DomainError:
            return None

    async def _consent(self, ctx: AccessContext, consent_id: str, kind: ConsentKind) -> Consent:
        from smartbank.openbanking.service import _consent

        async with self._db.connect() as conn:
            row = await self._core._client_consent(conn, ctx, consent_id, kind, lock=False)
        return _consent(row, self._clock.now())

    # -- domestic payment consents ------------------------------------------------------------------

    async def create_payment_consent(
        self, ctx: AccessContext, body: Any, idempotency_key: str | None, client_info: ClientInfo
    ) -> Consent:
        self._core._require_client_credentials(ctx, "payments")
        key = self._key(idempotency_key)
        data = _top(body, {"Initiation", "ReadRefundAccount"}, risk=True)
        parse_initiation(data.get("Initiation"))
        risk = parse_risk(body.get("Risk"))
        if "ReadRefundAccount" in data and data["ReadRefundAccount"] not in ("Yes", "No"):
            raise _bad(OBErrorCode.FIELD_INVALID, "ReadRefundAccount is Yes or No", "Data.ReadRefundAccount")
        details = {"Initiation": data["Initiation"], "Risk": risk}
        if "ReadRefundAccount" in data:
            details["ReadRefundAccount"] = data["ReadRefundAccount"]
        return await self._create_consent(
            ctx,
            ConsentKind.DOMESTIC_PAYMENT,
            details,
            self._clock.now() + PAYMENT_CONSENT_TTL,
            key,
            request_hash(body),
            client_info,
        )

    async def _create_consent(
        self,
        ctx: AccessContext,
        kind: ConsentKind,
        details: dict[str, Any],
        expires_at: datetime | None,
        key: str | None,
        fingerprint: bytes,
        client_info: ClientInfo,
    ) -> Consent:
        from smartbank.openbanking.service import _CONSENT_COLUMNS, _consent

        now = self._clock.now()
        operation = (
            "domestic-payment-consents" if kind is ConsentKind.DOMESTIC_PAYMENT else "funds-confirmation-consents"
        )
        consent_id = f"{kind.id_prefix}-{new_id()}"
        async with self._db.transaction() as conn:
            existing: str | None = None
            if key is not None:
                # One at a time per key: a parallel duplicate waits here, then finds the first one's consent.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
                    {"lock": f"ob-idem:{ctx.client_id}:{operation}:{key}"},
                )
                existing = await self._remembered(conn, ctx, operation, key, fingerprint)
                if existing is None:
                    await self._remember(conn, ctx, operation, key, fingerprint, consent_id)
            if existing is not None:
                consent_id = existing
            else:
                await conn.execute(
                    text(
                        """
                        INSERT INTO openbanking.consents (id, client_id, kind, status, permissions, expires_at,
                               created_at, status_updated_at, details)
                        VALUES (:id, :client_id, :kind, 'AWAU', '{}', :expires_at, :now, :now,
                                CAST(:details AS jsonb))
                        """
                    ),
                    {
                        "id": consent_id,
                        "client_id": ctx.client_id,
                        "kind": kind.value,
                        "expires_at": expires_at,
                        "now": now,
                        "details": canonical(details).decode(),
                    },
                )
                await self._core._audit(
                    conn,
                    "openbanking.consent_created",
                    client_info,
                    actor_client=ctx.client_id,
                    subject=("consent", consent_id),
                    details={"kind": kind.value},
                )
            row = (
                await conn.execute(
                    text(f"SELECT {_CONSENT_COLUMNS} FROM openbanking.consents WHERE id = :id"), {"id": consent_id}
                )
            ).one()
        return _consent(row, now)

    async def get_payment_consent(self, ctx: AccessContext, consent_id: str) -> Consent:
        self._core._require_client_credentials(ctx, "payments")
        return await self._consent(ctx, consent_id, ConsentKind.DOMESTIC_PAYMENT)

    async def _available(self, consent: Consent, account_id: uuid.UUID) -> AccountBalance:
        try:
            return await self._banking.get_account(self.customer(consent), account_id)
        except DomainError as exc:
            raise OBError(400, OBErrorCode.INVALID_CONSENT_STATUS, "the consent's account is not available") from exc

    async def payment_funds(self, ctx: AccessContext, consent_id: str) -> tuple[bool, datetime]:
        """Whether the payer account of an authorised payment consent holds the instructed amount now."""
        bound = self._require_grant(ctx, ConsentKind.DOMESTIC_PAYMENT)
        if consent_id != bound:
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, "the token is bound to another consent", "ConsentId")
        consent = await self._consent(ctx, consent_id, ConsentKind.DOMESTIC_PAYMENT)
        if consent.status is not ConsentStatus.AUTHORISED:
            raise OBError(400, OBErrorCode.INVALID_CONSENT_STATUS, f"the consent is {consent.status.value}")
        initiation = parse_initiation((consent.details or {}).get("Initiation"))
        balance = await self._available(consent, consent.account_ids[0])
        enough = (
            balance.account.currency == initiation.amount.currency
            and balance.available_minor >= initiation.amount.amount_minor
        )
        return enough, self._clock.now()

    # -- domestic payments --------------------------------------------------------------------------

    async def create_payment(
        self, ctx: AccessContext, body: Any, idempotency_key: str | None, client_info: ClientInfo
    ) -> tuple[DomesticPayment, Consent]:
        """Execute the payment of the token's consent, once; replays answer the first result."""
        from smartbank.openbanking.service import _consent

        bound = self._require_grant(ctx, ConsentKind.DOMESTIC_PAYMENT)
        key = self._key(idempotency_key)
        data = _top(body, {"ConsentId", "Initiation"}, risk=True)
        consent_id = _text(data.get("ConsentId"), "Data.ConsentId", 128)
        if consent_id != bound:
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, "the token is bound to another consent", "Data.ConsentId")
        parse_initiation(data.get("Initiation"))
        parse_risk(body.get("Risk"))
        fingerprint = request_hash(body)
        now = self._clock.now()
        payment_id = f"dp-{new_id()}"
        async with self._db.transaction() as conn:
            row = await self._core._client_consent(conn, ctx, bound, ConsentKind.DOMESTIC_PAYMENT)  # row lock
            consent = _consent(row, now)
            existing = await self._remembered(conn, ctx, "domestic-payments", key, fingerprint)
            if existing is None:
                if consent.status is not ConsentStatus.AUTHORISED:
                    raise OBError(
                        400,
                        OBErrorCode.INVALID_CONSENT_STATUS,
                        "the consent was already used"
                        if consent.status is ConsentStatus.CONSUMED
                        else f"the consent is {consent.status.value}",
                        "Data.ConsentId",
                    )
                details = consent.details or {}
                if canonical(data["Initiation"]) != canonical(details.get("Initiation")) or canonical(
                    body["Risk"]
                ) != canonical(details.get("Risk")):
                    raise OBError(
                        400,
                        OBErrorCode.CONSENT_MISMATCH,
                        "Initiation and Risk must match the consent",
                        "Data.Initiation",
                    )
                await self._remember(conn, ctx, "domestic-payments", key, fingerprint, payment_id)
                await conn.execute(
                    text(
                        """
                        INSERT INTO openbanking.domestic_payments (id, client_id, consent_id, customer_id, status,
                               created_at, status_updated_at)
                        VALUES (:id, :client, :consent, :customer, 'RCVD', :now, :now)
                        """
                    ),
                    {
                        "id": payment_id,
                        "client": ctx.client_id,
                        "consent": bound,
                        "customer": consent.customer_id,
                        "now": now,
                    },
                )
                await conn.execute(
                    text("UPDATE openbanking.consents SET status = 'COND', status_updated_at = :now WHERE id = :id"),
                    {"now": now, "id": bound},
                )
                await self._core._audit(
                    conn,
                    "openbanking.payment_received",
                    client_info,
                    actor_client=ctx.client_id,
                    subject=("consent", bound),
                    details={"payment_id": payment_id},
                )
        if existing is not None:
            return await self._replayed(ctx, existing, consent)
        payment = await self.drive(payment_id, consent, client_info)
        return payment, consent

    async def _replayed(self, ctx: AccessContext, payment_id: str, consent: Consent) -> tuple[DomesticPayment, Consent]:
        """The payment a replayed key made: when the first request is still at work, wait for it a while."""
        deadline = time.monotonic() + REPLAY_WAIT_S
        pause = 0.005
        while True:
            payment = await self._load(ctx, payment_id)
            if payment.status not in (PaymentStatus.RECEIVED.value,) or time.monotonic() >= deadline:
                return payment, consent
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _load(self, ctx: AccessContext | None, payment_id: str) -> DomesticPayment:
        async with self._db.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT id, client_id, consent_id, status, created_at, status_updated_at, refusal,"
                        " banking_payment_id FROM openbanking.domestic_payments WHERE id = :id"
                    ),
                    {"id": payment_id[:40]},
                )
            ).first()
        if row is None or (ctx is not None and row.client_id != ctx.client_id):
            raise OBError(404, OBErrorCode.NOT_FOUND, "no such domestic payment", "DomesticPaymentId")
        return DomesticPayment(
            row.id,
            row.consent_id,
            row.status,
            row.created_at,
            row.status_updated_at,
            row.refusal,
            row.banking_payment_id,
        )

    async def drive(self, payment_id: str, consent: Consent, client_info: ClientInfo | None) -> DomesticPayment:
        """Execute a received payment through banking and record the answer (once: later answers lose)."""
        initiation = parse_initiation((consent.details or {}).get("Initiation"))
        request = PaymentRequest(
            from_account_id=consent.account_ids[0],
            amount_minor=initiation.amount.amount_minor,
            currency=initiation.amount.currency,
            to_payee_id=consent.payee_id,
            to_account_id=consent.to_account_id,
            reference=initiation.reference,
        )
        refusal: dict[str, Any] | None = None
        status = PaymentStatus.RECEIVED.value
        banking_id: uuid.UUID | None = None
        try:
            # Banking's own idempotency key for this payment: a retry (recovery) finds the same banking payment.
            done = await self._banking.submit_payment(
                self.customer(consent), f"ob:{payment_id}", request, client=client_info
            )
            banking_id = done.id
            status = (
                PaymentStatus.SETTLEMENT_COMPLETED.value
                if done.status is BankingPaymentStatus.COMPLETED
                else PaymentStatus.PENDING.value
            )
        except DomainError as exc:
            refusal = {
                "status": 400,
                "code": _refusal_code(exc.code),
                "message": f"{exc.code}: {exc.message}"[:500],
            }
            banking_id = _payment_id_of(exc)
            status = "refused"
        now = self._clock.now()
        async with self._db.transaction() as conn:
            updated = (
                await conn.execute(
                    text(
                        """
                        UPDATE openbanking.domestic_payments
                        SET status = :status, refusal = CAST(:refusal AS jsonb), banking_payment_id = :banking_id,
                            status_updated_at = :now
                        WHERE id = :id AND status IN ('RCVD', 'PDNG') AND status <> :status
                        RETURNING client_id
                        """
                    ),
                    {
                        "status": status,
                        "refusal": orjson.dumps(refusal).decode() if refusal else None,
                        "banking_id": banking_id,
                        "now": now,
                        "id": payment_id,
                    },
                )
            ).first()
            if updated is not None:
                await events.resource_updated(
                    conn,
                    updated.client_id,
                    "domestic-payment",
                    payment_id,
                    self._core.url(f"{PISP}/domestic-payments/{payment_id}"),
                )
        return await self._load(None, payment_id)

    async def get_payment(self, ctx: AccessContext, payment_id: str) -> tuple[DomesticPayment, Consent]:
        self._core._require_client_credentials(ctx, "payments")
        payment = await self._load(ctx, payment_id)
        consent = await self._consent(ctx, payment.consent_id, ConsentKind.DOMESTIC_PAYMENT)
        if payment.status == PaymentStatus.PENDING.value and payment.banking_payment_id is not None:
            # Banking answered "still at work" at the time: ask it how the payment stands now.
            current = await self._banking.get_payment(self.customer(consent), payment.banking_payment_id)
            if current.status is not BankingPaymentStatus.SUBMITTED:
                payment = await self.drive(payment.id, consent, None)
        return payment, consent

    async def recover(self, limit: int = RECOVERY_BATCH) -> int:
        """Drive payments left ``RCVD`` by a crash between writing them and banking's answer."""
        from smartbank.openbanking.service import _CONSENT_COLUMNS, _consent

        before = self._clock.now() - RECOVERY_AFTER
        async with self._db.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""
                        SELECT p.id AS payment_id, {", ".join("c." + c.strip() for c in _CONSENT_COLUMNS.split(","))}
                        FROM openbanking.domestic_payments p JOIN openbanking.consents c ON c.id = p.consent_id
                        WHERE p.status = 'RCVD' AND p.created_at < :before ORDER BY p.created_at LIMIT :limit
                        """
                    ),
                    {"before": before, "limit": limit},
                )
            ).all()
        for row in rows:
            await self.drive(row.payment_id, _consent(row, self._clock.now()), None)
        return len(rows)

    # -- confirmation of funds (CBPII) --------------------------------------------------------------

    async def create_funds_consent(self, ctx: AccessContext, body: Any, client_info: ClientInfo) -> Consent:
        from smartbank.openbanking.service import _parse_time

        self._core._require_client_credentials(ctx, "fundsconfirmations")
        data = _top(body, {"ExpirationDateTime", "DebtorAccount"}, risk=False)
        debtor = _account(data.get("DebtorAccount"), "Data.DebtorAccount", required=True)
        assert debtor is not None
        if self.account_number(debtor) is None:
            raise _bad(
                OBErrorCode.UNSUPPORTED_ACCOUNT_IDENTIFIER,
                "not an account of this bank",
                "Data.DebtorAccount.Identification",
            )
        expires_at = _parse_time(data.get("ExpirationDateTime"), "Data.ExpirationDateTime")
        if expires_at is not None and expires_at <= self._clock.now():
            raise _bad(OBErrorCode.FIELD_INVALID_DATE, "the expiry must be in the future", "Data.ExpirationDateTime")
        details: dict[str, Any] = {"DebtorAccount": debtor.body()}
        return await self._create_consent(
            ctx, ConsentKind.FUNDS_CONFIRMATION, details, expires_at, None, b"", client_info
        )

    async def get_funds_consent(self, ctx: AccessContext, consent_id: str) -> Consent:
        self._core._require_client_credentials(ctx, "fundsconfirmations")
        return await self._consent(ctx, consent_id, ConsentKind.FUNDS_CONFIRMATION)

    async def delete_funds_consent(self, ctx: AccessContext, consent_id: str, client_info: ClientInfo) -> None:
        self._core._require_client_credentials(ctx, "fundsconfirmations")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._core._client_consent(conn, ctx, consent_id, ConsentKind.FUNDS_CONFIRMATION)
            await self._core._cancel(conn, row.id, now)
            await self._core._audit(
                conn,
                "openbanking.consent_revoked",
                client_info,
                actor_client=ctx.client_id,
                subject=("consent", row.id),
                details={"by": "partner", "previous_status": row.status},
            )

    async def confirm_funds(self, ctx: AccessContext, body: Any) -> dict[str, Any]:
        """``OBFundsConfirmationResponse1`` data: does the consented account hold the amount now?"""
        bound = self._require_grant(ctx, ConsentKind.FUNDS_CONFIRMATION)
        data = _top(body, {"ConsentId", "Reference", "InstructedAmount"}, risk=False)
        consent_id = _text(data.get("ConsentId"), "Data.ConsentId", 128)
        if consent_id != bound:
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, "the token is bound to another consent", "Data.ConsentId")
        reference = _text(data.get("Reference"), "Data.Reference", 35)
        amount = _amount(data.get("InstructedAmount"), "Data.InstructedAmount")
        consent = await self._consent(ctx, bound, ConsentKind.FUNDS_CONFIRMATION)
        if consent.status is not ConsentStatus.AUTHORISED:
            raise OBError(400, OBErrorCode.INVALID_CONSENT_STATUS, f"the consent is {consent.status.value}")
        balance = await self._available(consent, consent.account_ids[0])
        if balance.account.currency != amount.currency:
            raise _bad(
                OBErrorCode.UNSUPPORTED_CURRENCY,
                f"the account is in {balance.account.currency}",
                "Data.InstructedAmount.Currency",
            )
        return {
            "FundsConfirmationId": f"fc-{new_id()}",
            "ConsentId": bound,
            "CreationDateTime": _iso(self._clock.now()),
            "FundsAvailable": balance.available_minor >= amount.amount_minor,
            "Reference": reference,
            "InstructedAmount": {"Amount": amount.format(), "Currency": amount.currency},
        }

    # -- the customer's side: what the consent screen needs -------------------------------------------

    async def resolve_creditor(
        self, principal: Principal, consent: Consent, client_info: ClientInfo
    ) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        """(payee id, own account id) the payment of ``consent`` goes to: one of the customer's own
        accounts, an existing payee, or a payee added now (the customer has just confirmed it with MFA)."""
        initiation = parse_initiation((consent.details or {}).get("Initiation"))
        number = self.account_number(initiation.creditor)
        if number is None:
            raise DomainError("unknown_account_number", "the app's payee account is not an account of this bank")
        own = [a for a in await self._banking.list_accounts(principal, principal.id) if a.number == number]
        if own:
            return None, own[0].id
        for _ in range(2):
            payees = await self._banking.list_payees(principal, principal.id)
            match = [p for p in payees if p.account_number == number]
            if match:
                return match[0].id, None
            name = (initiation.creditor.name or number)[:MAX_PAYEE_NAME]
            try:
                payee = await self._banking.add_payee(principal, name, number, client=client_info)
            except DomainError as exc:
                if exc.code != "payee_already_exists":
                    raise
                continue  # added meanwhile: read it back
            return payee.id, None
        raise DomainError("conflict", "the payee could not be added")

    def payer_problem(self, consent: Consent, account: Any) -> str | None:
        """Why ``account`` cannot be the payer (or checked account) of ``consent``; None when it can."""
        details = consent.details or {}
        if consent.kind is ConsentKind.DOMESTIC_PAYMENT:
            initiation = parse_initiation(details.get("Initiation"))
            if account.currency != initiation.amount.currency:
                return "currency"
            if initiation.debtor is not None and self.account_number(initiation.debtor) != account.number:
                return "debtor"
        elif consent.kind is ConsentKind.FUNDS_CONFIRMATION:
            debtor = _account(details.get("DebtorAccount"), "Data.DebtorAccount", required=True)
            assert debtor is not None
            if self.account_number(debtor) != account.number:
                return "debtor"
        return None


def _refusal_code(code: str) -> str:
    if code in ("unknown_currency", "currency_mismatch"):
        return OBErrorCode.UNSUPPORTED_CURRENCY.value
    if code in ("account_frozen", "account_closed", "not_found"):
        return OBErrorCode.INVALID_CONSENT_STATUS.value
    return OBErrorCode.FIELD_INVALID.value


def _payment_id_of(exc: DomainError) -> uuid.UUID | None:
    """The banking payment a refusal names (a payment the ledger refused is written, failed)."""
    raw = exc.details.get("payment_id")
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def consent_status(consent: Consent, now: datetime) -> str:
    """The status a payment consent answers: v4.0 has AWAU, RJCT, AUTH and COND for them (an expired
    or withdrawn one that was never used is answered as RJCT)."""
    status = status_now(consent.status, consent.expires_at, now)
    if status in (ConsentStatus.EXPIRED, ConsentStatus.CANCELLED):
        return ConsentStatus.REJECTED.value
    return status.value


def iso(moment: datetime | None) -> str | None:
    return _iso(moment)


__all__ = ["CBPII", "PISP", "PaymentInitiation", "consent_status", "format_amount", "iso", "log"]
