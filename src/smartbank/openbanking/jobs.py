"""Open-banking background jobs: webhook deliveries to partners, and payments a crash left half done."""

from __future__ import annotations

from typing import Final

import procrastinate

from smartbank.platform import jobs

blueprint = procrastinate.Blueprint()

#: Batches one run attempts at most; the next run (15 s later) goes on.
MAX_BATCHES_PER_RUN: Final = 10


@blueprint.periodic(cron="* * * * * */15")  # sixth field: seconds
@blueprint.task(queueing_lock="openbanking.deliver_events", pass_context=False)
async def deliver_events(timestamp: int) -> int:
    """Post due event notifications (signed) to partners; failures are retried later with backoff."""
    from smartbank.openbanking.events import DELIVERY_BATCH
    from smartbank.openbanking.service import OpenBankingService

    service: OpenBankingService = jobs.services["openbanking"]
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        delivered = await service.notifications.deliver_due(DELIVERY_BATCH)
        total += delivered
        if delivered < DELIVERY_BATCH:
            break
    return total


@blueprint.periodic(cron="* * * * * */15")
@blueprint.task(queueing_lock="openbanking.recover_payments", pass_context=False)
async def recover_payments(timestamp: int) -> int:
    """Drive domestic payments a crash left received but never executed (banking's key makes it safe)."""
    from smartbank.openbanking.service import OpenBankingService

    service: OpenBankingService = jobs.services["openbanking"]
    return await service.payments.recover()
