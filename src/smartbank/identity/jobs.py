"""Identity background jobs."""

from __future__ import annotations

import procrastinate

from smartbank.platform import jobs

MAX_ROUNDS = 100

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(queueing_lock="identity.purge_rate_counters", pass_context=False)
async def purge_rate_counters(timestamp: int) -> int:
    """Delete rate-limit counters of windows that ended more than a day ago (hourly)."""
    from smartbank.identity.service import IdentityService

    identity: IdentityService = jobs.services["identity"]
    total = 0
    for _ in range(MAX_ROUNDS):
        deleted = await identity.limiter.purge()
        total += deleted
        if deleted == 0:
            break
    return total
