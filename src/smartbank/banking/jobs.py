"""Banking background jobs."""

from __future__ import annotations

import procrastinate

from smartbank.platform import jobs

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * * */15")  # sixth field: seconds
@blueprint.task(queueing_lock="banking.recover_payments", pass_context=False)
async def recover_payments(timestamp: int) -> int:
    """Drive payments left in ``submitted`` by a crash to ``completed`` or ``failed`` (every 15 s)."""
    from smartbank.banking.service import RECOVERY_BATCH, BankingService

    banking: BankingService = jobs.services["banking"]
    total = 0
    for _ in range(10):  # at most ten batches a run; the next run takes the rest
        finished = await banking.recover_stuck_payments(RECOVERY_BATCH)
        total += finished
        if finished < RECOVERY_BATCH:
            break
    return total
