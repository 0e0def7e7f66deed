"""Ledger background jobs."""

from __future__ import annotations

import procrastinate

from smartbank.platform import jobs

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * * */5")  # sixth field: seconds
@blueprint.task(queueing_lock="ledger.expire_pending_holds", pass_context=False)
async def expire_pending_holds(timestamp: int) -> int:
    """Void every pending transfer whose timeout has passed (runs every five seconds)."""
    from smartbank.ledger.service import LedgerService

    ledger: LedgerService = jobs.services["ledger"]
    total = 0
    while (expired := await ledger.expire_pending()) > 0:
        total += expired
    return total
