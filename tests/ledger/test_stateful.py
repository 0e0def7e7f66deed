"""Random sequences of ledger operations, held against the plain-Python model after every step."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from smartbank.kernel.clock import SystemClock
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind, AccountSpec, AccountStatus, TransferRequest, TransferType
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.settings import Settings

from .reference_model import ModelAccount, ModelLedger

CURRENCIES = ("CNY", "JPY")
amounts = st.integers(min_value=1, max_value=2_000)


class LedgerMachine(RuleBasedStateMachine):
    """Each example gets fresh accounts in a shared database; the ledger-wide verify runs after every step."""

    loop: asyncio.AbstractEventLoop
    database_url: str

    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        self.db = Database(create_engine(self.database_url, Settings(env="test", db_pool_size=4)))
        self.ledger = LedgerService(self.db, SystemClock())
        self.model = ModelLedger()
        self.requests: list[TransferRequest] = []  # everything ever submitted, for retries

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.dispose())

    @rule(
        target=accounts,
        currency=st.sampled_from(CURRENCIES),
        no_overdraft=st.booleans(),
        limit=st.sampled_from([0, 0, 500]),
    )
    def open_account(self, currency: str, no_overdraft: bool, limit: int) -> uuid.UUID:
        limit = limit if no_overdraft else 0
        spec = AccountSpec(
            id=new_id(),
            currency=currency,
            kind=AccountKind.LIABILITY if no_overdraft else AccountKind.ASSET,
            code=7,
            debits_must_not_exceed_credits=no_overdraft,
            limit_minor=limit,
        )
        self.run(self.ledger.open_account(spec))
        self.model.accounts[spec.id] = ModelAccount(currency, no_overdraft, limit)
        return spec.id

    def _check(self, request: TransferRequest, expected: str) -> None:
        result = self.run(self.ledger.submit(request))
        got = result.code or result.status.value
        assert got == expected, f"{request}: ledger said {got}, model said {expected}"
        self.requests.append(request)

    def _transfer(self, debit: uuid.UUID, credit: uuid.UUID, amount: int, currency: str, pending: bool) -> None:
        request = TransferRequest(
            id=new_id(),
            type=TransferType.PENDING if pending else TransferType.POSTED,
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=amount,
            currency=currency,
            code=1,
        )
        self._check(request, self.model.apply(request))

    @rule(
        debit=accounts,
        credit=accounts,
        amount=amounts,
        currency=st.sampled_from(CURRENCIES),
        pending=st.booleans(),
    )
    def transfer(self, debit: uuid.UUID, credit: uuid.UUID, amount: int, currency: str, pending: bool) -> None:
        if debit == credit:
            return
        self._transfer(debit, credit, amount, currency, pending)

    @rule(debit=accounts, credit=accounts, delta=st.sampled_from([-1, 0, 1]), pending=st.booleans())
    def transfer_at_the_limit(self, debit: uuid.UUID, credit: uuid.UUID, delta: int, pending: bool) -> None:
        """Probe the balance limit exactly: the available amount, one less and one more."""
        account = self.model.accounts[debit]
        if debit == credit or not account.dmnec:
            return
        amount = account.cpo + account.limit - account.dpo - account.dp + delta
        if amount < 1:
            return
        self._transfer(debit, credit, amount, account.currency, pending)

    @rule(credit=accounts, amount=amounts)
    def transfer_from_unknown_account(self, credit: uuid.UUID, amount: int) -> None:
        currency = self.model.accounts[credit].currency
        request = TransferRequest(
            id=new_id(),
            debit_account_id=new_id(),
            credit_account_id=credit,
            amount_minor=amount,
            currency=currency,
            code=1,
        )
        self._check(request, self.model.apply(request))

    @precondition(lambda self: bool(self.model.pendings))
    @rule(data=st.data(), partial=st.booleans(), extra=st.integers(min_value=-50, max_value=50))
    def post_pending(self, data: st.DataObject, partial: bool, extra: int) -> None:
        pending_id = data.draw(st.sampled_from(sorted(self.model.pendings)))
        amount = max(1, self.model.pendings[pending_id].amount + extra) if partial else None
        request = TransferRequest(
            id=new_id(), type=TransferType.POST_PENDING, pending_id=pending_id, amount_minor=amount
        )
        self._check(request, self.model.apply(request))

    @precondition(lambda self: bool(self.model.pendings))
    @rule(data=st.data())
    def void_pending(self, data: st.DataObject) -> None:
        pending_id = data.draw(st.sampled_from(sorted(self.model.pendings)))
        request = TransferRequest(id=new_id(), type=TransferType.VOID_PENDING, pending_id=pending_id)
        self._check(request, self.model.apply(request))

    @rule()
    def post_unknown_pending(self) -> None:
        request = TransferRequest(id=new_id(), type=TransferType.POST_PENDING, pending_id=new_id())
        self._check(request, self.model.apply(request))

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data())
    def retry_same_request(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.requests))
        self._check(request, self.model.apply(request))

    @precondition(lambda self: bool(self.model.created))
    @rule(data=st.data())
    def reuse_id_with_other_fields(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(sorted(self.model.created, key=str)))
        changed = replace(self.model.created[original], metadata={"changed": True})
        self._check(changed, self.model.apply(changed))

    @rule(account=accounts, frozen=st.booleans())
    def freeze_or_unfreeze(self, account: uuid.UUID, frozen: bool) -> None:
        status = AccountStatus.FROZEN if frozen else AccountStatus.OPEN
        self.run(self.ledger.set_account_status(account, status))
        self.model.accounts[account].status = status.value

    @rule(
        data=st.data(),
        atomic=st.booleans(),
        size=st.integers(min_value=2, max_value=5),
        currency=st.sampled_from(CURRENCIES),
    )
    def batch(self, data: st.DataObject, atomic: bool, size: int, currency: str) -> None:
        ids = sorted(self.model.accounts)
        if len(ids) < 2:
            return
        batch = []
        for _ in range(size):
            debit, credit = data.draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
            batch.append(
                TransferRequest(
                    id=new_id(),
                    type=data.draw(st.sampled_from([TransferType.POSTED, TransferType.PENDING])),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=data.draw(amounts),
                    currency=currency,
                    code=2,
                )
            )
        if self.requests and data.draw(st.booleans()):
            retry = data.draw(st.sampled_from(self.requests))
            if retry.id not in {r.id for r in batch}:
                batch.insert(data.draw(st.integers(0, len(batch))), retry)
        expected = self.model.apply_batch(batch, atomic)
        results = self.run(self.ledger.submit_batch(batch, atomic=atomic))
        got = [r.code or r.status.value for r in results]
        assert got == expected, f"batch atomic={atomic}: ledger said {got}, model said {expected}"
        self.requests.extend(batch)

    @invariant()
    def balances_match_the_model(self) -> None:
        for account_id, expected in self.model.accounts.items():
            account = self.run(self.ledger.get_account(account_id))
            b = account.balances
            assert (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted) == (
                expected.dp,
                expected.dpo,
                expected.cp,
                expected.cpo,
            ), f"account {account_id}"
            assert account.status.value == expected.status

    @invariant()
    def ledger_invariants_hold(self) -> None:
        assert self.run(self.ledger.verify()) == []


@pytest.mark.slow
def test_ledger_matches_the_model(fresh_database) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    try:
        LedgerMachine.loop = loop
        LedgerMachine.database_url = fresh_database()
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=40,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.close()
