"""What staff read about a customer through banking: the holder of an account number or IBAN, the
newest payments in and out, and the audit trail of the customer and their accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smartbank.banking.model import CashRequest, PaymentKind, PaymentRequest, PaymentStatus
from smartbank.banking.service import BankingConfig, BankingService
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.kernel.ids import new_id
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database

from .conftest import FakeDirectory, RecordingRisk
from .helpers import funded_account, new_customer, staff

CNY = "CNY"


async def refused(coro: object, code: str) -> None:
    with pytest.raises(DomainError) as caught:
        await coro  # type: ignore[misc]
    assert caught.value.code == code, caught.value


async def test_staff_find_the_holder_of_an_account_number_or_an_iban(
    bdb: Database, bledger: LedgerService, bclock: FrozenClock, directory: FakeDirectory, risk: RecordingRisk
) -> None:
    service = BankingService(
        bdb, bledger, bclock, directory, risk=risk, config=BankingConfig(iban_country="PL", iban_bank_code="10901014")
    )
    alice = new_customer(directory)
    account_id = await funded_account(service, bledger, alice, 0)
    account = (await service.list_accounts(alice, alice.id))[0]
    assert account.id == account_id and account.iban is not None
    teller = staff(StaffRole.TELLER)
    spaced = " ".join(account.number[i : i + 4] for i in range(0, 16, 4))
    assert (await service.find_account(teller, spaced)).customer_id == alice.id
    iban_spaced = " ".join(account.iban[i : i + 4] for i in range(0, len(account.iban), 4)).lower()
    assert (await service.find_account(teller, iban_spaced)).id == account_id
    await refused(service.find_account(teller, "DE89370400440532013000"), "invalid_iban")  # another bank
    await refused(service.find_account(teller, account.number[:-1] + "0"), "invalid_account_number")
    unknown = account.number[:4] + "0000000099"
    unknown += f"{98 - int(unknown + '00') % 97:02d}"
    await refused(service.find_account(teller, unknown), "not_found")
    await refused(service.find_account(alice, account.number), "forbidden")  # customers do not look others up
    await refused(service.find_account(staff(), account.number), "forbidden")  # a role without accounts:read


async def test_without_ibans_an_iban_is_refused(
    banking: BankingService, bledger: LedgerService, directory: FakeDirectory
) -> None:
    await refused(banking.find_account(staff(StaffRole.ADMIN), "DE89 3704 0044 0532 0130 00"), "invalid_iban")


async def test_recent_payments_list_money_out_and_in_with_status_newest_first(
    banking: BankingService, bledger: LedgerService, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    bob = new_customer(directory)
    source = await funded_account(banking, bledger, alice, 10_000)
    await funded_account(banking, bledger, bob, 0)
    bob_account = (await banking.list_accounts(bob, bob.id))[0]
    alice_account = (await banking.list_accounts(alice, alice.id))[0]
    payee = await banking.add_payee(alice, "Bob", bob_account.number)
    bclock.advance(timedelta(days=1))
    sent = await banking.submit_payment(alice, "p1", PaymentRequest(source, 2_500, CNY, to_payee_id=payee.id))
    bclock.advance(timedelta(minutes=1))
    await refused(
        banking.submit_payment(alice, "p2", PaymentRequest(source, 90_000, CNY, to_payee_id=payee.id)),
        "insufficient_funds",
    )
    bclock.advance(timedelta(minutes=1))
    teller = staff(StaffRole.TELLER)
    cash = await banking.teller_cash(
        teller, "c1", CashRequest(PaymentKind.CASH_DEPOSIT, bob_account.id, "0001", 700, CNY, "counter")
    )

    alice_view = await banking.recent_payments(teller, alice.id)
    assert [(p.direction, p.signed_amount_minor, p.payment.status, p.counterparty_number) for p in alice_view] == [
        ("out", -90_000, PaymentStatus.FAILED, bob_account.number),
        ("out", -2_500, PaymentStatus.COMPLETED, bob_account.number),
    ]
    bob_view = await banking.recent_payments(teller, bob.id)
    assert [(p.direction, p.signed_amount_minor, p.payment.id, p.counterparty_number) for p in bob_view] == [
        ("in", 700, cash.id, None),
        ("in", 90_000, alice_view[0].payment.id, alice_account.number),
        ("in", 2_500, sent.id, alice_account.number),
    ]
    assert [p.payment.id for p in await banking.recent_payments(bob, bob.id, limit=1)] == [cash.id]
    await refused(banking.recent_payments(alice, bob.id), "not_found")
    await refused(banking.recent_payments(staff(StaffRole.CRM_AGENT), bob.id), "forbidden")
    await refused(banking.recent_payments(teller, bob.id, limit=51), "validation_error")


async def test_the_audit_trail_holds_what_the_customer_did_and_what_was_done_to_them(
    banking: BankingService, bledger: LedgerService, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    other = new_customer(directory)
    account_id = await funded_account(banking, bledger, alice, 0)
    await funded_account(banking, bledger, other, 0)
    analyst = staff(StaffRole.RISK_ANALYST)
    await banking.set_frozen(analyst, account_id, True, "fraud report")
    teller = staff(StaffRole.TELLER)
    await banking.set_frozen(analyst, account_id, False, "cleared")
    await banking.teller_cash(teller, "c1", CashRequest(PaymentKind.CASH_DEPOSIT, account_id, "0001", 500, CNY, ""))

    trail = await banking.audit_trail(analyst, alice.id)
    assert [(r.action, r.actor_id) for r in trail] == [
        ("banking.cash_deposit_completed", teller.id),
        ("banking.cash_deposit_submitted", teller.id),
        ("banking.account_unfrozen", analyst.id),
        ("banking.account_frozen", analyst.id),
        ("banking.account_opened", alice.id),
    ]
    assert [r.seq for r in trail] == sorted((r.seq for r in trail), reverse=True)
    older = await banking.audit_trail(analyst, alice.id, before_seq=trail[1].seq, limit=2)
    assert [r.action for r in older] == ["banking.account_unfrozen", "banking.account_frozen"]
    # Nothing of the other customer's, and none of alice's in theirs.
    assert [r.action for r in await banking.audit_trail(analyst, other.id)] == ["banking.account_opened"]
    for role in (StaffRole.TELLER, StaffRole.CRM_AGENT):
        await refused(banking.audit_trail(staff(role), alice.id), "forbidden")
    await refused(banking.audit_trail(alice, alice.id), "forbidden")
    await refused(banking.audit_trail(Principal(new_id(), PrincipalKind.MERCHANT), alice.id), "forbidden")
