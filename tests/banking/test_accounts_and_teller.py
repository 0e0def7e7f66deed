"""Deposit accounts, the bank's own ledger accounts, payees, and tellers' cash operations."""

from __future__ import annotations

import uuid

import pytest

from smartbank.banking.model import (
    BANK_FEES_INCOME_ACCOUNT_ID,
    BANK_INTEREST_EXPENSE_ACCOUNT_ID,
    BANK_SETTLEMENT_ACCOUNT_ID,
    BRANCH_CASH_ACCOUNT_IDS,
    CashRequest,
    PaymentKind,
    PaymentStatus,
    Product,
    is_valid_account_number,
)
from smartbank.banking.service import BankingConfig, BankingService
from smartbank.identity.model import StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.ledger.model import AccountKind
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database

from .conftest import FakeDirectory, RecordingRisk
from .helpers import count, funded_account, new_customer, posted, rows, staff

CNY = "CNY"


async def refused(coro: object, code: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await coro  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value


async def test_migration_creates_the_banks_ledger_accounts_with_fixed_ids(bledger: LedgerService) -> None:
    expected = {
        BANK_SETTLEMENT_ACCOUNT_ID: (AccountKind.ASSET, 1001, "bank:settlement"),
        BANK_FEES_INCOME_ACCOUNT_ID: (AccountKind.INCOME, 4001, "bank:fees"),
        BANK_INTEREST_EXPENSE_ACCOUNT_ID: (AccountKind.EXPENSE, 5001, "bank:interest"),
        **{
            account_id: (AccountKind.ASSET, 1101, f"bank:branch:{code}:cash")
            for code, account_id in BRANCH_CASH_ACCOUNT_IDS.items()
        },
    }
    for account_id, (kind, code, owner) in expected.items():
        account = await bledger.get_account(account_id)
        assert (account.kind, account.code, account.owner_ref, account.currency) == (kind, code, owner, CNY)


async def test_opened_account_has_a_valid_number_and_a_no_overdraft_ledger_account(
    banking: BankingService, bledger: LedgerService, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    account = await banking.open_account(alice, Product.SAVINGS, CNY)
    assert is_valid_account_number(account.number) and account.number.startswith("0001")
    assert (account.product, account.currency, account.status.value, account.iban) == (
        Product.SAVINGS,
        CNY,
        "open",
        None,
    )
    ledger_account = await bledger.get_account(account.id)
    assert (ledger_account.kind, ledger_account.code, ledger_account.debits_must_not_exceed_credits) == (
        AccountKind.LIABILITY,
        2002,
        True,
    )
    assert ledger_account.owner_ref == f"customer:{alice.id}"
    balance = await banking.get_account(alice, account.id)
    assert (balance.posted_minor, balance.available_minor) == (0, 0)
    pending = new_customer(directory, kyc="pending")
    await refused(banking.open_account(pending, Product.CURRENT, CNY), "kyc_not_verified")


async def test_iban_form_is_given_when_configured(
    bdb: Database, bledger: LedgerService, bclock: FrozenClock, directory: FakeDirectory, risk: RecordingRisk
) -> None:
    from schwifty import IBAN

    service = BankingService(
        bdb, bledger, bclock, directory, risk=risk, config=BankingConfig(iban_country="PL", iban_bank_code="10901014")
    )
    alice = new_customer(directory)
    account = await service.open_account(alice, Product.CURRENT, CNY)
    assert account.iban is not None
    iban = IBAN(account.iban)
    assert (iban.country_code, iban.bank_code, str(iban.account_code)) == ("PL", "10901014", account.number)


async def test_payees_add_list_delete_and_validation(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    bob = new_customer(directory)
    await funded_account(banking, bledger, bob, 0)
    number = (await banking.list_accounts(bob, bob.id))[0].number

    payee = await banking.add_payee(alice, "  王小明  ", " ".join(number[i : i + 4] for i in range(0, 16, 4)))
    assert (payee.name, payee.account_number, payee.created_at) == ("王小明", number, bclock.now())
    assert await banking.list_payees(alice, alice.id) == [payee]
    await refused(banking.add_payee(alice, "Again", number), "payee_already_exists")
    bad = number[:15] + str((int(number[15]) + 1) % 10)
    await refused(banking.add_payee(alice, "Typo", bad), "invalid_account_number")
    from smartbank.banking.model import make_account_number

    await refused(
        banking.add_payee(alice, "Nobody", make_account_number("0003", 9_999_999_999)), "unknown_account_number"
    )
    await refused(banking.add_payee(alice, "", number), "validation_error")
    await refused(banking.add_payee(staff(StaffRole.ADMIN), "Staff", number), "forbidden")

    await banking.delete_payee(alice, payee.id)
    assert await banking.list_payees(alice, alice.id) == []
    await refused(banking.delete_payee(alice, payee.id), "not_found")
    again = await banking.add_payee(alice, "Wang", number)  # can be added again after deletion
    assert again.id != payee.id
    audit = await rows(bdb, "SELECT action FROM platform.audit_log WHERE actor_id = :a ORDER BY seq", a=alice.id)
    assert [a.action for a in audit] == ["banking.payee_added", "banking.payee_deleted", "banking.payee_added"]


async def test_teller_cash_deposit_and_withdrawal_balances_and_audit(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory, bclock: FrozenClock
) -> None:
    alice = new_customer(directory)
    account = await funded_account(banking, bledger, alice, 0)
    teller = staff(StaffRole.TELLER)
    branch_cash = BRANCH_CASH_ACCOUNT_IDS["0002"]
    cash_before = await posted(bledger, branch_cash)

    deposit = await banking.teller_cash(
        teller, "d1", CashRequest(PaymentKind.CASH_DEPOSIT, account, "0002", 80_000, CNY, "cash in")
    )
    withdrawal = await banking.teller_cash(
        teller, "w1", CashRequest(PaymentKind.CASH_WITHDRAWAL, account, "0002", 30_050, CNY)
    )

    assert deposit.status is withdrawal.status is PaymentStatus.COMPLETED
    assert (deposit.debit_account_id, deposit.credit_account_id) == (branch_cash, account)
    assert (withdrawal.debit_account_id, withdrawal.credit_account_id) == (account, branch_cash)
    assert await posted(bledger, account) == 49_950
    assert await posted(bledger, branch_cash) - cash_before == 49_950  # an asset: cash in the drawer
    # Replaying a teller's key returns the first answer; nothing moves twice.
    assert (
        await banking.teller_cash(
            teller, "d1", CashRequest(PaymentKind.CASH_DEPOSIT, account, "0002", 80_000, CNY, "cash in")
        )
        == deposit
    )
    assert await posted(bledger, account) == 49_950
    audit = await rows(
        bdb,
        "SELECT action, actor_kind, actor_id, details->>'branch_code' AS branch, occurred_at FROM platform.audit_log "
        "WHERE subject_id IN (:d, :w) ORDER BY seq",
        d=str(deposit.id),
        w=str(withdrawal.id),
    )
    assert {a.occurred_at for a in audit} == {bclock.now()}  # the service's clock, not the wall clock
    assert [(a.action, a.actor_kind, a.actor_id, a.branch) for a in audit] == [
        ("banking.cash_deposit_submitted", "staff", teller.id, "0002"),
        ("banking.cash_deposit_completed", "staff", teller.id, "0002"),
        ("banking.cash_withdrawal_submitted", "staff", teller.id, "0002"),
        ("banking.cash_withdrawal_completed", "staff", teller.id, "0002"),
    ]
    error = await refused(
        banking.teller_cash(teller, "w2", CashRequest(PaymentKind.CASH_WITHDRAWAL, account, "0002", 49_951, CNY)),
        "insufficient_funds",
    )
    assert error.http_status == 409
    assert await posted(bledger, account) == 49_950
    await refused(
        banking.teller_cash(teller, "x", CashRequest(PaymentKind.CASH_DEPOSIT, account, "0009", 1, CNY)),
        "branch_not_found",
    )
    await refused(
        banking.teller_cash(teller, "y", CashRequest(PaymentKind.CASH_DEPOSIT, uuid.uuid4(), "0002", 1, CNY)),
        "not_found",
    )


async def test_teller_without_teller_cash_is_refused_and_nothing_is_written(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    account = await funded_account(banking, bledger, alice, 0)
    request = CashRequest(PaymentKind.CASH_DEPOSIT, account, "0001", 10_000, CNY)
    for who in (staff(StaffRole.CRM_AGENT), staff(StaffRole.RISK_ANALYST), staff(), alice):
        error = await refused(banking.teller_cash(who, "k", request), "forbidden")
        assert error.http_status == 403
    assert await posted(bledger, account) == 0
    assert await count(bdb, "SELECT count(*) FROM banking.payments WHERE account_id = :a", a=account) == 0


async def test_cash_into_a_frozen_account_is_refused(
    banking: BankingService, bledger: LedgerService, bdb: Database, directory: FakeDirectory
) -> None:
    alice = new_customer(directory)
    account = await funded_account(banking, bledger, alice, 0)
    await banking.set_frozen(staff(StaffRole.ADMIN), account, True, "dormant")
    await refused(
        banking.teller_cash(
            staff(StaffRole.TELLER), "k", CashRequest(PaymentKind.CASH_DEPOSIT, account, "0001", 10_000, CNY)
        ),
        "account_frozen",
    )
    assert await count(bdb, "SELECT count(*) FROM banking.payments WHERE account_id = :a", a=account) == 0
