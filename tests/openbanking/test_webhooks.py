"""Event notifications to partners: a state change goes through the outbox to a signed
``OBEventNotification1`` delivery, retried with backoff; the address is checked when it is sent, and a
production partner is never reached at a loopback or private address."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.kernel.ids import new_id
from smartbank.openbanking import events
from smartbank.openbanking.model import Environment
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, scalar

from .helpers import AISP, MfaCustomer, Partner, customer_with_mfa, grant, open_bank
from .schemas import schema_errors


class _Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 202


@contextlib.contextmanager
def partner_server() -> Iterator[tuple[int, _Inbox]]:
    """A partner's webhook endpoint on 127.0.0.1 that records what it is sent."""
    inbox = _Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            inbox.received.append((dict(self.headers.items()), self.rfile.read(length)))
            self.send_response(inbox.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], inbox
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.93") as opened:
        yield opened


@pytest.fixture(scope="module")
def who(bank: Bank) -> MfaCustomer:
    return customer_with_mfa(bank)


def deliveries(bank: Bank, client_id: str) -> list[tuple[Any, ...]]:
    from tests.banking.http_helpers import all_rows

    return all_rows(
        bank.url,
        "SELECT attempts, delivered_at IS NOT NULL, last_error, next_attempt_at FROM openbanking.event_deliveries"
        " WHERE client_id = %s ORDER BY created_at",
        client_id,
    )


def wait_for_delivery_row(bank: Bank, client_id: str) -> None:
    deadline = time.monotonic() + 10
    while not deliveries(bank, client_id):
        assert time.monotonic() < deadline, "no delivery was queued"
        bank.runtime.relay.kick()
        time.sleep(0.02)


def sandbox_partner(bank: Bank, uri: str) -> Partner:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256")
    key.ensure_kid()
    response = bank.client.post(
        "/oauth2/register",
        json={
            "client_name": "Webhook app",
            "redirect_uris": ["https://partner.example/callback"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
            "event_notification_uri": uri,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["event_notification_uri"] == uri
    partner = Partner(bank, key, "ES256", response.json()["client_id"], response.json())
    return partner


def test_a_revoked_consent_is_notified_with_a_signed_event_and_retried_with_backoff(
    bank: Bank, who: MfaCustomer
) -> None:
    with partner_server() as (port, inbox):
        partner = sandbox_partner(bank, f"http://127.0.0.1:{port}/events")  # sandbox: loopback allowed
        granted = grant(bank, who, partner)
        bank.run(
            lambda: bank.runtime.openbanking.revoke_by_customer(
                who.customer.principal, granted.consent_id, ClientInfo()
            )
        )
        wait_for_delivery_row(bank, partner.client_id)
        notifications = bank.runtime.openbanking.notifications

        inbox.status = 503  # the partner is down: the attempt fails and is retried later
        assert bank.run(lambda: notifications.deliver_due()) == 0
        ((attempts, delivered, error, next_at),) = deliveries(bank, partner.client_id)
        assert (attempts, delivered, error) == (1, False, "the partner answered 503")
        assert next_at == bank.clock.now() + timedelta(seconds=30)
        assert bank.run(lambda: notifications.deliver_due()) == 0  # not due yet: nothing is sent
        assert len(inbox.received) == 1

        inbox.status = 202
        bank.clock.advance(timedelta(seconds=31))
        assert bank.run(lambda: notifications.deliver_due()) == 1
        assert deliveries(bank, partner.client_id)[0][:2] == (2, True)

    headers, body = inbox.received[-1]
    assert headers["Content-Type"] == "application/jwt"
    keys = KeySet.import_key_set(bank.client.get("/oauth2/jwks").json())
    token = jwt.decode(body.decode(), keys, algorithms=["ES256"])  # signed by the bank's published key
    claims = dict(token.claims)
    assert schema_errors(claims, "OBEventNotification1", "events") == []
    subject = claims["events"]["urn:uk:org:openbanking:events:resource-update"]["subject"]
    assert subject["http://openbanking.org.uk/rid"] == granted.consent_id
    assert subject["http://openbanking.org.uk/rty"] == "account-access-consent"
    assert claims["aud"] == partner.client_id
    assert claims["sub"].endswith(f"{AISP}/account-access-consents/{granted.consent_id}")


def test_webhook_to_a_private_address_is_refused_for_a_production_client(bank: Bank) -> None:
    admin = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    partner = Partner.register(bank)  # for its key pair
    with partner_server() as (port, inbox):
        registration = bank.run(
            lambda: bank.runtime.openbanking.register_client(
                {
                    "client_name": "Production app",
                    "redirect_uris": ["https://partner.example/callback"],
                    "jwks": partner.registration["jwks"],
                    # https, as production needs; but the name resolves to the loopback address
                    "event_notification_uri": f"https://localhost:{port}/events",
                },
                ClientInfo(),
                environment=Environment.PRODUCTION,
                registered_by=admin,
            )
        )
        client_id = registration.client.client_id

        async def changed() -> None:
            async with bank.runtime.db.transaction() as conn:
                await events.resource_updated(conn, client_id, "domestic-payment", "dp-1", "https://bank/dp-1")

        bank.run(changed)
        wait_for_delivery_row(bank, client_id)
        assert bank.run(lambda: bank.runtime.openbanking.notifications.deliver_due()) == 0
        ((attempts, delivered, error, _),) = deliveries(bank, client_id)
        assert (attempts, delivered) == (1, False)
        assert "127.0.0.1 is not a public address" in error
        assert inbox.received == []  # nothing reached the private address


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"]
)
def test_private_loopback_and_link_local_addresses_are_refused_unless_sandbox(address: str) -> None:
    from smartbank.openbanking.model import address_problem

    assert address_problem(address, allow_private=False) is not None
    assert address_problem(address, allow_private=True) is None
    assert address_problem("93.184.216.34", allow_private=False) is None


def test_production_apps_register_https_notification_urls_only(bank: Bank) -> None:
    admin = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.ADMIN}))
    partner = Partner.register(bank)
    from smartbank.openbanking.errors import InvalidClientMetadataError

    with pytest.raises(InvalidClientMetadataError):
        bank.run(
            lambda: bank.runtime.openbanking.register_client(
                {
                    "client_name": "Production app",
                    "redirect_uris": ["https://partner.example/callback"],
                    "jwks": partner.registration["jwks"],
                    "event_notification_uri": "http://partner.example/events",
                },
                ClientInfo(),
                environment=Environment.PRODUCTION,
                registered_by=admin,
            )
        )
    before = scalar(bank.url, "SELECT count(*) FROM openbanking.clients")
    refused = bank.client.post(
        "/oauth2/register",
        json={
            "client_name": "x",
            "redirect_uris": ["https://partner.example/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
            "event_notification_uri": "ftp://partner.example/events",
        },
    )
    assert refused.status_code == 400
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.clients") == before
