"""Event notifications to partner apps (OBIE v4.0 ``OBEventNotification1``): signed webhook deliveries.

A state change a partner cares about (a consent withdrawn, a payment's status) writes an
``openbanking.resource_updated`` event to the outbox in its own transaction. The relay hands it to
:meth:`EventNotifications.enqueue`, which (once per event, ``claim_event``) signs a security event
token for the partner and queues a delivery row. The worker's job (:mod:`smartbank.openbanking.jobs`)
posts due deliveries, retrying with a doubling delay; the partner's address is resolved and checked
at every attempt (DNS can change): production partners are reached only at public addresses, never
loopback, private or link-local ones; sandbox partners may use any (a laptop's ``127.0.0.1``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from joserfc import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.kernel.ids import new_id
from smartbank.openbanking.model import MAX_DELIVERY_ATTEMPTS, Environment, address_problem, retry_delay
from smartbank.platform.logging import get_logger
from smartbank.platform.outbox import Event, OutboxRelay, claim_event, write_event

if TYPE_CHECKING:
    from smartbank.openbanking.service import OpenBankingService

log = get_logger(__name__)

TOPIC_RESOURCE_UPDATED: Final = "openbanking.resource_updated"
CONSUMER: Final = "openbanking.event_notifications"
EVENT_TYPE: Final = "urn:uk:org:openbanking:events:resource-update"
#: One delivery attempt: at most this long, and no redirects followed.
DELIVERY_TIMEOUT_S: Final = 10.0
#: A delivery being attempted is leased for this long (another worker skips it meanwhile).
LEASE: Final = timedelta(seconds=120)
DELIVERY_BATCH: Final = 20
MAX_ERROR_CHARS: Final = 300


async def resource_updated(conn: AsyncConnection, client_id: str, rty: str, rid: str, link: str) -> None:
    """Tell ``client_id`` (after commit, through the outbox) that its resource ``rid`` changed."""
    await write_event(conn, TOPIC_RESOURCE_UPDATED, {"client_id": client_id, "rty": rty, "rid": rid, "link": link})


def subscribe(relay: OutboxRelay, notifications: EventNotifications) -> None:
    async def on_resource_updated(event: Event) -> None:
        await notifications.enqueue(event)

    relay.subscribe(TOPIC_RESOURCE_UPDATED, on_resource_updated)


@dataclass(frozen=True, slots=True)
class Attempt:
    delivered: bool
    error: str | None


class EventNotifications:
    def __init__(self, core: OpenBankingService, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._core = core
        self._db = core._db
        self._clock = core._clock
        self._transport = transport

    def notification(self, event: Event, client_id: str, delivery_id: uuid.UUID) -> str:
        """The signed ``OBEventNotification1`` (a JWT by the bank's key) for one partner."""
        payload = event.payload
        claims = {
            "iss": self._core.issuer,
            "iat": int(self._clock.now().timestamp()),
            "jti": str(delivery_id),
            "aud": client_id,
            "sub": payload["link"],
            "txn": str(event.event_id),
            "toe": int(event.created_at.timestamp()),
            "events": {
                EVENT_TYPE: {
                    "subject": {
                        "subject_type": "http://openbanking.org.uk/rid_http://openbanking.org.uk/rty",
                        "http://openbanking.org.uk/rid": payload["rid"],
                        "http://openbanking.org.uk/rty": payload["rty"],
                        "http://openbanking.org.uk/rlk": [{"version": "v4.0", "link": payload["link"]}],
                    }
                }
            },
        }
        key = self._core.signing_key
        return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["ES256"])

    async def enqueue(self, event: Event) -> None:
        """Queue the delivery of one outbox event to its partner (once, whatever the relay retries)."""
        client_id = event.payload.get("client_id")
        if not isinstance(client_id, str) or not all(
            isinstance(event.payload.get(k), str) for k in ("rid", "rty", "link")
        ):
            log.error("openbanking.event_malformed", event_id=str(event.event_id))
            return
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if not await claim_event(conn, CONSUMER, event.event_id):
                return
            row = (
                await conn.execute(
                    text(
                        "SELECT event_notification_uri FROM openbanking.clients"
                        " WHERE client_id = :id AND status = 'active'"
                    ),
                    {"id": client_id},
                )
            ).first()
            if row is None or not row.event_notification_uri:
                return
            delivery_id = new_id()
            await conn.execute(
                text(
                    """
                    INSERT INTO openbanking.event_deliveries (id, event_id, client_id, url, body, next_attempt_at,
                           created_at)
                    VALUES (:id, :event_id, :client_id, :url, :body, :now, :now)
                    ON CONFLICT (event_id, client_id) DO NOTHING
                    """
                ),
                {
                    "id": delivery_id,
                    "event_id": event.event_id,
                    "client_id": client_id,
                    "url": row.event_notification_uri,
                    "body": self.notification(event, client_id, delivery_id),
                    "now": now,
                },
            )

    async def deliver_due(self, limit: int = DELIVERY_BATCH) -> int:
        """Attempt the deliveries that are due (leased first, so parallel workers share them). Returns
        how many were delivered."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        UPDATE openbanking.event_deliveries d
                        SET next_attempt_at = :lease_until
                        FROM openbanking.clients c
                        WHERE d.id IN (
                            SELECT id FROM openbanking.event_deliveries
                            WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= :now
                            ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
                          AND c.client_id = d.client_id
                        RETURNING d.id, d.url, d.body, d.attempts, c.environment
                        """
                    ),
                    {"now": now, "lease_until": now + LEASE, "limit": limit},
                )
            ).all()
        delivered = 0
        for row in rows:
            attempt = await self.attempt(row.url, row.body, sandbox=row.environment == Environment.SANDBOX.value)
            attempts = row.attempts + 1
            finished = self._clock.now()
            async with self._db.transaction() as conn:
                await conn.execute(
                    text(
                        """
                        UPDATE openbanking.event_deliveries
                        SET attempts = :attempts, last_error = :error,
                            delivered_at = CASE WHEN :ok THEN CAST(:now AS timestamptz) END,
                            given_up_at = CASE WHEN NOT :ok AND :attempts >= :max THEN CAST(:now AS timestamptz) END,
                            next_attempt_at = :next
                        WHERE id = :id
                        """
                    ),
                    {
                        "attempts": attempts,
                        "error": attempt.error[:MAX_ERROR_CHARS] if attempt.error else None,
                        "ok": attempt.delivered,
                        "now": finished,
                        "max": MAX_DELIVERY_ATTEMPTS,
                        "next": finished + retry_delay(attempts),
                        "id": row.id,
                    },
                )
            if attempt.delivered:
                delivered += 1
            else:
                log.info("openbanking.event_delivery_failed", delivery_id=str(row.id), error=attempt.error)
        return delivered

    async def attempt(self, url: str, body: str, *, sandbox: bool) -> Attempt:
        """One POST of a signed notification to ``url``, at an address checked just now."""
        parts = urlsplit(url)
        host = parts.hostname
        if host is None or parts.scheme not in ("http", "https") or (parts.scheme == "http" and not sandbox):
            return Attempt(False, "the notification URL is not allowed")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return Attempt(False, f"cannot resolve {host}: {exc.strerror or exc}")
        addresses = sorted({str(info[4][0]) for info in found})
        if not addresses:
            return Attempt(False, f"{host} has no address")
        for address in addresses:  # every address the name has must be allowed: no mixing in a private one
            if (problem := address_problem(address, allow_private=sandbox)) is not None:
                return Attempt(False, problem)
        address = addresses[0]
        literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        headers = {
            "Content-Type": "application/jwt",
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "x-fapi-financial-id": self._core.issuer,
            "x-fapi-interaction-id": str(uuid.uuid4()),
        }
        extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=DELIVERY_TIMEOUT_S, follow_redirects=False, trust_env=False
            ) as client:
                response = await client.post(pinned, content=body.encode(), headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return Attempt(False, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Attempt(True, None)
        return Attempt(False, f"the partner answered {response.status_code}")
