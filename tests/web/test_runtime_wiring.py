"""The domains as one process wires them: identity, customers and banking meet through the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from smartbank.customers.model import KycDecision
from smartbank.identity.model import StaffRole
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime

from ..customers.helpers import customer, register, staff, submission


async def test_a_customer_approved_by_staff_gets_a_cny_current_account_from_the_running_relay(
    settings: Settings, fresh_database: Callable[[], str]
) -> None:
    runtime = Runtime.build(settings, fresh_database())
    await runtime.start_background(worker=False)
    try:
        # Registration creates the login through the real identity service, in the same transaction.
        profile = await register(runtime.customers, runtime.db)
        me = customer(profile.id)
        await runtime.customers.submit_kyc(me, profile.id, submission())
        assert await runtime.banking.list_accounts(me, profile.id) == []

        await runtime.customers.decide_kyc(staff(StaffRole.CRM_AGENT), profile.id, KycDecision.VERIFY, "documents seen")

        accounts = []
        for _ in range(100):  # the relay hands customers.kyc_verified to banking after commit
            accounts = await runtime.banking.list_accounts(me, profile.id)
            if accounts:
                break
            await asyncio.sleep(0.05)
        assert [(a.currency, a.product.value, a.status.value) for a in accounts] == [("CNY", "current", "open")]
        ledger_account = await runtime.ledger.get_account(accounts[0].id)  # the same id in both domains
        assert (ledger_account.currency, ledger_account.debits_must_not_exceed_credits) == ("CNY", True)
    finally:
        await runtime.close()
