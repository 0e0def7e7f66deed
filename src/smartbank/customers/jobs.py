"""Customer background jobs."""

from __future__ import annotations

from typing import Final

import procrastinate

from smartbank.platform import jobs

blueprint = procrastinate.Blueprint()

#: Batches one run deletes at most (each of ``PURGE_BATCH`` rows); the next run goes on.
MAX_BATCHES_PER_RUN: Final = 100


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(queueing_lock="customers.purge_verifications", pass_context=False)
async def purge_verifications(timestamp: int) -> int:
    """Delete verification rows a day after they expired (runs hourly)."""
    from smartbank.customers.service import CustomerService

    service: CustomerService = jobs.services["customers"]
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        deleted = await service.purge_verifications()
        total += deleted
        if deleted == 0:
            break
    return total
