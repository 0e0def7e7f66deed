"""Payments: rules, limits, step-up, idempotency under concurrency, and the ledger's results."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from smartbank.banking.model import (
    PaymentKind,
    PaymentRequest,
    PaymentStatus,
    Product,
    RiskDecision,
    RiskOutcome,
    local_day,
)
from smartbank.banking.service import BankingService
from smartbank.identity.model import StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database

from .conftest import FakeDirectory, RecordingRisk
from .helpers import count, funded_account, new_customer, posted, rows, staff, with_mfa

CNY = "CNY"


async def refused(coro: object, code: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await coro  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value


async def payments_of(db: Database, customer: uuid.UUID) -> int:
    return await count(db, "SELECT count(*) FROM banking.payments WHERE customer_id = :c", c=customer)


async def test_payment_happy_path_moves_exact_amounts_and_records_everything(
    banking: BankingService,
    bledger: LedgerService,
    bdb: Database,
    directory: FakeDirectory,
    risk: RecordingRisk,
    bclock: FrozenClock,
) -> None:
    alice = new_customer(directory)
    bob = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 100_000)
    target = await funded_account(banking, bledger, bob, 0)
    bob_account = (await banking.list_accounts(bob, bob.id))[0]
    payee = await banking.add_payee(alice, "Bob Li", bob_account.number)
    bclock.advance(timedelta(days=1))  # the payee is no longer new

    payment = await banking.submit_payment(
        alice, "pay-1", PaymentRequest(source, 12_345, CNY, to_payee_id=payee.id, reference="March rent")
    )

    assert payment.status is PaymentStatus.COMPLETED
    assert (payment.amount_minor, payment.currency, payment.reference) == (12_345, CNY, "March rent")
    assert (payment.debit_account_id, payment.credit_account_id, payment.payee_id) == (source, target, payee.id)
    assert (await posted(bledger, source), await posted(bledger, target)) == (87_655, 12_345)
    transfer = await bledger.get_transfer(payment.transfer_id)
    assert (transfer.debit_account_id, transfer.credit_account_id, transfer.amount_minor) == (source, target, 12_345)
    # The risk gate was asked once and its decision is stored with the payment.
    assert [a.payment_id for a in risk.seen] == [payment.id]
    assert (payment.risk_decision, payment.risk_reason, payment.risk_version) == (
        RiskOutcome.ALLOW,
        "test_allow",
        "test/1",
    )
    events = await rows(
        bdb,
        "SELECT payload FROM platform.outbox WHERE topic = 'banking.payment_completed' AND payload->>'payment_id' = :p",
        p=str(payment.id),
    )
    assert [e.payload["amount_minor"] for e in events] == [12_345]
    assert events[0].payload["transfer_id"] == str(payment.transfer_id)
    audit = await rows(
        bdb,
        "SELECT action, outcome, actor_id FROM platform.audit_log WHERE subject_id = :p ORDER BY seq",
        p=str(payment.id),
    )
    assert [(a.action, a.outcome, a.actor_id) for a in audit] == [
        ("banking.transfer_submitted", "success", alice.id),
        ("banking.transfer_completed", "success", alice.id),
    ]
    day = local_day(bclock.now(), "Asia/Shanghai")
    assert await banking.daily_usage(alice, alice.id, day) == 12_345
    assert await bledger.verify() == []


async def test_twenty_parallel_submissions_with_one_key_make_one_transfer_and_identical_answers(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 50_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    request = PaymentRequest(source, 7_000, CNY, to_account_id=savings, reference="to savings")

    answers = await asyncio.gather(*(banking.submit_payment(alice, "same-key", request) for _ in range(20)))

    assert len(answers) == 20
    assert all(a == answers[0] for a in answers)
    assert answers[0].status is PaymentStatus.COMPLETED
    page = await bledger.account_transfers(source)
    assert [t.amount_minor for t in page.items if t.debit_account_id == source] == [7_000]
    assert (await posted(bledger, source), await posted(bledger, savings)) == (43_000, 7_000)
    assert await payments_of(bdb, alice.id) == 1
    assert (
        await count(
            bdb,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'banking.payment_completed' "
            "AND payload->>'payment_id' = :p",
            p=str(answers[0].id),
        )
        == 1
    )
    # And later, sequentially: still the first answer.
    assert await banking.submit_payment(alice, "same-key", request) == answers[0]
    assert await bledger.verify() == []


async def test_same_key_with_a_different_request_is_409_idempotency_key_reused(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 50_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    first = await banking.submit_payment(alice, "k", PaymentRequest(source, 100, CNY, to_account_id=savings))
    error = await refused(
        banking.submit_payment(alice, "k", PaymentRequest(source, 101, CNY, to_account_id=savings)),
        "idempotency_key_reused",
    )
    assert error.http_status == 409
    assert await payments_of(bdb, alice.id) == 1
    assert (await posted(bledger, source), first.amount_minor) == (49_900, 100)


async def test_payment_over_the_daily_limit_is_refused_and_nothing_is_posted(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory, per_payment_minor=100_000, daily_minor=100_000)
    source = await funded_account(banking, bledger, alice, 500_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    await banking.submit_payment(alice, "a", PaymentRequest(source, 80_000, CNY, to_account_id=savings))
    transfers_before = len((await bledger.account_transfers(source)).items)

    error = await refused(
        banking.submit_payment(alice, "b", PaymentRequest(source, 20_001, CNY, to_account_id=savings)),
        "daily_limit_exceeded",
    )

    assert error.http_status == 409
    assert error.details == {"limit_minor": 100_000, "used_minor": 80_000, "tier": "standard"}
    assert (await posted(bledger, source), await posted(bledger, savings)) == (420_000, 80_000)
    assert len((await bledger.account_transfers(source)).items) == transfers_before
    assert await payments_of(bdb, alice.id) == 1
    day = local_day(bclock.now(), "Asia/Shanghai")
    assert await banking.daily_usage(alice, alice.id, day) == 80_000
    # Exactly up to the limit is allowed.
    await banking.submit_payment(alice, "c", PaymentRequest(source, 20_000, CNY, to_account_id=savings))
    assert await banking.daily_usage(alice, alice.id, day) == 100_000


async def test_concurrent_payments_cannot_jointly_exceed_the_daily_limit(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory, per_payment_minor=100_000, daily_minor=100_000)
    source = await funded_account(banking, bledger, alice, 1_000_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)

    async def pay(n: int) -> str:
        try:
            await banking.submit_payment(alice, f"k{n}", PaymentRequest(source, 15_000, CNY, to_account_id=savings))
            return "ok"
        except DomainError as exc:
            return exc.code

    outcomes = await asyncio.gather(*(pay(n) for n in range(10)))

    assert sorted(outcomes) == ["daily_limit_exceeded"] * 4 + ["ok"] * 6
    assert await posted(bledger, savings) == 90_000
    day = local_day(bclock.now(), "Asia/Shanghai")
    assert await banking.daily_usage(alice, alice.id, day) == 90_000
    assert await payments_of(bdb, alice.id) == 6


async def test_payment_above_the_per_payment_limit_is_refused(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory, per_payment_minor=10_000)
    source = await funded_account(banking, bledger, alice, 50_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    error = await refused(
        banking.submit_payment(alice, "k", PaymentRequest(source, 10_001, CNY, to_account_id=savings)),
        "per_payment_limit_exceeded",
    )
    assert (error.http_status, error.details["limit_minor"]) == (422, 10_000)
    assert await payments_of(bdb, alice.id) == 0
    assert await posted(bledger, source) == 50_000


async def test_payment_without_verified_kyc_is_refused(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 50_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    directory.profiles[alice.id] = directory.profiles[alice.id].__class__(
        alice.id, "pending", "standard", 10_000, 10_000, CNY
    )
    await refused(
        banking.submit_payment(alice, "k", PaymentRequest(source, 100, CNY, to_account_id=savings)),
        "kyc_not_verified",
    )
    assert await payments_of(bdb, alice.id) == 0


async def test_large_amount_needs_step_up_and_fresh_mfa_satisfies_it(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 2_000_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    request = PaymentRequest(source, 500_001, CNY, to_account_id=savings)

    error = await refused(banking.submit_payment(alice, "big", request), "step_up_required")
    assert (error.http_status, error.details) == (403, {"reason": "amount_above_threshold"})
    stale = with_mfa(alice, bclock.now() - timedelta(minutes=6))
    await refused(banking.submit_payment(stale, "big", request), "step_up_required")
    assert await payments_of(bdb, alice.id) == 0
    assert await posted(bledger, savings) == 0

    fresh = with_mfa(alice, bclock.now() - timedelta(minutes=4))
    payment = await banking.submit_payment(fresh, "big", request)
    assert (payment.status, payment.step_up) == (PaymentStatus.COMPLETED, True)
    assert await posted(bledger, savings) == 500_001
    # At the threshold no step-up is needed.
    small = await banking.submit_payment(alice, "at", PaymentRequest(source, 500_000, CNY, to_account_id=savings))
    assert small.step_up is False


async def test_new_payee_needs_step_up_for_a_day(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    bob = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 100_000)
    target = await funded_account(banking, bledger, bob, 0)
    number = (await banking.list_accounts(bob, bob.id))[0].number
    payee = await banking.add_payee(alice, "Bob", number)
    request = PaymentRequest(source, 100, CNY, to_payee_id=payee.id)

    error = await refused(banking.submit_payment(alice, "p1", request), "step_up_required")
    assert error.details == {"reason": "new_payee"}
    assert await payments_of(bdb, alice.id) == 0

    payment = await banking.submit_payment(with_mfa(alice, bclock.now()), "p1", request)
    assert payment.step_up is True and payment.status is PaymentStatus.COMPLETED

    bclock.advance(timedelta(hours=24))
    later = await banking.submit_payment(alice, "p2", request)
    assert later.step_up is False
    assert await posted(bledger, target) == 200


async def test_frozen_account_is_refused_on_either_side_until_unfrozen(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 100_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    analyst = staff(StaffRole.RISK_ANALYST)

    frozen = await banking.set_frozen(analyst, source, True, "suspected fraud")
    assert frozen.status.value == "frozen"
    assert (await bledger.get_account(source)).status.value == "frozen"
    error = await refused(
        banking.submit_payment(alice, "f1", PaymentRequest(source, 100, CNY, to_account_id=savings)), "account_frozen"
    )
    assert (error.http_status, error.details) == (409, {"side": "debit"})
    await banking.set_frozen(analyst, source, False, "cleared")
    await banking.set_frozen(analyst, savings, True, "court order")
    error = await refused(
        banking.submit_payment(alice, "f2", PaymentRequest(source, 100, CNY, to_account_id=savings)), "account_frozen"
    )
    assert error.details == {"side": "credit"}
    assert await payments_of(bdb, alice.id) == 0
    audit = await rows(
        bdb,
        "SELECT action, actor_id, details->>'reason' AS reason FROM platform.audit_log "
        "WHERE subject_id IN (:a, :b) AND action LIKE 'banking.account_%froz%' ORDER BY seq",
        a=str(source),
        b=str(savings),
    )
    assert [(a.action, a.actor_id, a.reason) for a in audit] == [
        ("banking.account_frozen", analyst.id, "suspected fraud"),
        ("banking.account_unfrozen", analyst.id, "cleared"),
        ("banking.account_frozen", analyst.id, "court order"),
    ]
    await banking.set_frozen(analyst, savings, False, "lifted")
    done = await banking.submit_payment(alice, "f3", PaymentRequest(source, 100, CNY, to_account_id=savings))
    assert done.status is PaymentStatus.COMPLETED


async def test_freezing_needs_the_freeze_permission(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 0)
    for who in (staff(StaffRole.TELLER), alice):
        await refused(banking.set_frozen(who, source, True, "why not"), "forbidden")
    assert (await bledger.get_account(source)).status.value == "open"
    assert (
        await count(
            bdb,
            "SELECT count(*) FROM platform.audit_log WHERE subject_id = :a AND action = 'banking.account_frozen'",
            a=str(source),
        )
        == 0
    )


async def test_insufficient_funds_fails_the_payment_posts_nothing_and_frees_the_daily_limit(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 1_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    request = PaymentRequest(source, 1_001, CNY, to_account_id=savings)

    error = await refused(banking.submit_payment(alice, "nsf", request), "insufficient_funds")

    assert error.http_status == 409
    payment_id = uuid.UUID(error.details["payment_id"])
    payment = await banking.get_payment(alice, payment_id)
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "insufficient_funds")
    assert (await posted(bledger, source), await posted(bledger, savings)) == (1_000, 0)
    day = local_day(bclock.now(), "Asia/Shanghai")
    assert await banking.daily_usage(alice, alice.id, day) == 0
    # The replay gives the first answer, even once the money is there.
    await funded_account(banking, bledger, alice, 0)
    again = await refused(banking.submit_payment(alice, "nsf", request), "insufficient_funds")
    assert again.details == error.details


async def test_risk_denial_is_recorded_and_refused(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, risk: RecordingRisk
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 10_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    risk.decision = RiskDecision(RiskOutcome.DENY, "velocity", "rules/7")
    error = await refused(
        banking.submit_payment(alice, "r", PaymentRequest(source, 100, CNY, to_account_id=savings)), "risk_declined"
    )
    assert error.http_status == 403
    payment = await banking.get_payment(alice, uuid.UUID(error.details["payment_id"]))
    assert (payment.risk_decision, payment.risk_reason, payment.risk_version) == (
        RiskOutcome.DENY,
        "velocity",
        "rules/7",
    )
    assert payment.status is PaymentStatus.FAILED
    assert await posted(bledger, source) == 10_000


async def test_another_customers_objects_are_not_found(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    mallory = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 10_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    own = await funded_account(banking, bledger, mallory, 10_000)
    number = (await banking.list_accounts(alice, alice.id))[1].number
    payee = await banking.add_payee(alice, "Me, savings", number)
    payment = await banking.submit_payment(alice, "k", PaymentRequest(source, 100, CNY, to_account_id=savings))
    missing = uuid.uuid4()

    for attempt in (
        banking.get_account(mallory, source),
        banking.history(mallory, source),
        banking.get_payment(mallory, payment.id),
        banking.get_payment(mallory, missing),
        banking.delete_payee(mallory, payee.id),
        banking.submit_payment(mallory, "m1", PaymentRequest(source, 100, CNY, to_account_id=own)),
        banking.submit_payment(mallory, "m2", PaymentRequest(own, 100, CNY, to_payee_id=payee.id)),
        banking.submit_payment(mallory, "m3", PaymentRequest(own, 100, CNY, to_account_id=savings)),
        banking.list_accounts(mallory, alice.id),
        banking.list_payees(mallory, alice.id),
        banking.statement(mallory, source, bclock.now().date(), bclock.now().date()),
    ):
        error = await refused(attempt, "not_found")
        assert error.http_status == 404
    assert (await posted(bledger, source), await posted(bledger, own)) == (9_900, 10_000)
    assert [p.id for p in await banking.list_payees(alice, alice.id)] == [payee.id]
    # Staff read by permission; a merchant or a staff member without it is refused.
    teller = staff(StaffRole.TELLER)
    assert (await banking.get_payment(teller, payment.id)).id == payment.id
    await refused(banking.get_payment(staff(StaffRole.CRM_AGENT), payment.id), "forbidden")


async def test_recovery_job_completes_a_payment_left_submitted(
    banking: BankingService,
    bledger: LedgerService,
    bdb: Database,
    directory: FakeDirectory,
    bclock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smartbank.banking import jobs as banking_jobs
    from smartbank.platform import jobs

    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 10_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)
    real_submit = bledger.submit

    class Crash(Exception):
        pass

    async def crash_after_commit(request):  # type: ignore[no-untyped-def]
        await real_submit(request)  # the ledger commits the transfer ...
        raise Crash  # ... and the process dies before banking hears of it

    monkeypatch.setattr(bledger, "submit", crash_after_commit)
    with pytest.raises(Crash):
        await banking.submit_payment(alice, "crash", PaymentRequest(source, 2_500, CNY, to_account_id=savings))
    monkeypatch.setattr(bledger, "submit", real_submit)
    (row,) = await rows(bdb, "SELECT id, status FROM banking.payments WHERE customer_id = :c", c=alice.id)
    assert row.status == "submitted"
    assert await posted(bledger, savings) == 2_500

    assert await banking.recover_stuck_payments() == 0  # younger than the grace period: left alone
    bclock.advance(timedelta(seconds=31))
    monkeypatch.setitem(jobs.services, "banking", banking)
    assert await banking_jobs.recover_payments.func(0) == 1

    payment = await banking.get_payment(alice, row.id)
    assert payment.status is PaymentStatus.COMPLETED
    assert (await posted(bledger, source), await posted(bledger, savings)) == (7_500, 2_500)
    page = await bledger.account_transfers(source)
    assert [t.amount_minor for t in page.items if t.debit_account_id == source] == [2_500]
    replay = await banking.submit_payment(alice, "crash", PaymentRequest(source, 2_500, CNY, to_account_id=savings))
    assert replay == payment
    assert (
        await count(
            bdb,
            "SELECT count(*) FROM platform.outbox WHERE topic = 'banking.payment_completed' "
            "AND payload->>'payment_id' = :p",
            p=str(payment.id),
        )
        == 1
    )
    audit = await rows(
        bdb, "SELECT action, actor_kind FROM platform.audit_log WHERE subject_id = :p ORDER BY seq", p=str(payment.id)
    )
    assert [(a.action, a.actor_kind) for a in audit] == [
        ("banking.transfer_submitted", "customer"),
        ("banking.transfer_completed", "system"),
    ]


async def test_a_replay_drives_a_payment_whose_ledger_call_never_happened(
    banking: BankingService,
    bledger: LedgerService,
    bdb: Database,
    directory: FakeDirectory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 10_000)
    savings = await funded_account(banking, bledger, alice, 0, Product.SAVINGS)

    async def unreachable(request):  # type: ignore[no-untyped-def]
        raise ConnectionError("ledger unreachable")

    real_submit = bledger.submit
    monkeypatch.setattr(bledger, "submit", unreachable)
    request = PaymentRequest(source, 4_000, CNY, to_account_id=savings)
    with pytest.raises(ConnectionError):
        await banking.submit_payment(alice, "retry", request)
    assert await posted(bledger, savings) == 0
    monkeypatch.setattr(bledger, "submit", real_submit)
    payment = await banking.submit_payment(alice, "retry", request)
    assert payment.status is PaymentStatus.COMPLETED and payment.kind is PaymentKind.TRANSFER
    assert (await posted(bledger, source), await posted(bledger, savings)) == (6_000, 4_000)
