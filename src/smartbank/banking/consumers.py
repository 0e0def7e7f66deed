"""Banking's outbox consumers: the account opened on KYC, and history entries from the ledger."""

from __future__ import annotations

import uuid
from typing import Final

from smartbank.banking.service import BankingService
from smartbank.platform.logging import get_logger
from smartbank.platform.outbox import Event, OutboxRelay

log = get_logger(__name__)

TOPIC_KYC_VERIFIED: Final = "customers.kyc_verified"
TOPIC_TRANSFERS_CREATED: Final = "ledger.transfers_created"


def subscribe(relay: OutboxRelay, service: BankingService) -> None:
    """Register banking's consumers on the relay (call once per process)."""

    async def on_kyc_verified(event: Event) -> None:
        # payload: {"customer_id": "<uuid>", "verified_at": "<iso>"}
        try:
            customer_id = uuid.UUID(str(event.payload["customer_id"]))
        except (KeyError, ValueError, TypeError):
            # A malformed event would otherwise be retried forever and hold up the relay.
            log.error("banking.kyc_event_malformed", event_id=str(event.event_id))
            return
        await service.open_account_on_kyc(event.event_id, customer_id)

    async def on_transfers_created(event: Event) -> None:
        await service.project_transfers(event.event_id, event.payload, event.created_at)

    relay.subscribe(TOPIC_KYC_VERIFIED, on_kyc_verified)
    relay.subscribe(TOPIC_TRANSFERS_CREATED, on_transfers_created)
