"""Banking use cases. Each takes the caller as a :class:`Principal` and checks it.

Customers reach only their own accounts, payees and payments (anything else is ``not_found``, so
they learn nothing); staff act by permission; everyone else is refused.

A payment moves money in three steps, because the ledger's transfer call commits on its own:

1. one banking transaction checks the rules, reserves the daily limit and writes the payment as
   ``submitted`` with a transfer id;
2. ``LedgerService.submit`` with that id (a retry with the same id and fields is ``exists``);
3. a transaction marks the payment ``completed`` (with its outbox event) or ``failed``.

Steps 2 and 3 run while holding the payment's row lock, so a payment is driven by one caller at a
time; a replay of its idempotency key, or the recovery job after a crash, drives a payment left in
``submitted`` to the end. See docs/adr/0005-banking-payments.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from smartbank.banking import queries
from smartbank.banking.errors import BankingErrorCode
from smartbank.banking.model import (
    BANKING_NAMESPACE,
    MAX_PAYEE_NAME,
    MAX_PAYEES,
    MAX_STATEMENT_LINES,
    TRANSFER_CODE_CASH_DEPOSIT,
    TRANSFER_CODE_CASH_WITHDRAWAL,
    TRANSFER_CODE_PAYMENT,
    AccountBalance,
    AccountState,
    CashRequest,
    CustomerPayment,
    DepositAccount,
    Entry,
    EntryPage,
    HistoryFilter,
    KycStatus,
    Payee,
    Payment,
    PaymentAssessment,
    PaymentKind,
    PaymentRequest,
    PaymentStatus,
    Product,
    RiskOutcome,
    Statement,
    account_number_from_iban,
    banking_code_for_ledger,
    build_statement,
    check_account_number,
    check_can_pay,
    check_daily_limit,
    check_idempotency_key,
    check_page_size,
    check_statement_period,
    day_bounds,
    decode_cursor,
    encode_cursor,
    iban_for,
    local_day,
    make_account_number,
    payment_direction,
    step_up_reason,
)
from smartbank.banking.ports import AllowAllRiskGate, CustomerDirectory, RiskGate
from smartbank.identity.model import ClientInfo, Permission, Principal
from smartbank.kernel.clock import Clock
from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.kernel.ids import new_id
from smartbank.kernel.invariants import invariant
from smartbank.kernel.money import currency_exponent
from smartbank.ledger.model import AccountKind, AccountSpec, AccountStatus, Transfer, TransferRequest
from smartbank.ledger.service import LedgerService
from smartbank.platform import audit
from smartbank.platform.audit import AuditEvent, AuditRecord, Outcome, record
from smartbank.platform.db import Database
from smartbank.platform.inbox import notify
from smartbank.platform.logging import get_logger
from smartbank.platform.outbox import claim_event, write_event
from smartbank.platform.settings import Settings

log = get_logger(__name__)

#: Outbox topics banking writes.
TOPIC_PAYMENT_COMPLETED: Final = "banking.payment_completed"
TOPIC_ACCOUNT_OPENED: Final = "banking.account_opened"
#: Kinds of the in-app notices banking writes (platform.inbox); the app words each one.
NOTICE_PAYMENT_SENT: Final = "banking.payment_sent"
NOTICE_PAYMENT_FAILED: Final = "banking.payment_failed"
NOTICE_MONEY_RECEIVED: Final = "banking.money_received"
#: Most accounts a customer can hold (and a listing returns).
MAX_ACCOUNTS_PER_CUSTOMER: Final = 50
#: Most stuck payments one recovery pass drives.
RECOVERY_BATCH: Final = 100
MAX_FREEZE_REASON: Final = 200
#: Most payments :meth:`BankingService.recent_payments` returns.
MAX_RECENT_PAYMENTS: Final = 50
#: A customer's newest payments whose audit rows :meth:`BankingService.audit_trail` includes.
AUDIT_TRAIL_PAYMENTS: Final = 100
MAX_LOOKUP_CHARS: Final = 64
#: How long a replay waits for a payment that another request is driving, before answering with it as
#: it stands (``submitted``); and the longest pause between two looks.
REPLAY_WAIT_S: Final = 15.0
REPLAY_POLL_MAX_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class BankingConfig:
    iban_country: str | None = None
    iban_bank_code: str | None = None
    step_up_threshold_minor: int = 200_000
    step_up_max_age: timedelta = timedelta(minutes=5)
    timezone: str = "Asia/Shanghai"
    default_branch: str = "0001"
    #: The currency of the account opened when a customer's KYC is verified.
    kyc_account_currency: str = "CNY"
    #: A payment still ``submitted`` this long after it was written is driven by the recovery job.
    recovery_after: timedelta = timedelta(seconds=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> BankingConfig:
        return cls(
            iban_country=settings.banking_iban_country,
            iban_bank_code=settings.banking_iban_bank_code,
            step_up_threshold_minor=settings.banking_step_up_threshold_minor,
            step_up_max_age=timedelta(seconds=settings.banking_step_up_max_age_s),
            timezone=settings.banking_timezone,
            default_branch=settings.banking_default_branch,
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who an audit row names, and where their request came from (when a request did)."""

    kind: str
    id: uuid.UUID | None
    client: ClientInfo | None = None

    @classmethod
    def of(cls, principal: Principal, client: ClientInfo | None = None) -> Actor:
        return cls(principal.kind.value, principal.id, client)

    def event(self, action: str, **fields: Any) -> AuditEvent:
        """An audit event by this actor, with the request's address, device and id when known."""
        ip = device = request_id = None
        if self.client is not None:
            ip = self.client.ip
            if ip is not None:
                try:
                    ip = str(ipaddress.ip_address(ip))
                except ValueError:
                    ip = None  # the column is inet: an unparsable address is dropped, not a failed use case
            device = self.client.device[:300] if self.client.device else None
            request_id = self.client.request_id[:200] if self.client.request_id else None
        return AuditEvent(
            action, actor_kind=self.kind, actor_id=self.id, ip=ip, device=device, request_id=request_id, **fields
        )


SYSTEM: Final = Actor("system", None)


@dataclass(frozen=True, slots=True)
class TransactionDetail:
    entry: Entry
    transfer: Transfer
    payment: Payment | None
    #: The account's balance just after this entry (in statement order).
    balance_after_minor: int | None = None


def _not_found(what: str) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"no such {what}")


def _forbidden() -> DomainError:
    return DomainError(ErrorCode.FORBIDDEN, "not allowed")


def _check_usable(account: DepositAccount, side: str) -> None:
    if account.status is AccountState.FROZEN:
        raise DomainError(BankingErrorCode.ACCOUNT_FROZEN, "the account is frozen", side=side)
    if account.status is AccountState.CLOSED:
        raise DomainError(BankingErrorCode.ACCOUNT_CLOSED, "the account is closed", side=side)


def _check_currency(currency: str, *accounts: DepositAccount) -> None:
    for account in accounts:
        if account.currency != currency:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH,
                f"the account is in {account.currency}; the amount is in {currency}",
                left=currency,
                right=account.currency,
            )


def answer(payment: Payment) -> Payment:
    """What the client is told about a payment that has finished: itself, or its failure."""
    if payment.status is PaymentStatus.FAILED:
        assert payment.failure_code is not None
        raise DomainError(
            payment.failure_code, f"the payment failed: {payment.failure_code}", payment_id=str(payment.id)
        )
    return payment


class BankingService:
    def __init__(
        self,
        db: Database,
        ledger: LedgerService,
        clock: Clock,
        customers: CustomerDirectory,
        *,
        risk: RiskGate | None = None,
        config: BankingConfig | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._clock = clock
        self._customers = customers
        self._risk: RiskGate = risk or AllowAllRiskGate()
        self.config = config or BankingConfig()
        self._after_commit = after_commit

    def _kick(self) -> None:
        if self._after_commit is not None:
            self._after_commit()

    # -- access ----------------------------------------------------------------------------------

    async def _record(self, conn: Any, event: AuditEvent) -> None:
        """Append an audit row dated by this service's clock."""
        await record(conn, event, now=self._clock.now())

    async def _account_for(self, principal: Principal, account_id: uuid.UUID, permission: Permission) -> DepositAccount:
        """The one access rule for deposit accounts: the owner, or staff with ``permission``."""
        if principal.is_staff and not principal.can(permission):
            raise _forbidden()
        if not (principal.is_customer or principal.is_staff):
            raise _forbidden()
        async with self._db.connect() as conn:
            account = await queries.get_account(conn, account_id)
        if account is None or (principal.is_customer and not principal.owns(account.customer_id)):
            raise _not_found("account")
        return account

    def _customer_scope(self, principal: Principal, customer_id: uuid.UUID, permission: Permission) -> None:
        if principal.is_customer:
            if not principal.owns(customer_id):
                raise _not_found("customer")
            return
        if not (principal.is_staff and principal.can(permission)):
            raise _forbidden()

    # -- accounts --------------------------------------------------------------------------------

    async def open_account(
        self,
        principal: Principal,
        product: Product,
        currency: str,
        *,
        branch_code: str | None = None,
        client: ClientInfo | None = None,
    ) -> DepositAccount:
        """A verified customer opens another account for themselves."""
        if not principal.is_customer:
            raise _forbidden()
        currency_exponent(currency)
        profile = await self._customers.payment_profile(principal.id)
        if profile.kyc_status != KycStatus.VERIFIED:
            raise DomainError(BankingErrorCode.KYC_NOT_VERIFIED, "opening an account needs a verified identity")
        async with self._db.connect() as conn:
            if len(await queries.customer_accounts(conn, principal.id, MAX_ACCOUNTS_PER_CUSTOMER)) >= (
                MAX_ACCOUNTS_PER_CUSTOMER
            ):
                raise DomainError(ErrorCode.CONFLICT, f"a customer holds at most {MAX_ACCOUNTS_PER_CUSTOMER} accounts")
        account, _ = await self._open(
            new_id(),
            principal.id,
            product,
            currency,
            branch_code or self.config.default_branch,
            Actor.of(principal, client),
        )
        return account

    async def open_account_on_kyc(self, event_id: uuid.UUID, customer_id: uuid.UUID) -> DepositAccount | None:
        """The ``customers.kyc_verified`` consumer: a CNY current account, opened once per customer.

        The account id is derived from the customer id, so a second delivery of the event (or a second
        event for the same customer) finds the account already there; ``claim_event`` records the event.
        """
        account_id = uuid.uuid5(BANKING_NAMESPACE, f"kyc-current:{customer_id}")
        account, created = await self._open(
            account_id,
            customer_id,
            Product.CURRENT,
            self.config.kyc_account_currency,
            self.config.default_branch,
            SYSTEM,
            claim=("banking.kyc_account", event_id),
        )
        return account if created else None

    async def _open(
        self,
        account_id: uuid.UUID,
        customer_id: uuid.UUID,
        product: Product,
        currency: str,
        branch_code: str,
        actor: Actor,
        *,
        claim: tuple[str, uuid.UUID] | None = None,
    ) -> tuple[DepositAccount, bool]:
        async with self._db.connect() as conn:
            branch = await queries.get_branch(conn, branch_code)
        if branch is None:
            raise DomainError(BankingErrorCode.BRANCH_NOT_FOUND, "no such branch", branch=branch_code)
        # The ledger account first (its own transaction, idempotent by id); a crash before the banking
        # row leaves an empty ledger account that the retry (same id) adopts.
        await self._ledger.open_account(
            AccountSpec(
                id=account_id,
                currency=currency,
                kind=AccountKind.LIABILITY,
                code=product.ledger_code,
                owner_ref=f"customer:{customer_id}",
                debits_must_not_exceed_credits=True,
            )
        )
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if claim is not None and not await claim_event(conn, claim[0], claim[1]):
                existing = await queries.get_account(conn, account_id)
                invariant(existing is not None, "a claimed event left no account", id=str(account_id))
                assert existing is not None
                return existing, False
            existing = await queries.get_account(conn, account_id, lock="update")
            if existing is not None:
                return existing, False
            number = make_account_number(branch_code, await queries.next_account_serial(conn))
            iban = None
            if self.config.iban_country and self.config.iban_bank_code:
                iban = iban_for(number, self.config.iban_country, self.config.iban_bank_code)
            account = DepositAccount(
                account_id, customer_id, number, iban, product, currency, AccountState.OPEN, branch_code, now
            )
            invariant(await queries.insert_account(conn, account), "account id taken", id=str(account_id))
            await self._record(
                conn,
                actor.event(
                    "banking.account_opened",
                    subject_type="account",
                    subject_id=str(account_id),
                    details={"customer_id": str(customer_id), "product": product.value, "currency": currency},
                ),
            )
            await write_event(
                conn,
                TOPIC_ACCOUNT_OPENED,
                {
                    "account_id": str(account_id),
                    "customer_id": str(customer_id),
                    "number": number,
                    "product": product.value,
                    "currency": currency,
                },
            )
            await notify(
                conn,
                customer_id,
                "banking.account_opened",
                {"account_id": str(account_id), "number": number, "product": product.value, "currency": currency},
                dedupe_key=f"account_opened:{account_id}",
                at=now,
            )
        self._kick()
        return account, True

    async def list_accounts(self, principal: Principal, customer_id: uuid.UUID) -> list[DepositAccount]:
        self._customer_scope(principal, customer_id, Permission.ACCOUNTS_READ)
        async with self._db.connect() as conn:
            return await queries.customer_accounts(conn, customer_id, MAX_ACCOUNTS_PER_CUSTOMER)

    async def get_account(self, principal: Principal, account_id: uuid.UUID) -> AccountBalance:
        account = await self._account_for(principal, account_id, Permission.ACCOUNTS_READ)
        return await self._balance(account)

    async def list_account_balances(self, principal: Principal, customer_id: uuid.UUID) -> list[AccountBalance]:
        """A customer's accounts (at most ``MAX_ACCOUNTS_PER_CUSTOMER``), each with its balances."""
        return [await self._balance(account) for account in await self.list_accounts(principal, customer_id)]

    async def _balance(self, account: DepositAccount) -> AccountBalance:
        ledger_account = await self._ledger.get_account(account.id)
        return AccountBalance(
            account,
            ledger_account.balances.posted(ledger_account.kind),
            ledger_account.balances.available(ledger_account.kind),
        )

    async def set_frozen(
        self,
        principal: Principal,
        account_id: uuid.UUID,
        frozen: bool,
        reason: str,
        *,
        client: ClientInfo | None = None,
    ) -> DepositAccount:
        """Freeze or unfreeze an account (staff with ``ACCOUNTS_FREEZE``); the ledger account follows."""
        if not (principal.is_staff and principal.can(Permission.ACCOUNTS_FREEZE)):
            raise _forbidden()
        reason = reason.strip()
        if not 1 <= len(reason) <= MAX_FREEZE_REASON:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, f"a reason of 1..{MAX_FREEZE_REASON} characters", field="reason"
            )
        account = await self._account_for(principal, account_id, Permission.ACCOUNTS_FREEZE)
        if account.status is AccountState.CLOSED:
            raise DomainError(BankingErrorCode.ACCOUNT_CLOSED, "the account is closed")
        target = AccountState.FROZEN if frozen else AccountState.OPEN
        # The ledger first: it refuses transfers on a frozen account whatever banking says, and a
        # retry after a crash between the two steps converges (both are idempotent).
        await self._ledger.set_account_status(account.id, AccountStatus(target.value))
        now = self._clock.now()
        async with self._db.transaction() as conn:
            current = await queries.get_account(conn, account.id, lock="update")
            assert current is not None
            if current.status is not target:
                await queries.set_account_state(conn, account.id, target, now)
            await self._record(
                conn,
                Actor.of(principal, client).event(
                    "banking.account_frozen" if frozen else "banking.account_unfrozen",
                    subject_type="account",
                    subject_id=str(account.id),
                    details={"reason": reason, "previous_status": current.status.value},
                ),
            )
            updated = await queries.get_account(conn, account.id)
        assert updated is not None
        return updated

    # -- payees ----------------------------------------------------------------------------------

    async def add_payee(
        self, principal: Principal, name: str, account_number: str, *, client: ClientInfo | None = None
    ) -> Payee:
        if not principal.is_customer:
            raise _forbidden()
        name = name.strip() if isinstance(name, str) else ""
        if not 1 <= len(name) <= MAX_PAYEE_NAME or not name.isprintable():
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, f"a payee name is 1..{MAX_PAYEE_NAME} printable characters", field="name"
            )
        number = check_account_number(account_number)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            target = await queries.get_account_by_number(conn, number)
            if target is None or target.status is AccountState.CLOSED:
                raise DomainError(
                    BankingErrorCode.UNKNOWN_ACCOUNT_NUMBER, "no open account has this number", field="account_number"
                )
            if await queries.lock_customer_payees(conn, principal.id) >= MAX_PAYEES:
                raise DomainError(BankingErrorCode.TOO_MANY_PAYEES, f"a customer keeps at most {MAX_PAYEES} payees")
            payee = Payee(new_id(), principal.id, name, number, target.id, now)
            if not await queries.insert_payee(conn, payee):
                raise DomainError(BankingErrorCode.PAYEE_ALREADY_EXISTS, "this account is already a payee")
            await self._record(
                conn,
                Actor.of(principal, client).event(
                    "banking.payee_added",
                    subject_type="payee",
                    subject_id=str(payee.id),
                    details={"account_number": number},
                ),
            )
        return payee

    async def list_payees(self, principal: Principal, customer_id: uuid.UUID) -> list[Payee]:
        self._customer_scope(principal, customer_id, Permission.ACCOUNTS_READ)
        async with self._db.connect() as conn:
            return await queries.customer_payees(conn, customer_id, MAX_PAYEES)

    async def delete_payee(
        self, principal: Principal, payee_id: uuid.UUID, *, client: ClientInfo | None = None
    ) -> None:
        if not principal.is_customer:
            raise _forbidden()
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await queries.lock_customer_payees(conn, principal.id)
            payee = await queries.get_live_payee(conn, payee_id)
            if payee is None or not principal.owns(payee.customer_id):
                raise _not_found("payee")
            await queries.delete_payee(conn, payee_id, now)
            await self._record(
                conn,
                Actor.of(principal, client).event(
                    "banking.payee_deleted",
                    subject_type="payee",
                    subject_id=str(payee_id),
                ),
            )

    # -- payments --------------------------------------------------------------------------------

    async def submit_payment(
        self,
        principal: Principal,
        idempotency_key: str,
        request: PaymentRequest,
        *,
        client: ClientInfo | None = None,
    ) -> Payment:
        """Pay from one of the customer's accounts to a payee or to another of their accounts.

        The same key with the same request returns the first answer (a failure is raised again);
        with another request, ``idempotency_key_reused``.
        """
        if not principal.is_customer:
            raise _forbidden()
        key = check_idempotency_key(idempotency_key)
        request.validate()
        fingerprint = request.fingerprint()
        replay = await self._replay(principal, key, fingerprint, client)
        if replay is not None:
            return replay

        now = self._clock.now()
        source = await self._account_for(principal, request.from_account_id, Permission.ACCOUNTS_READ)
        payee: Payee | None = None
        if request.to_payee_id is not None:
            async with self._db.connect() as conn:
                payee = await queries.get_live_payee(conn, request.to_payee_id)
                target = None if payee is None else await queries.get_account(conn, payee.account_id)
            if payee is None or target is None or not principal.owns(payee.customer_id):
                raise _not_found("payee")
        else:
            assert request.to_account_id is not None
            target = await self._account_for(principal, request.to_account_id, Permission.ACCOUNTS_READ)
        if target.id == source.id:
            raise DomainError(BankingErrorCode.ACCOUNTS_MUST_BE_DIFFERENT, "pay to another account")
        _check_usable(source, "debit")
        _check_usable(target, "credit")
        _check_currency(request.currency, source, target)

        profile = await self._customers.payment_profile(principal.id)
        check_can_pay(profile, request.amount_minor, request.currency)
        reason = step_up_reason(
            request.amount_minor,
            self.config.step_up_threshold_minor,
            payee.created_at if payee is not None else None,
            now,
        )
        if reason is not None and not principal.mfa_fresh(now, self.config.step_up_max_age):
            raise DomainError(BankingErrorCode.STEP_UP_REQUIRED, "confirm this payment with MFA", reason=reason)

        payment_id = new_id()
        decision = await self._risk.assess_payment(
            PaymentAssessment(
                payment_id=payment_id,
                kind=PaymentKind.TRANSFER,
                customer_id=principal.id,
                initiated_by=principal.id,
                account_id=source.id,
                counterparty_account_id=target.id,
                amount_minor=request.amount_minor,
                currency=request.currency,
                new_payee=reason == "new_payee",
                at=now,
            )
        )
        denied = decision.decision is RiskOutcome.DENY
        payment = Payment(
            id=payment_id,
            kind=PaymentKind.TRANSFER,
            customer_id=principal.id,
            initiated_by=principal.id,
            account_id=source.id,
            counterparty_account_id=target.id,
            payee_id=payee.id if payee is not None else None,
            branch_code=None,
            debit_account_id=source.id,
            credit_account_id=target.id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            reference=request.reference.strip(),
            transfer_id=uuid.uuid5(BANKING_NAMESPACE, f"payment:{payment_id}"),
            status=PaymentStatus.FAILED if denied else PaymentStatus.SUBMITTED,
            failure_code=BankingErrorCode.RISK_DECLINED.value if denied else None,
            usage_day=None if denied else local_day(now, self.config.timezone),
            step_up=reason is not None,
            risk_decision=decision.decision,
            risk_reason=decision.reason[:200],
            risk_version=decision.version[:100],
            created_at=now,
            finished_at=now if denied else None,
        )
        async with self._db.transaction() as conn:
            inserted = await queries.insert_payment(
                conn, payment, key=key, request_hash=fingerprint, initiator_kind="customer"
            )
            if inserted and payment.usage_day is not None:
                used = await queries.lock_daily_usage(conn, principal.id, payment.usage_day, payment.currency)
                check_daily_limit(used, payment.amount_minor, profile.daily_limit_minor, profile.tier)
                await queries.add_daily_usage(conn, principal.id, payment.usage_day, payment.amount_minor)
            if inserted:
                await self._audit_payment(
                    conn, payment, Actor.of(principal, client), "submitted" if not denied else "failed"
                )
            if inserted and denied:
                await self._notify_payer(conn, payment)
        if not inserted:  # a concurrent request with this key won: answer as it did
            replay = await self._replay(principal, key, fingerprint, client)
            invariant(replay is not None, "an idempotency key conflicted with no row", key=key)
            assert replay is not None
            return replay
        if denied:
            return answer(payment)
        return answer(await self.drive(payment.id, Actor.of(principal, client)))

    async def teller_cash(
        self,
        principal: Principal,
        idempotency_key: str,
        request: CashRequest,
        *,
        client: ClientInfo | None = None,
    ) -> Payment:
        """A cash deposit or withdrawal at a branch, posted against the branch's cash account."""
        if not (principal.is_staff and principal.can(Permission.TELLER_CASH)):
            raise _forbidden()
        key = check_idempotency_key(idempotency_key)
        request.validate()
        fingerprint = request.fingerprint()
        replay = await self._replay(principal, key, fingerprint, client)
        if replay is not None:
            return replay
        now = self._clock.now()
        account = await self._account_for(principal, request.account_id, Permission.TELLER_CASH)
        async with self._db.connect() as conn:
            branch = await queries.get_branch(conn, request.branch_code)
        if branch is None:
            raise DomainError(BankingErrorCode.BRANCH_NOT_FOUND, "no such branch", branch=request.branch_code)
        _check_usable(account, "credit" if request.kind is PaymentKind.CASH_DEPOSIT else "debit")
        _check_currency(request.currency, account)
        if branch.currency != request.currency:
            raise DomainError(ErrorCode.CURRENCY_MISMATCH, f"the branch keeps {branch.currency} cash")
        deposit = request.kind is PaymentKind.CASH_DEPOSIT
        payment_id = new_id()
        decision = await self._risk.assess_payment(
            PaymentAssessment(
                payment_id=payment_id,
                kind=request.kind,
                customer_id=account.customer_id,
                initiated_by=principal.id,
                account_id=account.id,
                counterparty_account_id=None,
                amount_minor=request.amount_minor,
                currency=request.currency,
                new_payee=False,
                at=now,
            )
        )
        denied = decision.decision is RiskOutcome.DENY
        payment = Payment(
            id=payment_id,
            kind=request.kind,
            customer_id=account.customer_id,
            initiated_by=principal.id,
            account_id=account.id,
            counterparty_account_id=None,
            payee_id=None,
            branch_code=branch.code,
            debit_account_id=branch.cash_account_id if deposit else account.id,
            credit_account_id=account.id if deposit else branch.cash_account_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            reference=request.reference.strip(),
            transfer_id=uuid.uuid5(BANKING_NAMESPACE, f"payment:{payment_id}"),
            status=PaymentStatus.FAILED if denied else PaymentStatus.SUBMITTED,
            failure_code=BankingErrorCode.RISK_DECLINED.value if denied else None,
            usage_day=None,
            step_up=False,
            risk_decision=decision.decision,
            risk_reason=decision.reason[:200],
            risk_version=decision.version[:100],
            created_at=now,
            finished_at=now if denied else None,
        )
        async with self._db.transaction() as conn:
            inserted = await queries.insert_payment(
                conn, payment, key=key, request_hash=fingerprint, initiator_kind="staff"
            )
            if inserted:
                await self._audit_payment(
                    conn, payment, Actor.of(principal, client), "submitted" if not denied else "failed"
                )
        if not inserted:
            replay = await self._replay(principal, key, fingerprint, client)
            invariant(replay is not None, "an idempotency key conflicted with no row", key=key)
            assert replay is not None
            return replay
        if denied:
            return answer(payment)
        return answer(await self.drive(payment.id, Actor.of(principal, client)))

    async def _replay(
        self, principal: Principal, key: str, fingerprint: bytes, client: ClientInfo | None = None
    ) -> Payment | None:
        async with self._db.connect() as conn:
            found = await queries.find_by_key(conn, principal.id, key)
        if found is None:
            return None
        payment, stored_hash = found
        if stored_hash != fingerprint:
            raise DomainError(
                BankingErrorCode.IDEMPOTENCY_KEY_REUSED, "this idempotency key was used for another request"
            )
        if payment.status is PaymentStatus.SUBMITTED:
            payment = await self._finish(payment.id, Actor.of(principal, client))
        return answer(payment)

    async def _finish(self, payment_id: uuid.UUID, actor: Actor) -> Payment:
        """Drive a ``submitted`` payment, or wait for the request that is driving it to finish.

        The wait polls with ``skip_locked`` instead of queueing on the row lock, so that many replays of
        one key (a client retrying in parallel) do not each hold a pooled connection while the driver
        needs one more for its ledger call.
        """
        deadline = time.monotonic() + REPLAY_WAIT_S
        pause = 0.002
        while True:
            payment = await self.drive(payment_id, actor, skip_locked=True)
            if payment.status is not PaymentStatus.SUBMITTED or time.monotonic() >= deadline:
                return payment
            await asyncio.sleep(pause)
            pause = min(pause * 2, REPLAY_POLL_MAX_S)

    async def drive(self, payment_id: uuid.UUID, actor: Actor, *, skip_locked: bool = False) -> Payment:
        """Take a ``submitted`` payment to ``completed`` or ``failed``; any other is returned as is.

        Holds the payment's row lock across the ledger call, so one caller drives a payment at a time
        and the ledger's answer and the payment's status cannot disagree. With ``skip_locked`` a
        payment being driven by someone else is returned unchanged instead of waited for.
        """
        async with self._db.transaction() as conn:
            payment = await queries.get_payment(conn, payment_id, lock="skip" if skip_locked else "update")
            if payment is None:
                async with self._db.connect() as read:
                    current = await queries.get_payment(read, payment_id)
                if current is None:
                    raise _not_found("payment")
                return current
            if payment.status is not PaymentStatus.SUBMITTED:
                return payment
            result = await self._ledger.submit(
                TransferRequest(
                    id=payment.transfer_id,
                    debit_account_id=payment.debit_account_id,
                    credit_account_id=payment.credit_account_id,
                    amount_minor=payment.amount_minor,
                    currency=payment.currency,
                    code={
                        PaymentKind.TRANSFER: TRANSFER_CODE_PAYMENT,
                        PaymentKind.CASH_DEPOSIT: TRANSFER_CODE_CASH_DEPOSIT,
                        PaymentKind.CASH_WITHDRAWAL: TRANSFER_CODE_CASH_WITHDRAWAL,
                    }[payment.kind],
                    metadata={"payment_id": str(payment.id), "kind": payment.kind.value},
                )
            )
            now = self._clock.now()
            if result.ok:
                await queries.finish_payment(conn, payment.id, PaymentStatus.COMPLETED, None, now)
                await write_event(
                    conn,
                    TOPIC_PAYMENT_COMPLETED,
                    {
                        "payment_id": str(payment.id),
                        "kind": payment.kind.value,
                        "customer_id": str(payment.customer_id),
                        "account_id": str(payment.account_id),
                        "counterparty_account_id": (
                            str(payment.counterparty_account_id) if payment.counterparty_account_id else None
                        ),
                        "amount_minor": payment.amount_minor,
                        "currency": payment.currency,
                        "transfer_id": str(payment.transfer_id),
                        "completed_at": now.isoformat(),
                    },
                )
            else:
                assert result.code is not None
                code = banking_code_for_ledger(result.code)
                await queries.finish_payment(conn, payment.id, PaymentStatus.FAILED, code, now)
                if payment.usage_day is not None:  # the reserved part of the daily limit is given back
                    await queries.lock_daily_usage(conn, payment.customer_id, payment.usage_day, payment.currency)
                    await queries.add_daily_usage(conn, payment.customer_id, payment.usage_day, -payment.amount_minor)
            finished = await queries.get_payment(conn, payment.id)
            assert finished is not None
            await self._audit_payment(conn, finished, actor, finished.status.value)
            await self._notify_payer(conn, finished)
        if finished.status is PaymentStatus.COMPLETED:
            self._kick()
        else:
            log.info("banking.payment_failed", payment_id=str(payment.id), code=finished.failure_code)
        return finished

    async def _notify_payer(self, conn: Any, payment: Payment) -> None:
        """A customer's payment finished: "payment sent" or "payment failed" in their inbox, once.

        Teller cash is not the customer's own act and is not noticed here (a deposit arrives as
        "money received" from the history projection)."""
        if payment.kind is not PaymentKind.TRANSFER or payment.status is PaymentStatus.SUBMITTED:
            return
        sent = payment.status is PaymentStatus.COMPLETED
        await notify(
            conn,
            payment.customer_id,
            NOTICE_PAYMENT_SENT if sent else NOTICE_PAYMENT_FAILED,
            {
                "payment_id": str(payment.id),
                "account_id": str(payment.account_id),
                "amount_minor": payment.amount_minor,
                "currency": payment.currency,
                "payee_name": await queries.payee_name(conn, payment.payee_id) if payment.payee_id else None,
                "failure_code": payment.failure_code,
            },
            dedupe_key=f"payment:{payment.id}:finished",
            at=payment.finished_at or self._clock.now(),
        )

    async def _audit_payment(self, conn: Any, payment: Payment, actor: Actor, stage: str) -> None:
        await self._record(
            conn,
            actor.event(
                f"banking.{payment.kind.value}_{stage}",
                outcome=Outcome.FAILURE if payment.status is PaymentStatus.FAILED else Outcome.SUCCESS,
                subject_type="payment",
                subject_id=str(payment.id),
                details={
                    "account_id": str(payment.account_id),
                    "amount_minor": payment.amount_minor,
                    "currency": payment.currency,
                    "branch_code": payment.branch_code,
                    "failure_code": payment.failure_code,
                    "risk_decision": payment.risk_decision.value,
                    "step_up": payment.step_up,
                },
            ),
        )

    async def get_payment(self, principal: Principal, payment_id: uuid.UUID) -> Payment:
        if principal.is_staff and not principal.can(Permission.PAYMENTS_READ):
            raise _forbidden()
        if not (principal.is_customer or principal.is_staff):
            raise _forbidden()
        async with self._db.connect() as conn:
            payment = await queries.get_payment(conn, payment_id)
        if payment is None or (principal.is_customer and not principal.owns(payment.customer_id)):
            raise _not_found("payment")
        return payment

    # -- staff views -----------------------------------------------------------------------------

    def _number_of(self, value: str) -> str:
        """An account number from what staff typed: the number (spaces allowed) or this bank's IBAN."""
        compact = value.replace(" ", "").upper()[:MAX_LOOKUP_CHARS] if isinstance(value, str) else ""
        if compact[:2].isalpha():
            country, bank_code = self.config.iban_country, self.config.iban_bank_code
            if not (country and bank_code):
                raise DomainError(BankingErrorCode.INVALID_IBAN, "this bank issues no IBANs", field="iban")
            return account_number_from_iban(compact, country, bank_code)
        return check_account_number(compact)

    async def find_account(self, principal: Principal, number_or_iban: str) -> DepositAccount:
        """The account with this number or IBAN, whatever its state, so that staff with
        ``accounts:read`` find who holds it; ``not_found`` when none has it."""
        if not (principal.is_staff and principal.can(Permission.ACCOUNTS_READ)):
            raise _forbidden()
        number = self._number_of(number_or_iban)
        async with self._db.connect() as conn:
            account = await queries.get_account_by_number(conn, number)
        if account is None:
            raise _not_found("account")
        return account

    async def recent_payments(
        self, principal: Principal, customer_id: uuid.UUID, limit: int = 10
    ) -> list[CustomerPayment]:
        """The customer's newest payments in and out (transfers both ways, cash at a branch) with
        their status, newest first: the customer, or staff with ``payments:read``."""
        self._customer_scope(principal, customer_id, Permission.PAYMENTS_READ)
        if type(limit) is not int or not 1 <= limit <= MAX_RECENT_PAYMENTS:
            raise DomainError(ErrorCode.VALIDATION_ERROR, f"limit must be 1..{MAX_RECENT_PAYMENTS}", field="limit")
        async with self._db.connect() as conn:
            accounts = await queries.customer_accounts(conn, customer_id, MAX_ACCOUNTS_PER_CUSTOMER)
            payments = await queries.customer_payments(conn, customer_id, [a.id for a in accounts], limit)
            others = {p.counterparty_account_id for p in payments if p.counterparty_account_id is not None}
            numbers = await queries.accounts_among(conn, [*others, *(p.account_id for p in payments)])
        lines = []
        for payment in payments:
            direction = payment_direction(payment, customer_id)
            other = payment.account_id if payment.customer_id != customer_id else payment.counterparty_account_id
            number = numbers[other].number if other is not None and other in numbers else None
            lines.append(CustomerPayment(payment, direction, number))
        return lines

    async def audit_trail(
        self, principal: Principal, customer_id: uuid.UUID, *, before_seq: int | None = None, limit: int = 20
    ) -> list[AuditRecord]:
        """Audit rows done by the customer or about them (their record and login), their accounts and
        their newest payments, newest first; staff with ``audit:read`` only. Page with ``before_seq``."""
        if not (principal.is_staff and principal.can(Permission.AUDIT_READ)):
            raise _forbidden()
        async with self._db.connect() as conn:
            accounts = await queries.customer_accounts(conn, customer_id, MAX_ACCOUNTS_PER_CUSTOMER)
            payments = await queries.customer_payments(
                conn, customer_id, [a.id for a in accounts], AUDIT_TRAIL_PAYMENTS
            )
        subjects = [("customer", str(customer_id)), ("principal", str(customer_id))]
        subjects += [("account", str(a.id)) for a in accounts]
        subjects += [("payment", str(p.id)) for p in payments if p.customer_id == customer_id]
        return await audit.recent(self._db, actor_id=customer_id, subjects=subjects, before_seq=before_seq, limit=limit)

    async def recover_stuck_payments(self, limit: int = RECOVERY_BATCH) -> int:
        """Drive payments left in ``submitted`` (a crash between the steps). Returns how many finished."""
        before = self._clock.now() - self.config.recovery_after
        async with self._db.connect() as conn:
            stuck = await queries.stuck_payments(conn, before, limit)
        finished = 0
        for payment_id in stuck:
            payment = await self.drive(payment_id, SYSTEM, skip_locked=True)
            if payment.status is not PaymentStatus.SUBMITTED:
                finished += 1
        if finished:
            log.info("banking.payments_recovered", count=finished)
        return finished

    async def daily_usage(self, principal: Principal, customer_id: uuid.UUID, day: date) -> int:
        self._customer_scope(principal, customer_id, Permission.PAYMENTS_READ)
        async with self._db.connect() as conn:
            return await queries.daily_usage(conn, customer_id, day)

    # -- history and statements ------------------------------------------------------------------

    async def history(
        self,
        principal: Principal,
        account_id: uuid.UUID,
        where: HistoryFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = 20,
        newer: str | None = None,
    ) -> EntryPage:
        """A page of history, newest first: the newest entries, those older than ``cursor`` (a
        ``next_cursor``) or those just newer than ``newer`` (a ``prev_cursor``; when fewer than a
        page are newer, the newest page). ``prev_cursor`` is None on the newest page."""
        where = where or HistoryFilter()
        where.validate()
        check_page_size(limit)
        before = decode_cursor(cursor) if cursor else None
        after = decode_cursor(newer) if newer and before is None else None
        account = await self._account_for(principal, account_id, Permission.ACCOUNTS_READ)
        async with self._db.connect() as conn:
            if after is not None:  # read upwards: more than a page means still newer ones above it
                upwards = await queries.history(conn, account.id, where, None, limit + 1, after_seq=after)
                if len(upwards) > limit:
                    page = list(reversed(upwards[:limit]))
                    return EntryPage(page, encode_cursor(page[-1].seq), encode_cursor(page[0].seq))
            items = await queries.history(conn, account.id, where, before, limit + 1)
        page = items[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(items) > limit else None
        prev_cursor = encode_cursor(page[0].seq) if before is not None and page else None
        return EntryPage(page, next_cursor, prev_cursor)

    async def get_transaction(
        self, principal: Principal, account_id: uuid.UUID, transfer_id: uuid.UUID
    ) -> TransactionDetail:
        account = await self._account_for(principal, account_id, Permission.ACCOUNTS_READ)
        async with self._db.connect() as conn:
            entry = await queries.get_entry(conn, account.id, transfer_id)
            payment = None
            balance_after = None
            if entry is not None:
                balance_after = await queries.balance_after(conn, account.id, entry)
                if entry.payment_id is not None:
                    payment = await queries.get_payment(conn, entry.payment_id)
        if payment is not None and principal.is_customer and not principal.owns(payment.customer_id):
            payment = None  # the payee sees the money arrive, not the payer's payment
        if entry is None:
            raise _not_found("transaction")
        transfer = await self._ledger.get_transfer(transfer_id)
        return TransactionDetail(entry, transfer, payment, balance_after)

    async def statement(
        self, principal: Principal, account_id: uuid.UUID, first_day: date, last_day: date
    ) -> Statement:
        """Opening balance, each line with its running balance, closing balance, for whole days in the
        bank's time zone."""
        check_statement_period(first_day, last_day)
        account = await self._account_for(principal, account_id, Permission.ACCOUNTS_READ)
        start, end = day_bounds(first_day, last_day, self.config.timezone)
        async with self._db.transaction() as conn:
            opening = await queries.balance_before(conn, account.id, start)
            entries = await queries.entries_between(conn, account.id, start, end, MAX_STATEMENT_LINES + 1)
        if len(entries) > MAX_STATEMENT_LINES:
            raise DomainError(
                BankingErrorCode.STATEMENT_TOO_LARGE,
                f"a statement holds at most {MAX_STATEMENT_LINES} lines; ask for a shorter period",
            )
        return build_statement(
            account_id=account.id,
            account_number=account.number,
            currency=account.currency,
            first_day=first_day,
            last_day=last_day,
            opening_minor=opening,
            entries=entries,
            generated_at=self._clock.now(),
        )

    async def project_transfers(self, event_id: uuid.UUID, payload: dict[str, Any], posted_at: datetime) -> int:
        """The ``ledger.transfers_created`` consumer: history entries for the deposit accounts touched."""
        count = int(payload.get("count", 0))
        columns = ("id", "type", "debit_account_id", "credit_account_id", "amount_minor", "currency")
        transfers = [
            dict(zip(columns, values, strict=True)) for values in zip(*(payload[c] for c in columns), strict=True)
        ]
        invariant(len(transfers) == count, "a ledger event's columns have its count", count=count)
        moved = [t for t in transfers if t["type"] in ("posted", "post_pending")]
        if not moved:
            return 0
        ledger_ids = list({uuid.UUID(t[side]) for t in moved for side in ("debit_account_id", "credit_account_id")})
        async with self._db.transaction() as conn:
            accounts = await queries.accounts_among(conn, ledger_ids)
            if not accounts:  # no deposit account involved: nothing to remember either
                return 0
            if not await claim_event(conn, "banking.entries", event_id):
                return 0
            relevant = [
                t
                for t in moved
                if uuid.UUID(t["debit_account_id"]) in accounts or uuid.UUID(t["credit_account_id"]) in accounts
            ]
            payments = await queries.payments_by_transfer(conn, [uuid.UUID(t["id"]) for t in relevant])
            branches = await queries.branches_by_cash_account(conn, ledger_ids)
            rows: list[dict[str, Any]] = []
            for t in relevant:
                transfer_id = uuid.UUID(t["id"])
                payment = payments.get(transfer_id)
                for side, other_side, sign in (
                    ("debit_account_id", "credit_account_id", -1),
                    ("credit_account_id", "debit_account_id", 1),
                ):
                    own = accounts.get(uuid.UUID(t[side]))
                    if own is None:
                        continue
                    other_id = uuid.UUID(t[other_side])
                    other = accounts.get(other_id)
                    name: str | None = None
                    if other is not None and payment is not None and payment.account_id == own.id:
                        name = payment.payee_name  # the payer sees the payee's name
                    elif other_id in branches:
                        name = f"Cash, branch {branches[other_id].code} {branches[other_id].name}"
                    rows.append(
                        {
                            "account_id": own.id,
                            "transfer_id": transfer_id,
                            "amount_minor": sign * int(t["amount_minor"]),
                            "currency": t["currency"],
                            "posted_at": posted_at,
                            "counterparty_number": other.number if other is not None else None,
                            "counterparty_name": name,
                            "description": payment.reference if payment is not None else "",
                            "payment_id": payment.id if payment is not None else None,
                            "kind": payment.kind if payment is not None else None,
                        }
                    )
            for row in rows:
                await self._notify_received(conn, row, accounts[row["account_id"]], payments.get(row["transfer_id"]))
            return await queries.insert_entries(conn, rows)

    async def _notify_received(self, conn: Any, row: dict[str, Any], own: DepositAccount, payment: Any) -> None:
        """Money arrived on a customer's account from another customer's payment or a teller deposit:
        "money received" in the owner's inbox, once per account and transfer."""
        if row["amount_minor"] <= 0 or payment is None:
            return
        if payment.kind == PaymentKind.CASH_DEPOSIT.value:
            source = {"branch_name": payment.branch_name}
        elif payment.kind == PaymentKind.TRANSFER.value and payment.customer_id != own.customer_id:
            source = {"counterparty_number": row["counterparty_number"]}
        else:
            return  # between the customer's own accounts: they know already
        await notify(
            conn,
            own.customer_id,
            NOTICE_MONEY_RECEIVED,
            {
                "account_id": str(own.id),
                "account_number": own.number,
                "transaction_id": str(row["transfer_id"]),
                "amount_minor": row["amount_minor"],
                "currency": row["currency"],
                **source,
            },
            dedupe_key=f"received:{own.id}:{row['transfer_id']}",
            at=row["posted_at"],
        )
